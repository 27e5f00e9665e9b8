#!/usr/bin/env bash
# The main job on the bundled default: the zoo's lensnet-tiny on the twelve
# committed ORSSD test images → saliency maps and their metrics in out/demo/.
# (It grows with the pipeline: export, quantize, simulate and report join it.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SAMPLES=lensnet_deploy/data/samples/orssd-test
.venv/bin/lensnet-deploy predict lensnet-tiny --images "$SAMPLES/Image" --out out/demo/maps
.venv/bin/lensnet-deploy evaluate --pred out/demo/maps --gt "$SAMPLES/GT" --json out/demo/metrics.json
