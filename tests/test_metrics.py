"""SOD metrics: the paper's published maps reproduce its headline; hand cases."""

import json

import numpy as np
import pytest
from conftest import DATASETS, SHARED, needs_shared

from lensnet_deploy.metrics import METRIC_KEYS, SODMetrics, evaluate_dirs, format_table

PAPER_MAPS = SHARED / "reference" / "lensnet-paper-maps" / "ORSSD-T4"


def test_perfect_and_inverted_predictions():
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 255
    m = SODMetrics()
    m.step(gt.copy(), gt)
    r = m.results()
    assert set(r) == set(METRIC_KEYS)
    assert r["mae"] == 0.0 and r["smeasure"] == pytest.approx(1.0) and r["max_fmeasure"] == pytest.approx(1.0)
    inv = SODMetrics()
    inv.step(255 - gt, gt)
    assert inv.results()["mae"] == 1.0


def test_mae_hand_computed():
    gt = np.zeros((2, 2), np.uint8)
    gt[0, 0] = 255
    pred = np.array([[255, 51], [0, 102]], np.uint8)
    m = SODMetrics()
    m.step(pred, gt)
    assert m.results()["mae"] == pytest.approx((0 + 0.2 + 0 + 0.4) / 4)


def test_table_has_four_decimals():
    table = format_table({"float": dict.fromkeys(METRIC_KEYS, 0.123456)})
    assert "S-measure" in table and "0.1235" in table


@needs_shared(PAPER_MAPS)
@needs_shared(DATASETS)
def test_paper_maps_reproduce_the_headline(tmp_path):
    results, n, resized = evaluate_dirs(PAPER_MAPS, DATASETS / "ORSSD" / "test-labels")
    assert n == 200 and resized == 0
    assert f"{results['smeasure']:.4f}" == "0.9279"
    assert f"{results['mae']:.4f}" == "0.0110"
    assert json.loads(json.dumps(results)) == results
