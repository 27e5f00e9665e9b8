"""ONNX export: onnxruntime must reproduce the PyTorch logits, with the promised names and shapes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lensnet_deploy.errors import LensNetDeployError
from lensnet_deploy.export.onnx_export import OUTPUT_NAMES, OnnxExportError, compare_onnx, export_onnx
from lensnet_deploy.model_zoo import VARIANTS, LensNet
from lensnet_deploy.model_zoo.random_weights import randomize_

TOL = 1e-4


def seeded_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_file_contract(path, size: int) -> None:
    """Input ``image`` 1×3×H×W, outputs exactly p1..p4, each 1×1×H×W, and a checker-clean file."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["p1", "p2", "p3", "p4"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [[1, 3, size, size]]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [(n, [1, 1, size, size]) for n in OUTPUT_NAMES]
    # The custom spike Function became plain ops: round(clamp(x, 0, D)) with ties to even.
    ops = {n.op_type for n in proto.graph.node}
    assert "Round" in ops and "Conv" in ops


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=0).eval()


@pytest.fixture(scope="module")
def micro_onnx(micro, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "micro.onnx"
    returned = export_onnx(micro, (64, 64), out)
    return returned


def test_micro_export_matches_torch(micro, micro_onnx):
    assert micro_onnx.name == "micro.onnx" and micro_onnx.is_file()
    # Atomic write: only the target is left in the folder, no temp files.
    assert sorted(p.name for p in micro_onnx.parent.iterdir()) == ["micro.onnx"]
    assert_file_contract(micro_onnx, 64)

    images = seeded_images(1, 64, seed=11)
    diff = compare_onnx(micro_onnx, micro, images)
    assert 0.0 <= diff <= TOL
    # At 64×64 PyTorch's default (oneDNN) CPU path agrees as well (measured 1e-7 on 16 images).
    assert compare_onnx(micro_onnx, micro, images, onednn=True) <= TOL

    # The comparison is meaningful: the logits vary over the image and differ between the four heads.
    session = ort.InferenceSession(str(micro_onnx), providers=["CPUExecutionProvider"])
    outs = session.run(None, {"image": images.numpy()})
    assert all(float(o.std()) > 1e-3 for o in outs)
    assert float(np.abs(outs[0] - outs[3]).max()) > 1e-3
    with torch.no_grad():
        ref = micro(images)
    np.testing.assert_allclose(outs[0], ref[0].numpy(), rtol=0, atol=TOL)


def test_compare_runs_a_batch_through_a_batch1_file(micro, micro_onnx):
    diff = compare_onnx(micro_onnx, micro, seeded_images(3, 64, seed=5))
    assert 0.0 <= diff <= TOL
    assert micro.training is False
    assert torch.backends.mkldnn.enabled is True  # compare_onnx restores PyTorch's oneDNN flag


def test_compare_detects_a_different_model(micro_onnx):
    other = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=1).eval()
    assert compare_onnx(micro_onnx, other, seeded_images(1, 64)) > 1e-2


def test_compare_rejects_images_of_another_size(micro, micro_onnx):
    with pytest.raises(OnnxExportError, match="static shape"):
        compare_onnx(micro_onnx, micro, seeded_images(1, 128))


@pytest.mark.parametrize("size", [(60, 64), (64, 0), (100, 100)])
def test_bad_input_size_raises_before_writing(micro, tmp_path, size):
    target = tmp_path / "bad.onnx"
    with pytest.raises(LensNetDeployError, match="multiples of 16") as info:
        export_onnx(micro, size, target)
    assert isinstance(info.value, OnnxExportError)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_batch_raises(micro, tmp_path):
    with pytest.raises(OnnxExportError, match="batch must be a positive integer"):
        export_onnx(micro, (64, 64), tmp_path / "bad.onnx", batch=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_full_lensnet_352_export_matches_torch(tmp_path):
    """Full 18 M-parameter model. The default comparison runs PyTorch without oneDNN (see compare_onnx):
    with oneDNN on, PyTorch differs from its own native conv path by up to 5e-2 on the second of these
    images, because float32 summation order flips spike counts that sit at rounding ties."""
    torch.manual_seed(0)
    model = randomize_(LensNet(VARIANTS["lensnet"]), seed=0).eval()
    path = export_onnx(model, (352, 352), tmp_path / "lensnet.onnx")
    assert_file_contract(path, 352)
    diff = compare_onnx(path, model, seeded_images(2, 352, seed=11))
    assert 0.0 <= diff <= TOL
