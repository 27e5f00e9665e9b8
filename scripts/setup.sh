#!/usr/bin/env bash
# Creates .venv in the repository root and installs the whole stack in the
# order that works on Python 3.11 (see ../shared/docs/ENVIRONMENT.md):
#   1. torch pinned to the local CPU wheel (an unpinned torch pulls CUDA),
#   2. numpy<2 and Lava's real dependencies at versions with 3.11 wheels,
#   3. lava-nc / lava-dl without their (wrong) Python-version metadata,
#   4. norse without torchvision, then the rest and this package (editable), then Ray.
# Idempotent: on an installed tree a second run only checks what is there (the stamp below), so
# it prints one line and no warnings; pip runs again when this script or pyproject.toml changed or
# the stack does not import.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.lensnet-setup  # the sha256 of this script and pyproject.toml the stack was installed from
WANT=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -d" " -f1)
installed() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && .venv/bin/python - <<'PY' 2>/dev/null
import pathlib

import lava.magma.core.run_configs  # noqa: F401
import ray  # noqa: F401

import lensnet_deploy

# the editable install of this tree, not of another checkout
assert pathlib.Path(lensnet_deploy.__file__).resolve().parent == pathlib.Path("lensnet_deploy").resolve()
PY
}
if [ -x .venv/bin/python ] && installed; then
  echo "setup: .venv ready ($(.venv/bin/python --version)), nothing to install"
  exit 0
fi
PIP=".venv/bin/python -m pip"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  $PIP install --quiet --upgrade pip  # a fresh venv's pip only: later runs keep the one they have
fi
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
  && echo "$WANT" > "$STAMP" \
  && echo "setup: .venv ready ($(.venv/bin/python --version))"
