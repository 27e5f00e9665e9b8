"""Quantization-aware fine-tuning: the float model trained through the integer weight grid.

The quantizer (``hardware/quantize.py``) turns every folded convolution weight
into ``w_int = clip(rint(w_fold · 2^at[o]), ±weight_max)`` with
``at = shift − exp`` per output channel. Folding (BatchNorm, layer scales,
the 1/D spike scale, channel shuffles, the input normalisation) multiplies
each PyTorch weight by a fixed factor ``A`` and may permute input channels,
so on the PyTorch weight the grid is ``w_int / (A · 2^at)``. QAT puts every
convolution weight on that grid in the forward pass (straight-through
gradient), with BatchNorm and layer scales frozen so that ``A`` stays fixed,
and refreshes ``at`` from the current weights as training moves them.
A model whose weights sit on the grid (``snap``) *is* its integer model up to
bias rounding, tie-breaking and the gate table, which is what makes the
float and integer spike counts agree image by image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import LensNetDeployError
from .export import ops as O
from .export.capture import capture_lensnet
from .export.ir import Graph
from .export.passes import run_passes
from .hardware.integer.quantize import _fold_input_normalisation, quantize_ir
from .hardware.target.chips import load_target
from .model_zoo import LensNet

TIE_OFFSET = 1 / 64  # of a membrane step above the grid (snap_biases_): under one step for up to 63 biases per sum


def _folded(model: LensNet, size: tuple[int, int]) -> Graph:
    return run_passes(capture_lensnet(model.eval(), size))


def _conv_modules(model: LensNet, graph: Graph) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    out = {}
    for n in graph.of(O.Conv):
        m = modules.get(n.name)
        if not isinstance(m, nn.Conv1d | nn.Conv2d):
            raise LensNetDeployError(f"folded convolution {n.name} has no PyTorch convolution of that name")
        out[n.name] = m
    return out


def _plain_copy(model: LensNet) -> LensNet:
    """A fresh, unparametrized module with the raw weights (never a deepcopy of a parametrized
    one: removing a parametrization from a copy strips the property from the shared class)."""
    state = {k.replace(".parametrizations.weight.original", ".weight"): v for k, v in model.state_dict().items()
             if ".parametrizations.weight.0." not in k}
    out = LensNet(model.config)
    out.load_state_dict(state)
    return out


def fold_factors(model: LensNet, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Per convolution, the factor ``A`` (PyTorch weight layout) with ``w_fold = A · w`` after
    every fold, the input normalisation of the first convolution included. Found by probing:
    all weights 1 gives ``A`` in the folded layout, weights equal to their input channel's
    index give the permutation that channel shuffles applied."""
    probe = _plain_copy(model)
    convs = _conv_modules(probe, _folded(probe, size))
    with torch.no_grad():
        for m in convs.values():
            m.weight.fill_(1.0)
    ones = _folded(probe, size)
    _fold_input_normalisation(ones)
    with torch.no_grad():
        for m in convs.values():
            idx = torch.arange(1, m.weight.shape[1] + 1, dtype=m.weight.dtype)
            m.weight.copy_(idx.view(1, -1, *([1] * (m.weight.dim() - 2))).expand_as(m.weight))
    index = _folded(probe, size)
    _fold_input_normalisation(index)
    out = {}
    for name, m in convs.items():
        a = ones.nodes[name].op.weight  # type: ignore[attr-defined]
        src = np.rint(index.nodes[name].op.weight[:, :, 0, 0] / a[:, :, 0, 0]).astype(np.int64) - 1  # type: ignore
        torch_a = np.empty_like(a)
        for o in range(a.shape[0]):
            torch_a[o, src[o]] = a[o]
        out[name] = torch.as_tensor(torch_a.reshape(m.weight.shape), dtype=torch.float64)
    return out


