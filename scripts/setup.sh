#!/usr/bin/env bash
# Creates .venv in the repository root and installs the whole stack in the
# order that works on Python 3.11 (see ../shared/docs/ENVIRONMENT.md):
#   1. torch pinned to the local CPU wheel (an unpinned torch pulls CUDA),
#   2. numpy<2 and Lava's real dependencies at versions with 3.11 wheels,
#   3. lava-nc / lava-dl without their (wrong) Python-version metadata,
#   4. norse without torchvision, then the rest and this package (editable), then Ray.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install --quiet --upgrade pip
$PIP install --quiet "torch==2.13.0"
$PIP install --quiet "numpy==1.26.4" "scipy==1.13.1" "scikit-learn==1.6.1" \
  "asteval==0.9.33" "networkx==2.8.7" "scikit-image==0.22.0" h5py matplotlib
$PIP install --quiet --no-deps --ignore-requires-python "lava-nc==0.10.0" "lava-dl==0.6.0"
$PIP install --quiet --no-deps "norse==1.1.0" "snntorch==1.0.0"  # their NIR importers: the float reference is tested against both
# scikit-image 0.22 is the newest that accepts the networkx Lava pins.
# setuptools ends every editable install of a package-dir layout with an "Editable installation."
# notice (InformationOnly, no deprecation, nothing to fix in pyproject); pip prints it as a
# warning, so that one message is filtered here.
PYTHONWARNINGS="ignore:Editable installation" \
  $PIP install --quiet -e ".[dev]" "networkx==2.8.7" "scikit-image==0.22.0"
# Ray: the engine of --cluster (lensnet_deploy/cluster.py imports it only when asked).
$PIP install --quiet "ray==2.60.0"
# The Lava wheels ship a top-level `tests` package into site-packages; it could
# shadow ours, and nothing of Lava needs it at run time.
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -f "$SITE/tests/__init__.py" ] || [ -d "$SITE/tests/lava" ]; then
  rm -rf "$SITE/tests"
fi
.venv/bin/python -c "import lensnet_deploy, lava.magma.core.run_configs" \
  && echo "setup: .venv ready ($(.venv/bin/python --version))"
