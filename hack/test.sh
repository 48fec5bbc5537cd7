#!/usr/bin/env bash
# README command 2: build the pinned toolchain (cached), lint, and run every test (unit + integration).
# Extra arguments go to pytest, e.g. `hack/test.sh -m "not integration"` for the fast tests only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export APT_CONFIG=${APT_CONFIG:-$ROOT/hack/apt.conf}  # wait for the dpkg lock (hack/apt.conf)
bash hack/toolchain.sh
# The peers the benchmarks compare cityhub with (NACK, Sloth, wrk, nginx): their short versions run in the tests
# (tests/integration/test_peer_*.py). Built once from the registries here, pinned, cached; never by command 1.
for peer in hack/peers/*.sh; do bash "$peer"; done
.venv/bin/ruff check .
.venv/bin/pytest "$@"