def grid_shifts(model: LensNet, size: tuple[int, int], target: str = "loihi2"
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per convolution and output channel, the weights' ``at = shift − exp`` and the biases'
    ``shift``, as the quantizer chooses them now."""
    q, _ = quantize_ir(_folded(model, size), target=target)
    convs = [n for n in q.nodes.values() if n.kind == "conv"]
    return ({n.name: (n.op.shift - n.op.exp).astype(np.int64) for n in convs},  # type: ignore[attr-defined]
            {n.name: n.op.shift.astype(np.int64) for n in convs})  # type: ignore[attr-defined]


def weight_exponents(model: LensNet, size: tuple[int, int], target: str = "loihi2") -> dict[str, np.ndarray]:
    return grid_shifts(model, size, target)[0]


def bias_parameters(model: LensNet, size: tuple[int, int]) -> dict[str, nn.Parameter]:
    """Per convolution, the parameter that moves its folded bias: its own bias, else that of
    the BatchNorm folded into it (a convolution with neither has no bias to round)."""
    from .export.passes.conv_affine import producing_conv

    modules = dict(model.named_modules())
    g = capture_lensnet(model.eval(), size)
    out: dict[str, nn.Parameter] = {}
    for n in g.of(O.Conv):
        if modules[n.name].bias is not None:
            out[n.name] = modules[n.name].bias
    for bn in g.of(O.BatchNorm):
        conv = producing_conv(g, bn).name
        out.setdefault(conv, modules[bn.name].bias)
    return out


def snap_biases_(model: LensNet, size: tuple[int, int], shifts: dict[str, np.ndarray],
                 tie_offset: float = TIE_OFFSET) -> None:
    """Move every folded bias onto its grid ``2^-shift`` (in place): the folded bias is
    ``B·p + C`` in its parameter ``p`` (found by probing p = 0 and p = 1)."""
    params = bias_parameters(model, size)
    saved = {k: p.detach().clone() for k, p in params.items()}
    probes = []
    with torch.no_grad():
        for value in (0.0, 1.0):
            for p in params.values():
                p.fill_(value)
            g = _folded(model, size)
            _fold_input_normalisation(g)
            probes.append({k: g.nodes[k].op.bias for k in params})  # type: ignore[attr-defined]
        for k, p in params.items():
            p.copy_(saved[k])
    g = _folded(model, size)
    _fold_input_normalisation(g)
    with torch.no_grad():
        for k, p in params.items():
            c, b = probes[0][k], probes[1][k] - probes[0][k]
            step = np.exp2(-shifts[k].astype(np.float64))
            # TIE_OFFSET of a step above the grid point: a float membrane on a threshold k − 0.5
            # (torch.round: ties to even; NIR's strict u > k − 0.5: ties down) then rounds up,
            # as the integer m > θ does (ties up); the quantizer still rounds the bias to the same integer
            target = (np.rint(g.nodes[k].op.bias / step) + tie_offset) * step  # type: ignore[attr-defined]
            ok = b != 0
            value = p.detach().to(torch.float64).numpy().copy()
            value[ok] = (target[ok] - c[ok]) / b[ok]
            p.copy_(torch.as_tensor(value, dtype=p.dtype))


class WeightGrid(nn.Module):
    """Parametrization: the weight rounded to the integer grid ``1/scale`` in the forward pass,
    the gradient passed straight through (clipped weights get none)."""

    def __init__(self, scale: torch.Tensor, limit: int) -> None:
        super().__init__()
        self.register_buffer("scale", scale.to(torch.float32))
        self.limit = limit

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = torch.round(w * self.scale)
        inside = n.abs() <= self.limit
        snapped = torch.clamp(n, -self.limit, self.limit) / self.scale
        return torch.where(inside, w + (snapped - w).detach(), snapped)


class QAT:
    """Sets a model up for quantization-aware fine-tuning and keeps its grid current."""

    def __init__(self, model: LensNet, size: tuple[int, int], target: str = "loihi2") -> None:
        self.model, self.size, self.target = model, size, target
        self.limit = load_target(target).weight_max
        self.factors = fold_factors(model, size)
        modules = dict(model.named_modules())
        self.convs = {name: modules[name] for name in self.factors}
        self.exponents = weight_exponents(model, size, target)
        freeze(model)
        for name, m in self.convs.items():
            parametrize.register_parametrization(m, "weight", WeightGrid(self.scale(name), self.limit))

    def scale(self, name: str, exponents: np.ndarray | None = None) -> torch.Tensor:
        at = torch.as_tensor(self.exponents[name] if exponents is None else exponents, dtype=torch.float64)
        shape = (-1, *([1] * (self.factors[name].dim() - 1)))
        return (self.factors[name] * torch.exp2(at).view(shape)).to(torch.float32)

    def refresh(self, exponents: dict[str, np.ndarray] | None = None) -> int:
        """Re-read ``at`` from the quantizer (or take the given ones); returns how many changed."""
        if exponents is None:
            was = self.model.training
            exponents = weight_exponents(self.model, self.size, self.target)  # capture sets eval mode
            self.model.train(was)
            freeze(self.model)
        new = exponents
        changed = sum(int((new[k] != self.exponents[k]).sum()) for k in new)
        self.exponents = {k: np.asarray(v, dtype=np.int64) for k, v in new.items()}
        for name, m in self.convs.items():
            m.parametrizations.weight[0].scale.copy_(self.scale(name))
        return changed

    def plain_state(self) -> dict[str, torch.Tensor]:
        """The state dict with the *raw* weights under their usual keys (for resuming)."""
        return _plain_copy(self.model).state_dict()

    def snapped(self, rounds: int = 8, biases: bool = True, tie_offset: float = TIE_OFFSET) -> LensNet:
        """A plain copy of the model with every weight on the grid (what gets registered).

        Snapping moves the static bounds a little, so the quantizer may then choose a coarser
        grid for a channel; the weights are snapped again to that one until it stays (a finer
        grid holds every point of a coarser one, so channels that get finer need nothing)."""
        out = _plain_copy(self.model)
        used = dict(self.exponents)
        used_shift: dict[str, np.ndarray] | None = None
        modules = dict(out.named_modules())
        with torch.no_grad():
            for name in self.convs:
                w = modules[name].weight
                w.copy_(WeightGrid(self.scale(name, used[name]), self.limit)(w))
        for _ in range(rounds):
            new, shifts = grid_shifts(out, self.size, self.target)
            coarser = {k: np.minimum(used[k], new[k]) for k in used}
            settled = all((coarser[k] == used[k]).all() for k in used)
            if settled and (not biases or used_shift is not None and all((shifts[k] >= used_shift[k]).all()
                                                                          for k in shifts)):
                return out.eval()
            used = coarser
            with torch.no_grad():
                for name in self.convs:
                    w = modules[name].weight
                    w.copy_(WeightGrid(self.scale(name, used[name]), self.limit)(w))
            if settled:
                used_shift = shifts if used_shift is None else {k: np.minimum(shifts[k], used_shift[k])
                                                                for k in shifts}
                snap_biases_(out, self.size, used_shift, tie_offset)
        raise LensNetDeployError(f"the integer grid did not settle in {rounds} rounds of snapping")


def freeze(model: LensNet) -> None:
    """Only convolution weights and biases train; BatchNorm runs on its running statistics and
    layer scales stay, so the fold factors of the grid do not move."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith(".weight") or name.endswith(".bias") or ".original" in name)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.eval()
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)


def snap(model: LensNet, size: tuple[int, int], target: str = "loihi2", biases: bool = True,
         tie_offset: float = TIE_OFFSET) -> LensNet:
    """``model`` with every convolution weight (and, with ``biases``, every folded bias, held
    ``tie_offset`` of a step above its grid point) moved to its integer grid (no training)."""
    return QAT(_plain_copy(model), size, target).snapped(biases=biases, tie_offset=tie_offset)
