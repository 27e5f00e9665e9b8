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
        self.integer = "quantized" in graph.meta

    def connect(self, ir_src: str, dst: str) -> None:
        for src in self.outputs_of[ir_src]:
            self.edges.append((src, dst))

    def put(self, name: str, node: nir.NIRNode) -> None:
        if name in self.nodes:
            raise ValueError(f"duplicate NIR node name {name}")
        self.nodes[name] = node

    def ext(self, n: Node, op: str, arrays: dict | None = None, **attrs) -> None:
        ports = [f"{n.name}.in{i}" for i in range(len(n.inputs))]
        node = C.ext_node(n.shape, op, ports, **attrs)
        node.metadata.update(arrays or {})
        self.put(n.name, node)
        for i, (port, src) in enumerate(zip(ports, n.inputs)):
            self.put(port, C.port_node(self.ir.nodes[src].shape, n.name, i))
            self.connect(src, port)
        self.outputs_of[n.name] = [n.name]

    def lower(self, n: Node) -> None:
        if self.integer and n.op in INTEGER_LOWERING:
            return INTEGER_LOWERING[n.op](self, n)
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
            self.spike_planes(n, [_plane_threshold(k - 0.5, n.shape) for k in range(1, int(a["D"]) + 1)])
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

    def spike_planes(self, n: Node, thresholds: list[np.ndarray]) -> None:
        """A multi-spike layer as one Threshold plane per count level, all reading its input."""
        D = len(thresholds)
        planes = []
        for k, threshold in enumerate(thresholds, start=1):
            plane = nir.Threshold(threshold=threshold)
            plane.metadata = {C.SPIKE_KEY: json.dumps({"layer": n.name, "plane": k, "D": D})}
            self.put(f"{n.name}.s{k}", plane)
            self.connect(n.inputs[0], f"{n.name}.s{k}")
            planes.append(f"{n.name}.s{k}")
        self.outputs_of[n.name] = planes
        self.spike_layers[n.name] = {"D": D, "shape": list(n.shape), "sources": n.attrs.get("sources", [])}

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


def _int_conv(low: _Lowering, n: Node) -> None:
    """Integer weights ``w_int·2^exp`` (standard NIR semantics stay y = W x + b), int64."""
    a = n.attrs
    (src,) = n.inputs
    _, h, w = low.ir.nodes[src].shape
    groups = int(a["groups"])
    weight = np.asarray(a["w_int"], np.int64) << int(a["exp"])
    conv = nir.Conv2d(input_shape=(h, w), weight=grouped_to_dense(weight, groups) if groups > 1 else weight,
                      stride=tuple(a["stride"]), padding=tuple(a["padding"]), dilation=(1, 1), groups=1,
                      bias=np.asarray(a["b_int"], np.int64))
    conv.metadata = {C.WEIGHT_EXP_KEY: int(a["exp"]), C.SHIFT_KEY: np.asarray(a["shift"], np.int64)}
    if groups > 1:
        conv.metadata[C.GROUPS_KEY] = groups
    low.put(n.name, conv)
    low.connect(src, n.name)
    low.outputs_of[n.name] = [n.name]


def _int_spike(low: _Lowering, n: Node) -> None:
    theta = np.asarray(n.attrs["theta"], np.int64)
    low.spike_planes(n, [np.broadcast_to(theta[:, k].reshape(-1, 1, 1), n.shape) for k in range(theta.shape[1])])


def _int_avgpool(low: _Lowering, n: Node) -> None:
    """Integer models pool by summing (the following thresholds carry the 1/(H·W))."""
    (src,) = n.inputs
    _, h, w = low.ir.nodes[src].shape
    pool = nir.SumPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.array([0, 0]))
    pool.metadata = {C.ROLE_KEY: "average_as_sum"}
    low.put(n.name, pool)
    low.connect(src, n.name)
    low.outputs_of[n.name] = [n.name]


def _int_attention(low: _Lowering, n: Node) -> None:
    low.ext(n, "attention", heads=int(n.attrs["heads"]), scale=1.0, unit=float(n.attrs["scale"]))


def _int_sigmoid(low: _Lowering, n: Node) -> None:
    a = n.attrs
    low.ext(n, "sigmoid_table", arrays={C.LUT_KEY: np.asarray(a["lut"], np.int64)},
            z_shift=np.asarray(a["z_shift"]).tolist(), z_lo=np.asarray(a["z_lo"]).tolist(),
            z_hi=np.asarray(a["z_hi"]).tolist())


def _int_gate(low: _Lowering, n: Node) -> None:
    low.ext(n, "gate_fixed", mult=np.asarray(n.attrs["mult"]).tolist(), r=int(n.attrs["r"]))


def _int_bilinear(low: _Lowering, n: Node) -> None:
    low.ext(n, "bilinear_int", factor=int(n.attrs["factor"]))


def _int_output(low: _Lowering, n: Node) -> None:
    out = nir.Output(output_type={"output": np.array(n.shape)})
    out.metadata = {C.REAL_SCALE_KEY: np.asarray(n.attrs["real_scale"], np.float64)}
    low.put(n.name, out)
    low.connect(n.inputs[0], n.name)


INTEGER_LOWERING = {"conv": _int_conv, "spike": _int_spike, "avgpool": _int_avgpool, "attention": _int_attention,
                    "sigmoid": _int_sigmoid, "gate": _int_gate, "bilinear": _int_bilinear, "output": _int_output}


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
    if low.integer:
        meta[C.INTEGER_KEY] = json.dumps(graph.meta["quantized"])
    return nir.NIRGraph(nodes=low.nodes, edges=low.edges, metadata=meta, type_check=True)
