"""Lower a folded IR graph to a NIR graph (standard primitives + the lensnet convention)."""

from __future__ import annotations

import json

import nir
import numpy as np

from . import convention as C
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
        raise ValueError(f"weight is not block-diagonal with {groups} groups")
    return blocks


class _Lowering:
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
            raise ValueError(f"duplicate NIR node name {name}")
        self.nodes[name] = node

    def ext(self, n: Node, op: str, **attrs) -> None:
        ports = [f"{n.name}.in{i}" for i in range(len(n.inputs))]
        self.put(n.name, C.ext_node(n.shape, op, ports, **attrs))
        for i, (port, src) in enumerate(zip(ports, n.inputs)):
            self.put(port, C.port_node(self.ir.nodes[src].shape, n.name, i))
            self.connect(src, port)
        self.outputs_of[n.name] = [n.name]

    def lower(self, n: Node) -> None:
        a, op = n.attrs, n.op
        if op == "input":
            self.put(n.name, nir.Input(input_type={"input": np.array(n.shape)}))
            self.outputs_of[n.name] = [n.name]
        elif op == "conv":
            (src,) = n.inputs
            _, h, w = self.ir.nodes[src].shape
            bias = a["bias"] if a["bias"] is not None else np.zeros(a["weight"].shape[0])
            groups = int(a["groups"])
            weight = np.asarray(a["weight"], np.float64)
            conv = nir.Conv2d(input_shape=(h, w), weight=grouped_to_dense(weight, groups) if groups > 1 else weight,
                              stride=tuple(a["stride"]), padding=tuple(a["padding"]), dilation=(1, 1), groups=1,
                              bias=np.asarray(bias, np.float64))
            if groups > 1:
                conv.metadata = {C.GROUPS_KEY: groups}
            self.put(n.name, conv)
            self.connect(src, n.name)
            self.outputs_of[n.name] = [n.name]
        elif op == "spike":
            D = int(a["D"])
            planes = []
            for k in range(1, D + 1):
                plane = nir.Threshold(threshold=_plane_threshold(k - 0.5, n.shape))
                plane.metadata = {C.SPIKE_KEY: json.dumps({"layer": n.name, "plane": k, "D": D})}
                self.put(f"{n.name}.s{k}", plane)
                self.connect(n.inputs[0], f"{n.name}.s{k}")
                planes.append(f"{n.name}.s{k}")
            self.outputs_of[n.name] = planes
            self.spike_layers[n.name] = {"D": D, "shape": list(n.shape), "sources": a.get("sources", [])}
        elif op == "add":
            self.put(n.name, C.join_node(n.shape))
            for src in n.inputs:
                self.connect(src, n.name)
            self.outputs_of[n.name] = [n.name]
        elif op == "avgpool":
            (src,) = n.inputs
            _, h, w = self.ir.nodes[src].shape
            self.put(n.name, nir.AvgPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]),
                                           padding=np.array([0, 0])))
            self.connect(src, n.name)
            self.outputs_of[n.name] = [n.name]
        elif op == "maxpool" and self.ir.nodes[n.inputs[0]].op == "spike":
            self.lower_spike_maxpool(n)
        elif op == "maxpool":
            self.ext(n, "global_maxpool")
        elif op == "upsample":
            self.ext(n, "upsample_nearest", factor=int(a["factor"]))
        elif op == "attention":
            self.ext(n, "attention", heads=int(a["heads"]), scale=float(a["scale"]))
        elif op == "sigmoid":
            self.ext(n, "sigmoid")
        elif op == "gate":
            self.ext(n, "gate", scale=float(a["scale"]))
        elif op == "bilinear":
            self.ext(n, "bilinear", factor=int(a["factor"]))
        elif op == "output":
            self.put(n.name, nir.Output(output_type={"output": np.array(n.shape)}))
            self.connect(n.inputs[0], n.name)
        else:
            raise ValueError(f"cannot lower {op} node {n.name} to NIR (fold it first)")

    def lower_spike_maxpool(self, n: Node) -> None:
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


def to_nir(graph: Graph) -> nir.NIRGraph:
    """The NIR graph of a folded IR graph, with the convention's graph metadata."""
    low = _Lowering(graph)
    for node in graph:
        low.lower(node)
    model = {
        "outputs": [n.name for n in graph.outputs()],
        "input_size": graph.meta.get("input_size"),
        "D": graph.meta.get("D"),
        "config": graph.meta.get("config"),
        "spike_layers": low.spike_layers,
    }
    meta = {"lensnet.convention": C.CONVENTION, "lensnet.version": C.VERSION, "lensnet.model": json.dumps(model)}
    return nir.NIRGraph(nodes=low.nodes, edges=low.edges, metadata=meta, type_check=True)
