"""成熟度 / the maturity self-assessment: cityhub's own model derived from the action plan's areas (not a
national standard; docs/maturity.md), computed from the live hub.

model.py       the evidence and the assessment (typed values)
dimensions.py  the six dimensions and their levels 1 to 5 (pure scoring)
live.py        the evidence from the cluster, the stack config, the drill records and Prometheus; assess()
render.py      JSON (schema cityhub.io/maturity/v1), text, and the HTML section of the report
command.py     `cityhub maturity`
"""

from cityhub.maturity.live import assess, dashboard_section
from cityhub.maturity.model import Assessment, Dimension, Evidence

__all__ = ["Assessment", "Dimension", "Evidence", "assess", "dashboard_section"]
