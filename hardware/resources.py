"""Loihi resource model: neurons, synapses and cores per layer, placement on chips, boards.

Neuro-cores hold the multi-spike neuron layers and the residual joins (relay
neurons that forward their membrane as a graded spike); every convolution's
synapses live on the cores of the layer it feeds. What a neuro-core cannot
do runs on the chip's embedded x86 cores (global pooling, the attention
product, the sigmoid table, the gate) or the host (the bilinear head resize,
reading the logits). Placement is a documented heuristic: layers take whole
cores in graph order; it is compared with the lower bound of a perfect
packing (total neurons and synapses over per-chip capacity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LensNetDeployError, ResourceError
from ..export import ops as O
from ..export.ir import Graph, Node
from . import ops as I
from .energy import attention_ops
from .targets import Target, board_capacity, load_boards

# what a neuro-core cannot compute, and where it runs instead
OFF_CORE: dict[type[O.Op], str] = {I.SumPool: "embedded", O.MaxPool: "embedded", I.IntAttention: "embedded",
                                   I.SigmoidTable: "embedded", I.IntGate: "embedded",
                                   O.Upsample: "neuro-core fan-out", I.IntBilinear: "host"}


@dataclass
class LayerResources:
    name: str
    kind: str  # "spike", "relay", or an off-core op
    neurons: int = 0
    synapses: int = 0  # one per (source, destination) pair: no weight sharing
    shared_weights: int = 0  # unique weights (convolutional sharing)
    fan_in: int = 0
    cores: int = 0
    placement: str = "neuro-core"
    ops: int = 0  # work of an off-core op per image

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Resources:
    layers: list[LayerResources] = field(default_factory=list)

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
    def cores(self) -> int:
        return sum(x.cores for x in self.layers)


def _conv_synapses(n: Node) -> tuple[int, int, int]:
    """(synapses without sharing, unique weights, fan-in) of a convolution."""
    w = n.op.w_int  # type: ignore[attr-defined]
    fan_in = int(np.prod(w.shape[1:]))
    out = int(np.prod(n.shape))
    return out * fan_in, int(w.size), fan_in


def layer_resources(graph: Graph, target: Target, share_weights: bool = False) -> Resources:
    """Per-layer neurons, synapses and cores of ``graph`` on ``target``."""
    per_core_syn = target.synapses_per_core
    res = Resources()
    neuron_layers = (I.IntSpike, O.Add)
    for n in graph:
        conv = isinstance(n.op, I.IntConv)
        if isinstance(n.op, neuron_layers) or (conv and all(not isinstance(c.op, neuron_layers)
                                                            for c in graph.consumers(n.name))):
            kind = "spike" if isinstance(n.op, I.IntSpike) else "relay"
            layer = LayerResources(n.name, kind, neurons=int(np.prod(n.shape)))
            sources = [n] if conv else [graph.nodes[i] for i in n.inputs]
            for src in sources:
                if isinstance(src.op, I.IntConv):
                    syn, shared, fan_in = _conv_synapses(src)
                else:  # 1:1 from a relay, a spike layer or an embedded core
                    syn, shared, fan_in = layer.neurons, 1, 1
                layer.synapses += syn
                layer.shared_weights += shared
                layer.fan_in += fan_in
            stored = layer.shared_weights if share_weights else layer.synapses
            layer.cores = max(math.ceil(layer.neurons / target.neurons_per_core),
                              math.ceil(stored / per_core_syn), 1)
            res.layers.append(layer)
        elif type(n.op) in OFF_CORE:
            numel = int(np.prod(graph.nodes[n.inputs[0]].shape))
            res.layers.append(LayerResources(n.name, n.kind, placement=OFF_CORE[type(n.op)],
                                             ops=_op_work(graph, n, numel)))
    return res


def _op_work(graph: Graph, n: Node, numel: int) -> int:
    if isinstance(n.op, I.IntAttention):
        return attention_ops(graph, n.name)
    if isinstance(n.op, I.IntBilinear):
        return 4 * int(np.prod(n.shape))
    return numel


@dataclass
class Placement:
    chips: int
    cores: int
    lower_bound_chips: int
    per_layer: list[tuple[str, int, int]]  # layer, first core, chip

    def to_dict(self) -> dict[str, Any]:
        return {"chips": self.chips, "cores": self.cores, "lower_bound_chips": self.lower_bound_chips,
                "layers": [{"layer": name, "first_core": core, "chip": chip} for name, core, chip in self.per_layer]}


def place(res: Resources, target: Target, share_weights: bool = False) -> Placement:
    """Pack neuron layers onto cores in graph order (a documented heuristic).

    A layer larger than one core takes whole new cores; its last, partly
    filled core stays open, and smaller layers go into the open core while its
    neurons and synaptic memory last (else a new core opens). Compared with the
    lower bound of a perfect packing (total neurons and synapses over the
    per-chip capacity).
    """
    per_chip = target.neuro_cores_per_chip
    cap_n = target.neurons_per_core
    cap_s = target.synapses_per_core
    core, free_n, free_s = -1, 0.0, 0.0  # the open core and what it has left
    rows = []
    for layer in res.layers:
        if layer.placement != "neuro-core":
            continue
        need_s = layer.shared_weights if share_weights else layer.synapses
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
    stored = res.shared_weights if share_weights else res.synapses
    bound = max(math.ceil(res.neurons / target.neurons_per_chip), math.ceil(stored / target.synapses_per_chip), 1)
    used = core + 1
    return Placement(chips=max(1, math.ceil(used / per_chip)), cores=used, lower_bound_chips=bound, per_layer=rows)


def check_fits(res: Resources, placement: Placement, target: Target, board_name: str,
               resize=None) -> None:
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
               f"{capacity:,}: layer {culprit.name} ({culprit.neurons:,} neurons, {culprit.synapses:,} synapses, "
               f"{culprit.cores} cores) passes the limit at core {used:,}")
    message += f"; smallest board that holds it: {fits[0]}" if fits else "; no listed board holds it"
    if resize is not None:
        largest = largest_input(resize, target, capacity)
        message += f"; largest input that fits {board_name}: {largest[0]}x{largest[1]}" if largest else \
            f"; no input size fits {board_name}"
    raise ResourceError(message)


def largest_input(resize, target: Target, capacity: int, start: int = 1024) -> tuple[int, int] | None:
    """Largest square input (multiple of 16) whose placement fits ``capacity`` cores."""
    for side in range(start, 15, -16):
        r = resize((side, side))
        if place(r, target).cores <= capacity:
            return side, side
    return None
