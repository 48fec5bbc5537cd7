#!/usr/bin/env bash
# The AI inference backend (issue 7): MLServer (KServe V2 Open Inference Protocol, multi-model) in its own
# venv, and the city's small real model — a traffic-flow regressor trained here on synthetic data — in the
# model store the inference driver loads from. No model hub downloads.
#
#   <cache>/venvs/mlserver/bin/mlserver            the server (own venv: its grpcio/protobuf pins must not
#                                                  meet the project venv's pulumi pins)
#   <cache>/inference/models/traffic-flow/1/model.joblib     scikit-learn model (mlserver_sklearn)
#
# Idempotent: skipped when the stamp (pins + this script's hash) matches. CITYHUB_CACHE overrides
# ~/.cache/cityhub. Meant to be called from hack/toolchain.sh.
set -euo pipefail
MLSERVER_VERSION=${MLSERVER_VERSION:-1.7.1}
SKLEARN_VERSION=${SKLEARN_VERSION:-1.6.1}
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
VENV=$CACHE/venvs/mlserver
STORE=$CACHE/inference/models
PYTHON=${CITYHUB_INFERENCE_PYTHON:-python3.11}
stamp="mlserver=$MLSERVER_VERSION sklearn=$SKLEARN_VERSION script=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
if [ -x "$VENV/bin/mlserver" ] && [ -f "$STORE/traffic-flow/1/model.joblib" ] \
  && [ "$(cat "$VENV/.cityhub-stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
command -v "$PYTHON" >/dev/null || {
  echo "[inference] $PYTHON not found: install python3.11 (apt-get install -y python3.11-venv)" >&2
  exit 1
}
echo "[toolchain] inference: mlserver $MLSERVER_VERSION + scikit-learn $SKLEARN_VERSION in $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" || {
  echo "[inference] cannot create $VENV: install python3.11-venv" >&2
  exit 1
}
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "mlserver==$MLSERVER_VERSION" "mlserver-sklearn==$MLSERVER_VERSION" "scikit-learn==$SKLEARN_VERSION"
mkdir -p "$STORE"
# Train on synthetic traffic-flow data with a fixed seed, so every machine builds the same model.
"$VENV/bin/python" - "$STORE" <<'PY'
import json
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

store = Path(sys.argv[1])
rng = np.random.default_rng(20240601)
n = 4000
hour = rng.integers(0, 24, n)
weekday = rng.integers(0, 7, n)
rain_mm = rng.gamma(0.6, 2.0, n)
event = rng.random(n) < 0.05
rush = np.exp(-((hour - 8) ** 2) / 4) + 0.9 * np.exp(-((hour - 18) ** 2) / 5)
weekend = weekday >= 5
flow = 300 + 1400 * rush * np.where(weekend, 0.45, 1.0) - 25 * rain_mm + 600 * event
flow = np.clip(flow + rng.normal(0, 40, n), 0, None)
X = np.column_stack([hour, weekday, rain_mm, event]).astype(np.float32)
model = GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=0).fit(X, flow)
out = store / "traffic-flow" / "1"
out.mkdir(parents=True, exist_ok=True)
tmp = out / "model.joblib.tmp"
joblib.dump(model, tmp)
tmp.replace(out / "model.joblib")
(store / "traffic-flow" / "model.json").write_text(json.dumps({
    "name": "traffic-flow",
    "runtime": "mlserver_sklearn.SKLearnModel",
    "versions": ["1"],
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
    "description": "vehicles per hour at a road section from [hour, weekday, rain_mm, event]",
}, indent=2) + "\n")
print(f"[inference] traffic-flow model: R^2 {model.score(X, flow):.3f} on the training data", file=sys.stderr)
PY
echo "$stamp" >"$VENV/.cityhub-stamp"
"$VENV/bin/mlserver" --version >&2
