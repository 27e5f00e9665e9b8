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
        assert round(measured[key], 4) == round(listed[key], 4), key
