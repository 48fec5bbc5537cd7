"""Entry point the Pulumi engine runs (through the language host's RunPlugin): serve the cityhub pack."""

import sys
from pathlib import Path

# The engine runs this file by path, so the pack's own package is importable only once its folder is.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cityhub_policies.pack import serve

serve()
