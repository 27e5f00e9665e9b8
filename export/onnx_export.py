"""LENS-Net (float) → ONNX, and a check that onnxruntime reproduces PyTorch.

Why this exporter path: ``torch.onnx.export(..., dynamo=True)`` (the maintained
``torch.export``-based exporter, default since torch 2.9) traces the custom
spike ``autograd.Function`` into plain ``Max/Min/Round/Div`` ops, and its
non-strict tracing evaluates the model's Python input-shape check on concrete
ints, so the model exports as is, without a wrapper. Its built-in graph
optimisation is switched off (``optimize=False``): with onnxscript 0.7.2 the
``FuseMaxMinToClip`` rewrite names the new Clip bounds ``<input>_min``/``_max``,
and where one tensor feeds several spike neurons (the decoder's depth-wise
branches) the renamed duplicates lose their initializers, so the file fails
``onnx.checker`` and onnxruntime refuses to load it. We run onnxscript's
public constant folding and dead-node removal instead, which removes the
exporter's Cast/CastLike/Expand scaffolding and leaves a clean, valid graph.
The legacy TorchScript exporter (``dynamo=False``) also gives a valid graph,
but it is deprecated and warns on the shape check, so it is not used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import LensNetDeployError
from ..model_zoo import check_input_size

INPUT_NAME = "image"
OUTPUT_NAMES = ("p1", "p2", "p3", "p4")


class OnnxExportError(LensNetDeployError):
    """An ONNX export or comparison cannot be done as asked (bad size, batch or file)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _checked_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """Validate ``(height, width)`` up front so a bad size fails in one line, before any tracing."""
    try:
        h, w = (int(s) for s in input_size)
        check_input_size((h, w))
    except (TypeError, ValueError) as exc:
        raise OnnxExportError(f"cannot export to ONNX: {_first_line(exc)}") from None
    return h, w


@contextlib.contextmanager
def _onednn_enabled(enabled: bool) -> Iterator[None]:
    """Switch only PyTorch's oneDNN flag (``mkldnn.flags()`` would also reset TF32 settings and warn)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def export_onnx(
    model: nn.Module,
    input_size: tuple[int, int],
    path: str | os.PathLike[str],
    batch: int = 1,
    opset: int | None = None,
) -> Path:
    """Export ``model`` (in eval mode) to an ONNX file with input ``image`` and outputs ``p1..p4``.

    Shapes are static (``batch×3×H×W``): the deployment targets run one fixed
    resolution. The file is validated with ``onnx.checker`` before it is
    renamed over ``path``, so ``path`` never holds a partial or invalid model.
    ``opset`` None takes the exporter's default opset.
    """
    h, w = _checked_size(input_size)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise OnnxExportError(f"cannot export to ONNX: batch must be a positive integer, got {batch!r}")
    target = Path(path)
    example = torch.zeros(batch, 3, h, w, dtype=torch.float32, device=_model_device(model))
    was_training = model.training
    model.eval()
    try:
        try:
            # optimize=False: see the module docstring (onnxscript Min/Max→Clip rewrite bug).
            program = torch.onnx.export(
                model,
                (example,),
                None,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamo=True,
                optimize=False,
                external_data=False,
                verbose=False,
            )
        except ImportError as exc:
            raise OnnxExportError(f"ONNX export needs onnxscript: {_first_line(exc)}") from exc
        except Exception as exc:
            raise OnnxExportError(f"ONNX export failed: {_first_line(exc)}") from exc
    finally:
        model.train(was_training)
    if program is None:
        raise OnnxExportError("ONNX export failed: the exporter returned no program")

    import onnxscript.optimizer

    onnxscript.optimizer.fold_constants(program.model)
    onnxscript.optimizer.remove_unused_nodes(program.model)
    names = tuple(v.name for v in program.model.graph.outputs)
    if names != OUTPUT_NAMES:
        raise OnnxExportError(f"ONNX export failed: expected outputs {', '.join(OUTPUT_NAMES)}, got {', '.join(names)}")

    with atomic_path(target, suffix=".onnx") as tmp:
        program.save(tmp, external_data=False)
        try:
            # Check the bytes that will land at the target, with full shape inference.
            onnx.checker.check_model(str(tmp), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise OnnxExportError(f"exported ONNX model is invalid: {_first_line(exc)}") from exc
    return target


def compare_onnx(
    path: str | os.PathLike[str], model: nn.Module, images: torch.Tensor, *, onednn: bool = False
) -> float:
    """Max absolute difference between onnxruntime (CPU) and PyTorch over ``p1..p4`` on ``images``.

    ``images`` is ``B×3×H×W``; it is run in chunks of the file's static batch,
    so a batch-1 export can be compared on many images. This is the number
    that says the exported graph computes what the PyTorch model computes.

    ``onednn=False`` (default) runs PyTorch with its oneDNN (mkldnn) convolutions
    off. Why: every spike neuron rounds, so a last-bit difference in a
    pre-activation that lies at a .5 tie flips a spike count, and the flip
    spreads. On the full 352×352 model PyTorch's oneDNN and native conv paths
    disagree with each other by up to 5e-2 in the logits (9015 of 72 M counts
    flipped on one random image); onnxruntime's convolutions agree with the
    native path to < 1e-6. ``onednn=True`` compares against PyTorch's default
    CPU path instead, which then includes that PyTorch-internal spread.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise OnnxExportError(f"ONNX file {path} does not exist")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxExportError(f"cannot load ONNX file {path}: {_first_line(exc)}") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise OnnxExportError(f"{path} has {len(inputs)} inputs, expected one ({INPUT_NAME})")
    inp = inputs[0]
    out_names = [o.name for o in session.get_outputs()]
    if sorted(out_names) != sorted(OUTPUT_NAMES):
        raise OnnxExportError(f"{path} has outputs {', '.join(out_names)}, expected {', '.join(OUTPUT_NAMES)}")
    if images.dim() != 4:
        raise OnnxExportError(f"images must be B×3×H×W, got shape {tuple(images.shape)}")
    n, c, h, w = inp.shape
    if tuple(images.shape[1:]) != (c, h, w):
        raise OnnxExportError(
            f"images are {tuple(images.shape[1:])} per item but {path} takes {(c, h, w)} (static shape)"
        )
    if images.shape[0] == 0 or images.shape[0] % n:
        raise OnnxExportError(f"{images.shape[0]} images cannot be split into batches of {n} for {path}")

    images = images.detach().to(device=_model_device(model), dtype=torch.float32)
    was_training = model.training
    model.eval()
    worst = 0.0
    try:
        for chunk in images.split(n):
            with torch.no_grad(), _onednn_enabled(onednn):
                expected = model(chunk)
            got = dict(zip(out_names, session.run(None, {inp.name: chunk.cpu().numpy()})))
            for name, ref in zip(OUTPUT_NAMES, expected):
                ref_np = ref.cpu().numpy()
                if got[name].shape != ref_np.shape:
                    raise OnnxExportError(f"output {name}: ONNX shape {got[name].shape} != PyTorch {ref_np.shape}")
                diff = float(np.max(np.abs(got[name].astype(np.float64) - ref_np)))
                if np.isnan(diff):
                    return float("nan")  # a NaN must fail any tolerance check, never vanish in max()
                worst = max(worst, diff)
    finally:
        model.train(was_training)
    return worst
