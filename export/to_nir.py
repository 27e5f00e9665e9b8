"""Lower a folded IR graph to a NIR graph (standard primitives + the lensnet convention)."""

from __future__ import annotations

import json
from collections.abc import Callable

import nir
import numpy as np

from ..errors import GraphError
from . import convention as C
from . import ops as O
from .ir import Graph, Node

THRESHOLD_DTYPE = np.float32  # k − 0.5 is exact; half the memory of float64


def _plane_threshold(value: float, shape: tuple[int, ...]) -> np.ndarray:
    # A read-only broadcast view: no memory per neuron until the file is written.
    return np.broadcast_to(THRESHOLD_DTYPE(value), shape)


def grouped_to_dense(weight: np.ndarray, groups: int) -> np.ndarray:
    """The block-diagonal dense weight (O, I, kh, kw) of a grouped convolution (O, I/groups, kh, kw)."""
    out, per_in = weight.shape[:2]
    per_out = out // groups
    dense = np.zeros((out, per_in * groups, *weight.shape[2:]), dtype=weight.dtype)
    for g in range(groups):
        dense[g * per_out:(g + 1) * per_out, g * per_in:(g + 1) * per_in] = weight[g * per_out:(g + 1) * per_out]
    return dense


def dense_to_grouped(dense: np.ndarray, groups: int) -> np.ndarray:
    """Inverse of :func:`grouped_to_dense`; raises if a weight outside the blocks is non-zero."""
    out, total_in = dense.shape[:2]
    per_out, per_in = out // groups, total_in // groups
    blocks = np.concatenate([dense[g * per_out:(g + 1) * per_out, g * per_in:(g + 1) * per_in]
                             for g in range(groups)])
    if np.count_nonzero(dense) != np.count_nonzero(blocks):
        raise GraphError(f"weight is not block-diagonal with {groups} groups")
    return blocks


class Lowering:
    """The NIR nodes and edges of one graph under construction; a lowering function per op
    type adds each IR node's NIR form (``FLOAT_LOWERING``; integer graphs: ``hardware.int_nir``)."""

    def __init__(self, graph: Graph) -> None:
        self.ir = graph
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.outputs_of: dict[str, list[str]] = {}  # IR node → NIR nodes whose summed output is its value
        self.spike_layers: dict[str, dict] = {}

    def connect(self, ir_src: str, dst: str) -> None:
        for src in self.outputs_of[ir_src]:
            self.edges.append((src, dst))

    def put(self, name: str, node: nir.NIRNode) -> None:
        if name in self.nodes:
            raise GraphError(f"duplicate NIR node name {name}")
        self.nodes[name] = node

    def single(self, n: Node, node: nir.NIRNode) -> None:
        """``node`` computes ``n`` from its one operand."""
        self.put(n.name, node)
        for src in n.inputs:
            self.connect(src, n.name)
        self.outputs_of[n.name] = [n.name]

    def ext(self, n: Node, op: str, arrays: dict | None = None, **attrs) -> None:
        ports = [f"{n.name}.in{i}" for i in range(len(n.inputs))]
        node = C.ext_node(n.shape, op, ports, **attrs)
        node.metadata.update(arrays or {})
        self.put(n.name, node)
        for i, (port, src) in enumerate(zip(ports, n.inputs)):
            self.put(port, C.port_node(self.ir.nodes[src].shape, n.name, i))
            self.connect(src, port)
        self.outputs_of[n.name] = [n.name]

    def spike_planes(self, n: Node, D: int, thresholds: list[np.ndarray], sources: list) -> None:
        """A multi-spike layer as one Threshold plane per count level, all reading its input."""
        planes = []
        for k, threshold in enumerate(thresholds, start=1):
            plane = nir.Threshold(threshold=threshold)
            plane.metadata = {C.SPIKE_KEY: json.dumps({"layer": n.name, "plane": k, "D": D})}
            self.put(f"{n.name}.s{k}", plane)
            self.connect(n.inputs[0], f"{n.name}.s{k}")
            planes.append(f"{n.name}.s{k}")
        self.outputs_of[n.name] = planes
        self.spike_layers[n.name] = {"D": D, "shape": list(n.shape), "sources": sources}

    def pooled(self, n: Node, role: str) -> None:
        """A global sum pool of the operand (average pools keep their 1/(H·W) in NIR's AvgPool2d)."""
        _, h, w = self.ir.nodes[n.inputs[0]].shape
        kwargs = dict(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.array([0, 0]))
        pool = nir.AvgPool2d(**kwargs) if role == "average" else nir.SumPool2d(**kwargs)
        if role != "average":
            pool.metadata = {C.ROLE_KEY: role}
        self.single(n, pool)

    def spike_maxpool(self, n: Node) -> None:
        """max over H×W of a spike count = Σ_k [Σ_HW plane_k > 0.5] (planes are nested): standard NIR."""
        src = self.ir.nodes[n.inputs[0]]
        _, h, w = src.shape
        outs = []
        for k, plane in enumerate(self.outputs_of[src.name], start=1):
            pool = nir.SumPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.array([0, 0]))
            pool.metadata = {C.ROLE_KEY: "pooled_sum", C.MAXPOOL_KEY: n.name}
            self.put(f"{n.name}.s{k}.sum", pool)
            self.edges.append((plane, f"{n.name}.s{k}.sum"))
            any_spike = nir.Threshold(threshold=_plane_threshold(0.5, n.shape))
            any_spike.metadata = {C.ROLE_KEY: "pooled_plane", C.MAXPOOL_KEY: n.name}
            self.put(f"{n.name}.s{k}", any_spike)
            self.edges.append((f"{n.name}.s{k}.sum", f"{n.name}.s{k}"))
            outs.append(f"{n.name}.s{k}")
        self.outputs_of[n.name] = outs

    def conv2d(self, n: Node, weight: np.ndarray, bias: np.ndarray, groups: int, stride, padding,
               metadata: dict | None = None) -> None:
        """A (grouped) convolution as a standard dense Conv2d, block-diagonal when grouped."""
        _, h, w = self.ir.nodes[n.inputs[0]].shape
        conv = nir.Conv2d(input_shape=(h, w), weight=grouped_to_dense(weight, groups) if groups > 1 else weight,
                          stride=tuple(stride), padding=tuple(padding), dilation=(1, 1), groups=1, bias=bias)
        conv.metadata = dict(metadata or {})
        if groups > 1:
            conv.metadata[C.GROUPS_KEY] = groups
        self.single(n, conv)

    def lower(self, n: Node, lowering: dict) -> None:
        fn = lowering.get(type(n.op))
        if fn is None:
            raise GraphError(f"cannot lower {n.kind} node {n.name} to NIR (fold it first)")
        fn(self, n)


