#!/usr/bin/env bash
# README command 1: build the pinned toolchain (cached), start the embedded cluster, `pulumi up` the dev stack.
# Set KUBECONFIG to use a real cluster instead of the embedded one.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash hack/toolchain.sh
.venv/bin/cityhub up --stack "${CITYHUB_STACK:-dev}"
KUBECONFIG=${KUBECONFIG:-$ROOT/.state/cluster/kubeconfig} "${CITYHUB_CACHE:-$HOME/.cache/cityhub}/bin/kubectl" get nodes -L cityhub.io/pool
