"""Compare a NIR graph's spike layers and outputs with the PyTorch model, neuron by neuron.

Each spike layer of an exported graph names the PyTorch calls it reproduces
and the views (global max, nearest upsampling, channel permutation) that map
its counts onto theirs. ``torch.round`` rounds x.5 to even while NIR's strict
thresholds round it down; such exact ties are counted and are the only
allowed difference.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import nir
import numpy as np
import torch

from ..errors import InternalError
from ..model_zoo import LensNet, MultiSpike
from . import convention as C
from . import kernels as K
from .interpreter import run_nir_full


@dataclass
class SpikeComparison:
    """Counts over every PyTorch spike call. ``mismatched`` is measured with exact
    ties replayed from PyTorch (``forced_ties`` neurons); ``free_*`` without."""

    calls: int = 0
    neurons: int = 0
    mismatched: int = 0
    ties: int = 0
    mismatched_outside_ties: int = 0
    max_logit_diff: float = 0.0
    forced_ties: int = 0
    free_mismatched: int = 0
    free_max_logit_diff: float = 0.0
    per_call: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.mismatched_outside_ties == 0


def apply_views(counts: torch.Tensor, views: list[dict]) -> torch.Tensor:
    for view in views:
        op = view["op"]
        if op == "global_max":
            counts = K.global_maxpool(counts)
        elif op == "upsample":
            counts = K.upsample_nearest(counts, int(view["factor"]))
        elif op == "permute":
            counts = counts[:, torch.as_tensor(view["perm"], dtype=torch.long)]
        else:
            raise InternalError(f"unknown spike view {op!r}")
    return counts


def torch_spikes_and_ties(model: LensNet, images: torch.Tensor,
                          precision_ties: bool = False) -> tuple[tuple, dict, dict]:
    """Logits, integer spike counts and tie masks per PyTorch call.

    A tie is x = k + 0.5 exactly with k odd, where ``torch.round`` (half to
    even) and a strict threshold disagree. With ``precision_ties`` (float32
    models), a neuron also counts as a tie when the same layer computed in
    float64 from the same input spikes would give another count: the float32
    model's own rounding decided it (PyTorch's two CPU convolution paths
    disagree on such neurons too).
    """
    counts: dict[str, torch.Tensor] = {}
    ties: dict[str, torch.Tensor] = {}

    def call_key(module: MultiSpike, seen: dict[str, int]) -> str:
        seen[module.name] = seen.get(module.name, 0) + 1
        return module.name if seen[module.name] == 1 else f"{module.name}#{seen[module.name]}"

    seen: dict[str, int] = {}

    def hook(module: MultiSpike, args):
        (x,) = args
        key = call_key(module, seen)
        half = torch.floor(x) + 0.5
        odd = torch.remainder(torch.floor(x), 2) == 1
        ties[key] = (half > 0) & (half < module.max_count) & (x == half) & odd
        counts[key] = torch.round(torch.clamp(x, 0, module.max_count)).to(torch.int64)

    with _hooks(model, pre=hook):
        out = model(images)
    if precision_ties:
        wide = copy.deepcopy(model).double()
        seen64: dict[str, int] = {}
        pending: dict[int, str] = {}

        def pre64(module: MultiSpike, args):
            (x,) = args
            key = call_key(module, seen64)
            pending[id(module)] = key
            own = torch.round(torch.clamp(x, 0, module.max_count)).to(torch.int64)
            ties[key] = ties[key] | (own != counts[key])

        def post64(module: MultiSpike, args, output):
            key = pending.pop(id(module))
            return counts[key].to(torch.float64) / module.max_count  # same spikes as the float32 model

        with _hooks(wide, pre=pre64, post=post64):
            wide(images.double())
    return out, counts, ties


@contextlib.contextmanager
def _hooks(model: LensNet, pre=None, post=None):
    handles = []
    for m in model.spiking_modules().values():
        if pre is not None:
            handles.append(m.register_forward_pre_hook(pre))
        if post is not None:
            handles.append(m.register_forward_hook(post))
    try:
        with torch.no_grad():
            yield
    finally:
        for h in handles:
            h.remove()


def _tie_forcing(layers: dict, torch_counts: dict, ties: dict) -> tuple[dict, int]:
    """Per spike layer, the (mask, counts) that replay PyTorch at its exact ties."""
    force: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    total = 0
    for layer, meta in layers.items():
        shape = tuple(meta["shape"])
        for source in meta["sources"]:
            mask, counts = ties[source["call"]], torch_counts[source["call"]]
            if not bool(mask.any()):
                continue
            views = [v["op"] for v in source["views"]]
            if views == ["permute"]:
                inv = torch.as_tensor(np.argsort(source["views"][0]["perm"]), dtype=torch.long)
                mask, counts = mask[:, inv], counts[:, inv]
            elif views == ["upsample"]:
                f = int(source["views"][0]["factor"])
                mask, counts = mask[:, :, ::f, ::f], counts[:, :, ::f, ::f]
            elif views:
                continue  # a tie seen through a global max: counted, not replayed
            mask = mask.reshape(mask.shape[0], *shape)
            counts = counts.reshape(counts.shape[0], *shape)
            if layer in force:
                old_mask, old_counts = force[layer]
                mask, counts = old_mask | mask, torch.where(mask, counts, old_counts)
            force[layer] = (mask, counts)
            total += int(mask.sum())
    return force, total


def compare_with_torch(model: LensNet, graph: nir.NIRGraph, images: torch.Tensor,
                       dtype: torch.dtype = torch.float32, precision_ties: bool = False) -> SpikeComparison:
    """Run both on ``images``; every PyTorch spike call must be reproduced by a NIR layer.

    PyTorch's float32 can land exactly on k + 0.5, where ``torch.round``
    rounds to even and a strict threshold rounds down; one such tie changes
    what every later layer sees. So the comparison replays PyTorch's count at
    each tie (``forced_ties``) and then requires every neuron to match; the
    free-running result is reported beside it. ``dtype`` runs the PyTorch
    model in float32 (as users run it) or float64 (no rounding of its own);
    ``precision_ties`` also replays the neurons that the float32 model's own
    rounding decided (see :func:`torch_spikes_and_ties`).
    """
    info = C.model_info(graph) or {}
    layers = info.get("spike_layers", {})
    reference = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    logits, torch_counts, ties = torch_spikes_and_ties(reference, images.to(dtype), precision_ties)
    force, forced = _tie_forcing(layers, torch_counts, ties)
    result = SpikeComparison(forced_ties=forced)
    free = run_nir_full(graph, images)
    run = run_nir_full(graph, images, force=force) if force else free
    result.max_logit_diff = max(float((a.double() - b).abs().max()) for a, b in zip(logits, run.outputs))
    result.free_max_logit_diff = max(float((a.double() - b).abs().max()) for a, b in zip(logits, free.outputs))
    covered = set()
    for layer, meta in layers.items():
        for source in meta["sources"]:
            call = source["call"]
            covered.add(call)
            result.free_mismatched += int((_matched(free.spike_counts[layer], source, torch_counts[call])).sum())
            ours = apply_views(run.spike_counts[layer], source["views"])
            theirs, tie_mask = torch_counts[call], ties[call]
            if theirs.dim() == 3:  # the token MLP spikes flattened B×C×N maps
                theirs, tie_mask = theirs.reshape(ours.shape), tie_mask.reshape(ours.shape)
            if ours.shape != theirs.shape:
                raise AssertionError(f"{layer} → {call}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}")
            diff = ours != theirs
            tie = tie_mask if not source["views"] else torch.zeros_like(diff)
            row = {"neurons": theirs.numel(), "mismatched": int(diff.sum()), "ties": int(tie_mask.sum()),
                   "outside_ties": int((diff & ~tie).sum())}
            result.per_call[call] = row
            result.calls += 1
            result.neurons += row["neurons"]
            result.mismatched += row["mismatched"]
            result.ties += row["ties"]
            result.mismatched_outside_ties += row["outside_ties"]
    missing = sorted(set(torch_counts) - covered)
    if missing:
        raise AssertionError(f"{len(missing)} PyTorch spike calls have no NIR layer: {', '.join(missing[:3])}")
    return result


def _matched(counts: torch.Tensor, source: dict, theirs: torch.Tensor) -> torch.Tensor:
    """Mismatch mask of one layer's counts (through its views) against one PyTorch call."""
    ours = apply_views(counts, source["views"])
    return ours != theirs.reshape(ours.shape)
