"""The registry's ORSSD-test figures reproduce from the installed CLI: `predict` the zoo model at
its native size, then `evaluate` the maps against the masks (issue 16, acceptance 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATASETS, needs_shared

from lensnet_deploy.datasets import resolve_layout
from lensnet_deploy.model_zoo.registry import zoo_entries

CLI = Path(sys.executable).with_name("lensnet-deploy")
# The float model is not bit-reproducible across CPUs: another CPU runs other convolution
# kernels (torch dispatches by instruction set), their last-bit differences flip a few
# multi-spike counts, and the spiking layers carry those flips to the maps. Measured against
# the registry (figures taken where each model was registered) on a 2-core AMD EPYC with AVX2
# only: lensnet-tiny v6 within 0.0004 on every metric (S 0.86409 vs 0.86412, weighted F
# 0.76287 vs 0.76245), lensnet v3 within 0.0010 (S 0.8480 vs 0.8490; v4 was registered on this
# EPYC). The integer model has no such slack (test_demo_digest holds on both).
FLOAT_KERNEL_SLACK = {"lensnet-tiny": 1e-3, "lensnet": 2e-3}
ORSSD = DATASETS / "ORSSD"


@needs_shared(ORSSD)
@pytest.mark.parametrize("name", ["lensnet-tiny", pytest.param("lensnet", marks=pytest.mark.slow)])
def test_the_registry_figures_reproduce_with_predict_and_evaluate(name, tmp_path):
    images, masks = resolve_layout(ORSSD, "test")
    maps = tmp_path / "maps"
    subprocess.run([str(CLI), "predict", name, "--images", str(images), "--out", str(maps)],
                   check=True, capture_output=True, text=True)
    assert len(list(maps.glob("*.png"))) == 200
    out = tmp_path / "metrics.json"
    subprocess.run([str(CLI), "evaluate", "--pred", str(maps), "--gt", str(masks), "--json", str(out)],
                   check=True, capture_output=True, text=True)
    measured = json.loads(out.read_text())
    listed = zoo_entries()[name]["metrics"]
    for key in ("smeasure", "mae", "max_fmeasure", "mean_emeasure", "wfmeasure"):
        assert abs(measured[key] - listed[key]) <= FLOAT_KERNEL_SLACK[name], (key, measured[key], listed[key])
