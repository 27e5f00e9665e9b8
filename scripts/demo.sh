#!/usr/bin/env bash
# The main job on the bundled default: the zoo's lensnet-tiny on the twelve
# committed ORSSD test images, float and integer, in out/demo/:
#   predict (float) → export (NIR) → quantize (integer NIR) → simulate (bit-exact) → evaluate both.
# (It grows with the pipeline: Lava, placement and the HTML report join it.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SAMPLES=lensnet_deploy/data/samples/orssd-test
OUT=out/demo
LD=.venv/bin/lensnet-deploy
$LD predict lensnet-tiny --images "$SAMPLES/Image" --out "$OUT/float"
$LD export lensnet-tiny -o "$OUT/lensnet-tiny.nir" --summary-json "$OUT/export-summary.json"
$LD quantize "$OUT/lensnet-tiny.nir" --calib "$SAMPLES/Image" -o "$OUT/lensnet-tiny.q.nir"
$LD simulate "$OUT/lensnet-tiny.q.nir" --images "$SAMPLES/Image" --out "$OUT/integer"
echo "== float model =="
$LD evaluate --pred "$OUT/float" --gt "$SAMPLES/GT" --json "$OUT/metrics-float.json"
echo "== integer model (bit-exact simulation) =="
$LD evaluate --pred "$OUT/integer" --gt "$SAMPLES/GT" --json "$OUT/metrics-integer.json"
