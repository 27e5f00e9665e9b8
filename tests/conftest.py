"""Shared test fixtures: paths to ../shared (when present) and bundled samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"
SAMPLES = REPO / "lensnet_deploy" / "data" / "samples" / "orssd-test"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is not present")


@pytest.fixture(scope="session")
def micro_model():
    from lensnet_deploy.model_zoo import VARIANTS, LensNet
    from lensnet_deploy.model_zoo.random_weights import randomize_

    return randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=3).eval()
