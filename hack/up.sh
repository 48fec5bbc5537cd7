#!/usr/bin/env bash
# README command 1 — the whole product on the embedded default: build the pinned toolchain (cached), start
# the embedded cluster, `pulumi up` the dev stack (tenancy, roles, network, storage, CRDs, catalog, operator
# RBAC), start the operator with every component type's real backend, then live 交通运输局's journey:
# its administrator signs in with the city's identity (Keycloak) and, with kubectl alone, requests one
# component of every type, waits until all are Ready, runs an app mounting every connection Secret and
# gives feedback (docs/examples/jiaotong/). Idempotent: a second run changes nothing.
# Set KUBECONFIG to use a real cluster instead of the embedded one.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash hack/toolchain.sh
CITYHUB=.venv/bin/cityhub
KUBECTL="${CITYHUB_CACHE:-$HOME/.cache/cityhub}/bin/kubectl"
STATE=${CITYHUB_STATE:-$ROOT/.state}

$CITYHUB up --stack "${CITYHUB_STACK:-dev}"
KUBECONFIG=${KUBECONFIG:-$STATE/cluster/kubeconfig} "$KUBECTL" get nodes -L cityhub.io/pool
$CITYHUB operator start

# 交通运输局's administrator (declared in stacks/Pulumi.dev.yaml) in the city's identity; a password of this
# checkout's own, kept in the state directory.
PASSWORD_FILE=$STATE/people/jt-admin.password
if [ ! -s "$PASSWORD_FILE" ]; then
  mkdir -p "$(dirname "$PASSWORD_FILE")"
  (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))' >"$PASSWORD_FILE")
fi
$CITYHUB people add jt-admin --department jiaotong --role admin --password-stdin <"$PASSWORD_FILE"
$CITYHUB login jt-admin --password-stdin <"$PASSWORD_FILE"
export KUBECONFIG=$STATE/people/jt-admin/kubeconfig      # from here on: the department's own sign-in

"$KUBECTL" auth whoami
"$KUBECTL" get componentofferings
"$KUBECTL" apply -f docs/examples/jiaotong/
for request in messagingchannel/road-events identityclient/dispatch maplayer/signals \
  inferenceendpoint/flow sensorfleet/counters; do
  "$KUBECTL" wait --for=condition=Ready --timeout=180s "$request" -n dept-jiaotong
done
"$KUBECTL" rollout status deployment/traffic-app -n dept-jiaotong --timeout=120s
"$KUBECTL" get cityhub -n dept-jiaotong
"$KUBECTL" get pods,componentfeedbacks -n dept-jiaotong
"$KUBECTL" get secret road-events-connection -n dept-jiaotong -o jsonpath='{.data}' | .venv/bin/python -c \
  'import json,sys; print("Secret road-events-connection keys:", ", ".join(sorted(json.load(sys.stdin))))'
echo "交通运输局 is served. As its administrator: export KUBECONFIG=$KUBECONFIG"
echo "Stop the operator: $CITYHUB operator stop; the cluster: $CITYHUB cluster down"
