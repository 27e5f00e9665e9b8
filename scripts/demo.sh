#!/usr/bin/env bash
# The main job on the bundled default: `lensnet-deploy run` with no arguments takes the
# zoo's lensnet-tiny and the twelve committed ORSSD test images (with masks) through
# export → quantize → float and bit-exact integer maps → Loihi 2 build → evaluate,
# and writes out/demo/report.html (self-contained) beside every artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lensnet-deploy run -o out/demo
.venv/bin/python - <<'PY'
import json
m = json.load(open("out/demo/metrics.json"))
for kind in ("float", "integer"):
    print(f"{kind:>8}: S-measure {m[kind]['smeasure']:.4f}  MAE {m[kind]['mae']:.4f}")
print("report: out/demo/report.html")
PY
