"""Loihi resource model of a network plan: neurons, synapses and cores per process, placement
on chips, boards.

Counted from exactly the processes of the Loihi 2 network (``network.build_plan``): every
neuron process on neuro-cores (LIF planes, graded relays) with the synapses that end in it,
stored on its cores. What a core stores for a ``Conv`` follows the target file's cited
``conv_weights``: ``shared`` (Loihi 2: a core keeps the kernel rows of the output channels it
holds, so a kernel is stored once per core its channels span) or ``dense`` (one synapse per
(source, destination) pair, the upper bound); a ``Sparse`` stores its non-zero weights either
way. Every process of ours on an embedded core or the host is listed with its work per image.
Placement is a documented heuristic: processes take whole cores in plan order; it is compared
with the lower bound of a perfect packing (total neurons and unique synapses over per-chip
capacity).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import LensNetDeployError, ResourceError
from ..target.chips import Target, board_capacity, load_boards
from .plan import NEURO_CORE, ConvSpec, NetworkPlan, NeuronSpec, SynapseSpec


@dataclass
class LayerResources:
    name: str
    kind: str  # "spike", "relay", or an off-core op
    neurons: int = 0
    synapses: int = 0  # one per (source, destination) pair: no weight sharing
    shared_weights: int = 0  # unique weights (convolutional sharing)
    stored: int = 0  # synaptic memory its cores hold under the build's weight model
    fan_in: int = 0
    cores: int = 0
    placement: str = "neuro-core"
    ops: int = 0  # work of an off-core op per image

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Resources:
    layers: list[LayerResources] = field(default_factory=list)
    weights: str = "dense"  # how a Conv is stored: "shared" (kernel per core) or "dense" (per pair)

    @property
    def neurons(self) -> int:
        return sum(x.neurons for x in self.layers)

    @property
    def synapses(self) -> int:
        return sum(x.synapses for x in self.layers)

    @property
    def shared_weights(self) -> int:
        return sum(x.shared_weights for x in self.layers)

    @property
    def stored(self) -> int:
        return sum(x.stored for x in self.layers)

    @property
    def cores(self) -> int:
        return sum(x.cores for x in self.layers)


def _spatial(shape) -> bool:
    return len(shape) == 3 and int(shape[1]) * int(shape[2]) > 1


def kernel_copies(row_weights: np.ndarray, per_row: float, neurons: int, cores: int) -> int:
    """Kernel weights that ``cores`` cores hold when a layer's ``neurons`` (rows of ``per_row``
    neurons each, channel-major as the plan lays them out) are split evenly over them: each core
    keeps the kernel rows (``row_weights``: non-zero weights per output row) of every row it
    touches, so a row spanning several cores is stored on each of them."""
    if neurons <= 0 or len(row_weights) == 0:
        return 0
    prefix = np.concatenate([[0], np.cumsum(row_weights, dtype=np.int64)])
    per_core = math.ceil(neurons / cores)
    starts = np.arange(cores, dtype=np.int64) * per_core
    starts = starts[starts < neurons]
    ends = np.minimum(starts + per_core, neurons)
    first = np.minimum((starts / per_row).astype(np.int64), len(row_weights) - 1)
    last = np.minimum(np.ceil(ends / per_row).astype(np.int64), len(row_weights))
    return int((prefix[last] - prefix[first]).sum())


def _stored_cores(row: LayerResources, kernels: list[np.ndarray], sparse: int, target: Target) -> tuple[int, int]:
    """(stored synapses, cores) of a neuron layer whose Convs keep their kernels per core: the
    fewest cores that hold its neurons and, evenly split, its kernel copies and sparse weights."""
    cores = max(math.ceil(row.neurons / target.neurons_per_core), 1)
    for _ in range(64):  # kernel copies grow with the cores: settle the fixed point
        stored = sparse + sum(kernel_copies(k, row.neurons / len(k), row.neurons, cores) for k in kernels)
        need = max(cores, math.ceil(stored / target.synapses_per_core))
        if need == cores or need >= row.neurons:
            return stored, need
        cores = need
    return stored, cores


def network_resources(plan: NetworkPlan, target: Target, share_weights: bool | None = None,
                      area: float = 1.0) -> Resources:
    """Per process: neurons, synapses and cores (neuro-cores), or work per image (elsewhere).
    ``share_weights``: store each Conv's kernel per core (True) or one synapse per pair (False);
    None follows the target's cited ``conv_weights``. ``area``: the counts of another input size,
    as the ratio of its area to the plan's (the processes stay; what spans the image grows with
    it): a fast estimate for board fitting."""
    shared = target.shares_conv_weights if share_weights is None else bool(share_weights)
    into: dict[str, list[str]] = defaultdict(list)
    source: dict[str, str] = {}
    for link in plan.links:
        if isinstance(plan.procs[link.src], SynapseSpec):
            into[link.dst].append(link.src)
        if isinstance(plan.procs[link.dst], SynapseSpec):
            source[link.dst] = link.src

    def grows(name: str) -> float:
        return area if _spatial(getattr(plan.procs[name], "shape", ())) else 1.0

    res = Resources(weights="shared" if shared else "dense")
    for p in plan.procs.values():
        if isinstance(p, NeuronSpec):
            row = LayerResources(p.name, p.kind, neurons=math.ceil(p.neurons * grows(p.name)))
            kernels: list[np.ndarray] = []
            sparse = 0
            for s in into[p.name]:
                syn = plan.procs[s]
                src = source.get(s)
                scale = max(grows(src) if src else 1.0, grows(p.name))
                row.synapses += math.ceil(syn.synops * scale)
                if isinstance(syn, ConvSpec):
                    w = np.asarray(syn.weight)
                    kernels.append(np.count_nonzero(w.reshape(w.shape[0], -1), axis=1))
                    row.shared_weights += int(kernels[-1].sum())
                else:
                    nnz = math.ceil(int(syn.weights.nnz) * scale)  # type: ignore[attr-defined]
                    sparse += nnz
                    row.shared_weights += nnz
                row.fan_in += 1
            if shared:
                row.stored, row.cores = _stored_cores(row, kernels, sparse, target)
            else:
                row.stored = row.synapses
                row.cores = max(math.ceil(row.neurons / target.neurons_per_core),
                                math.ceil(row.stored / target.synapses_per_core), 1)
            res.layers.append(row)
        elif p.placement != NEURO_CORE:
            res.layers.append(LayerResources(p.name, p.kind, placement=p.placement, ops=p.work))
    return res


@dataclass
class Placement:
    chips: int
    cores: int
    lower_bound_chips: int
    per_layer: list[tuple[str, int, int]]  # layer, first core, chip

    def to_dict(self) -> dict[str, Any]:
        return {"chips": self.chips, "cores": self.cores, "lower_bound_chips": self.lower_bound_chips,
                "layers": [{"layer": name, "first_core": core, "chip": chip} for name, core, chip in self.per_layer]}


def place(res: Resources, target: Target) -> Placement:
    """Pack neuron layers onto cores in graph order (a documented heuristic).

    A layer larger than one core takes whole new cores; its last, partly
    filled core stays open, and smaller layers go into the open core while its
    neurons and synaptic memory (what ``res`` stores under its weight model) last
    (else a new core opens). Compared with the lower bound of a perfect packing
    (total neurons, and synapses each stored once, over the per-chip capacity).
    """
    per_chip = target.neuro_cores_per_chip
    cap_n = target.neurons_per_core
    cap_s = target.synapses_per_core
    core, free_n, free_s = -1, 0.0, 0.0  # the open core and what it has left
    rows = []
    for layer in res.layers:
        if layer.placement != "neuro-core":
            continue
        need_s = layer.stored
        if layer.neurons <= free_n and need_s <= free_s:
            rows.append((layer.name, core, core // per_chip))
            free_n, free_s = free_n - layer.neurons, free_s - need_s
            continue
        first = core + 1
        cores = max(layer.cores, 1)
        core = first + cores - 1
        rows.append((layer.name, first, first // per_chip))
        free_n = cores * cap_n - layer.neurons
        free_s = cores * cap_s - need_s
    stored = res.shared_weights if res.weights == "shared" else res.synapses
    bound = max(math.ceil(res.neurons / target.neurons_per_chip), math.ceil(stored / target.synapses_per_chip), 1)
    used = core + 1
    return Placement(chips=max(1, math.ceil(used / per_chip)), cores=used, lower_bound_chips=bound, per_layer=rows)


def check_fits(res: Resources, placement: Placement, target: Target, board_name: str,
               resize=None, exact=None) -> None:
    """Raise ResourceError naming the first layer that overflows ``board_name``, the smallest
    board that holds the model and (with ``resize(size) -> Resources``) the largest input that fits."""
    boards = load_boards()
    if board_name not in boards:
        raise LensNetDeployError(f"unknown board {board_name!r} (known: {', '.join(boards)})")
    capacity = board_capacity(boards[board_name], target)
    if placement.cores <= capacity:
        return
    by_name = {x.name: x for x in res.layers}
    culprit, used = None, 0
    for name, first_core, _ in placement.per_layer:
        layer = by_name[name]
        used = first_core + layer.cores
        if used > capacity:
            culprit = layer
            break
    fits = [name for name, b in sorted(boards.items(), key=lambda kv: kv[1]["chips"])
            if board_capacity(b, target) >= placement.cores]
    message = (f"model needs {placement.cores:,} neuro-cores ({placement.chips} chips) but {board_name} has "
               f"{capacity:,}: layer {culprit.name} ({culprit.neurons:,} neurons, {culprit.synapses:,} synapses"
               + (f", {culprit.stored:,} stored with kernels shared per core" if res.weights == "shared" else "")
               + f", {culprit.cores} cores) passes the limit at core {used:,}")
    message += f"; smallest board that holds it: {fits[0]}" if fits else "; no listed board holds it"
    if resize is not None:
        largest = largest_input(resize, target, capacity, exact=exact)
        message += f"; largest input that fits {board_name}: {largest[0]}x{largest[1]}" if largest else \
            f"; no input size fits {board_name}"
    raise ResourceError(message)


def largest_input(resize, target: Target, capacity: int, start: int = 1024,
                  exact=None) -> tuple[int, int] | None:
    """Largest square input (multiple of 16) whose placement fits ``capacity`` cores: a binary
    search on the ``resize`` estimate, then settled with ``exact(size) -> Resources`` (a real
    network of that size) one step of 16 at a time."""
    def fits(side: int, fn) -> bool:
        return side >= 16 and place(fn((side, side)), target).cores <= capacity

    lo, hi = 0, start // 16  # sides 16·k: k = lo fits (0: none), k = hi + 1 does not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(16 * mid, resize):
            lo = mid
        else:
            hi = mid - 1
    side = 16 * lo
    if exact is not None:
        if side and not fits(side, exact):
            while side >= 16 and not fits(side, exact):
                side -= 16
        else:
            while side + 16 <= start and fits(side + 16, exact):
                side += 16
    return (side, side) if side >= 16 else None
