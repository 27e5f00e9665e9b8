"""Quantization-aware fine-tuning: the grid is the quantizer's, snapping makes float and integer
agree, ``train --qat`` resumes exactly, refuses what it cannot fine-tune, and raises agreement."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import losses, make_dataset

from lensnet_deploy.api import quantize_with_report
from lensnet_deploy.checkpoint import load_lensnet, save_lensnet
from lensnet_deploy.errors import LensNetDeployError
from lensnet_deploy.export import export_nir
from lensnet_deploy.export.capture import capture_lensnet
from lensnet_deploy.export.passes import run_passes
from lensnet_deploy.hardware.quantize import _fold_input_normalisation, quantize_ir
from lensnet_deploy.model_zoo import VARIANTS, LensNet
from lensnet_deploy.model_zoo.random_weights import randomize_
from lensnet_deploy.qat import snap
from lensnet_deploy.train import TrainConfig, Trainer

SAMPLES = Path(__file__).resolve().parents[1] / "lensnet_deploy" / "data" / "samples" / "orssd-test" / "Image"


def _images(size=32) -> torch.Tensor:
    """Real 8-bit images: the integer model reads pixels exactly (noise would be rounded)."""
    from lensnet_deploy.datasets import list_images, load_images

    return load_images(list_images(SAMPLES)[:2], (size, size))


def _agreement(model, x) -> float:
    _, report = quantize_with_report(export_nir(model, tuple(x.shape[-2:])), x)
    return float(np.mean(list(report.spike_agreement.values())))


def test_snapped_weights_are_exactly_the_quantizers_integers(micro_model):
    size = (32, 32)
    snapped = snap(micro_model, size)
    folded = run_passes(capture_lensnet(snapped.eval(), size))
    q, _ = quantize_ir(folded, target="loihi2")
    _fold_input_normalisation(folded)  # the quantizer folds the input normalisation into the first convolution
    convs = [n for n in q.nodes.values() if n.kind == "conv"]
    assert len(convs) > 30
    off = 0.0
    for n in convs:
        at = (n.op.shift - n.op.exp).astype(np.float64)
        exact = folded.nodes[n.name].op.weight * np.exp2(at)[:, None, None, None]
        off = max(off, float(np.abs(exact - n.op.w_int).max()))
    assert off < 1e-3  # every folded weight sits on its integer (float32 storage error only)
    # without snapping they do not: the check can fail
    raw = run_passes(capture_lensnet(micro_model.eval(), size))
    q_raw, _ = quantize_ir(raw, target="loihi2")
    _fold_input_normalisation(raw)
    n = next(n for n in q_raw.nodes.values() if n.kind == "conv" and n.op.w_int.size > 100)
    at = (n.op.shift - n.op.exp).astype(np.float64)
    assert np.abs(raw.nodes[n.name].op.weight * np.exp2(at)[:, None, None, None] - n.op.w_int).max() > 0.1


def test_snapping_raises_spike_agreement(micro_model):
    x = _images()
    before, after = _agreement(micro_model, x), _agreement(snap(micro_model, (32, 32)), x)
    assert after > before
    assert after > 0.97


def _qat_config(tmp_path, **kw) -> TrainConfig:
    source = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=5)
    ckpt = save_lensnet(source, tmp_path / "pre.safetensors", "lensnet-micro")
    base = dict(variant="lensnet-micro", data_root=str(tmp_path), train_sets=("toy/train",), input_size=32,
                epochs=2, batch_size=4, lr=1e-3, holdout=4, save_every=2, seed=3, init=str(ckpt), qat=True,
                qat_refresh=3)
    return TrainConfig(**{**base, **kw})


def test_qat_resumes_exactly_and_saves_weights_on_the_grid(tmp_path):
    make_dataset(tmp_path)
    cfg = _qat_config(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = Trainer(cfg, tmp_path / "full", log=lambda s: None)
        full.run(max_steps=7)
        part = Trainer(cfg, tmp_path / "part", log=lambda s: None)
        part.run(max_steps=4)
        del part
        resumed = Trainer(cfg, tmp_path / "part", log=lambda s: None)
        assert (resumed.epoch, resumed.step) == (0, 4)
        resumed.run(max_steps=3)
    finally:
        torch.set_num_threads(threads)
    a, b = losses(tmp_path / "full"), losses(tmp_path / "part")
    assert [s for s, _ in a] == list(range(7)) and a == b
    assert len({v for _, v in a}) > 1
    state = torch.load(tmp_path / "full" / "state.pt", weights_only=True)
    assert "qat_exponents" in state and not any("parametrizations" in k for k in state["model"])
    best = load_lensnet(tmp_path / "full" / "best.safetensors")
    again = snap(best, (32, 32))  # the saved weights are already on the grid: snapping moves nothing
    assert all(torch.allclose(p, q, rtol=0, atol=1e-6) for p, q in zip(best.state_dict().values(),
                                                                        again.state_dict().values()))


def test_qat_fine_tuning_raises_agreement_on_a_small_case(tmp_path):
    make_dataset(tmp_path, n=12)
    cfg = _qat_config(tmp_path, epochs=1)
    Trainer(cfg, tmp_path / "run", log=lambda s: None).run()
    x = _images()
    before = _agreement(load_lensnet(tmp_path / "pre.safetensors"), x)
    after = _agreement(load_lensnet(tmp_path / "run" / "best.safetensors"), x)
    assert after > before and after > 0.97


def test_qat_needs_init_and_the_right_variant(tmp_path):
    make_dataset(tmp_path, n=12)
    with pytest.raises(LensNetDeployError, match="give --init"):
        Trainer(_qat_config(tmp_path, init=""), tmp_path / "a", log=lambda s: None)
    with pytest.raises(LensNetDeployError, match="does not match LENS-Net variant 'lensnet-tiny'"):
        Trainer(_qat_config(tmp_path, variant="lensnet-tiny"), tmp_path / "b", log=lambda s: None)
    proc = subprocess.run([sys.executable, "-m", "lensnet_deploy", "train", "--qat", "--variant", "lensnet-micro",
                           "--data-root", str(tmp_path), "--sets", "toy/train", "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "give --init" in lines[0], proc.stderr