def _input(low: Lowering, n: Node) -> None:
    low.put(n.name, nir.Input(input_type={"input": np.array(n.shape)}))
    low.outputs_of[n.name] = [n.name]


def _output(low: Lowering, n: Node) -> None:
    low.put(n.name, nir.Output(output_type={"output": np.array(n.shape)}))
    low.connect(n.inputs[0], n.name)


def _conv(low: Lowering, n: Node) -> None:
    op: O.Conv = n.op  # type: ignore[assignment]
    bias = op.bias if op.bias is not None else np.zeros(op.weight.shape[0])
    low.conv2d(n, np.asarray(op.weight, np.float64), np.asarray(bias, np.float64), op.groups, op.stride, op.padding)


def _join(low: Lowering, n: Node) -> None:
    low.single(n, C.join_node(n.shape))


def _maxpool(low: Lowering, n: Node) -> None:
    if isinstance(low.ir.nodes[n.inputs[0]].op, O.Spike) or n.inputs[0] in low.spike_layers:
        low.spike_maxpool(n)
    else:
        low.ext(n, "global_maxpool")


def _spike(low: Lowering, n: Node) -> None:
    op: O.Spike = n.op  # type: ignore[assignment]
    low.spike_planes(n, op.D, [_plane_threshold(k - 0.5, n.shape) for k in range(1, op.D + 1)], op.sources)


FLOAT_LOWERING: dict[type[O.Op], Callable[[Lowering, Node], None]] = {
    O.Input: _input,
    O.Output: _output,
    O.Conv: _conv,
    O.Spike: _spike,
    O.Add: _join,
    O.AvgPool: lambda low, n: low.pooled(n, "average"),
    O.MaxPool: _maxpool,
    O.Upsample: lambda low, n: low.ext(n, "upsample_nearest", factor=n.op.factor),
    O.Attention: lambda low, n: low.ext(n, "attention", heads=n.op.heads, scale=float(n.op.scale)),
    O.Sigmoid: lambda low, n: low.ext(n, "sigmoid"),
    O.Gate: lambda low, n: low.ext(n, "gate", scale=float(n.op.scale)),
    O.Bilinear: lambda low, n: low.ext(n, "bilinear", factor=n.op.factor),
}


def to_nir(graph: Graph, lowering: dict | None = None, metadata: dict[str, str] | None = None) -> nir.NIRGraph:
    """The NIR graph of a folded IR graph, with the convention's graph metadata
    (``lowering``/``metadata``: what an integer dialect adds; default float)."""
    low = Lowering(graph)
    table = FLOAT_LOWERING if lowering is None else lowering
    for node in graph:
        low.lower(node, table)
    model = {
        "outputs": [n.name for n in graph.outputs()],
        "input_size": graph.meta.get("input_size"),
        "D": graph.meta.get("D"),
        "config": graph.meta.get("config"),
        "spike_layers": low.spike_layers,
    }
    meta = {"lensnet.convention": C.CONVENTION, "lensnet.version": C.VERSION, "lensnet.model": json.dumps(model)}
    meta.update(metadata or {})
    return nir.NIRGraph(nodes=low.nodes, edges=low.edges, metadata=meta, type_check=True)
