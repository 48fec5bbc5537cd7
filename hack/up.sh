#!/usr/bin/env bash
# README command 1 — the main job on the embedded default: build the pinned toolchain (cached), start the
# embedded cluster, `pulumi up` the dev stack (tenancy, network, storage, CRDs, catalog, operator RBAC), start
# the operator with its messaging backend (real nats-server), and have 应急管理局 request a MessagingChannel.
# Set KUBECONFIG to use a real cluster instead of the embedded one.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash hack/toolchain.sh
.venv/bin/cityhub up --stack "${CITYHUB_STACK:-dev}"
export KUBECONFIG=${KUBECONFIG:-$ROOT/.state/cluster/kubeconfig}
KUBECTL="${CITYHUB_CACHE:-$HOME/.cache/cityhub}/bin/kubectl"
"$KUBECTL" get nodes -L cityhub.io/pool
.venv/bin/cityhub operator start
"$KUBECTL" get componentofferings
"$KUBECTL" apply -f docs/examples/messaging-channel.yaml
"$KUBECTL" wait --for=condition=Ready --timeout=120s messagingchannel/alerts -n dept-yingji
"$KUBECTL" get cityhub -n dept-yingji -o wide
"$KUBECTL" get secret alerts-connection -n dept-yingji -o jsonpath='{.data}' | .venv/bin/python -c \
  'import json,sys; print("Secret alerts-connection keys:", ", ".join(sorted(json.load(sys.stdin))))'
echo "Stop the operator: .venv/bin/cityhub operator stop; the cluster: .venv/bin/cityhub cluster down"
