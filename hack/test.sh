#!/usr/bin/env bash
# README command 2: build the pinned toolchain (cached), lint, and run every test (unit + integration).
# Extra arguments go to pytest, e.g. `hack/test.sh -m "not integration"` for the fast tests only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash hack/toolchain.sh
.venv/bin/ruff check .
.venv/bin/pytest "$@"
