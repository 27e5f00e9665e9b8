"""Shared test fixtures: paths to ../shared (when present) and bundled samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"
SAMPLES = REPO / "lensnet_deploy" / "data" / "samples" / "orssd-test"

# Two threads on the 2-core CI machine; LENSNET_TEST_THREADS=1 when something else is busy there
# (two processes with two OpenMP threads each on two cores slow each other down many times over).
torch.set_num_threads(int(os.environ.get("LENSNET_TEST_THREADS", max(1, min(2, torch.get_num_threads())))))


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is not present")


@pytest.fixture(scope="session")
def micro_model():
    from lensnet_deploy.model_zoo import VARIANTS, LensNet
    from lensnet_deploy.model_zoo.random_weights import randomize_

    return randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=3).eval()
