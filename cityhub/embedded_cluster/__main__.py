"""`python -m cityhub.embedded_cluster up|down|status` (the same as `cityhub cluster ...`)."""

import sys

from cityhub.embedded_cluster import main

sys.exit(main())
