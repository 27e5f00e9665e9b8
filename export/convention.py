"""The ``lensnet`` NIR extension convention, version 1: what NIR 1.0 cannot say, in metadata.

NIR 1.0 has no node for a product of two signals, a sigmoid, upsampling or
bilinear resizing, and it sums every edge into a node after checking equal
shapes. This convention keeps every file loadable by plain ``nir.read``:

* **Extension node.** Its value enters the graph through a ``nir.Input``
  whose metadata key ``lensnet.ext`` holds a JSON object ``{"op", "version",
  "operands", ...attributes}``; outgoing edges are ordinary NIR edges.
* **Port.** Each operand leaves the graph through a ``nir.Output`` whose
  metadata key ``lensnet.port`` holds ``{"of": extension node, "index": i}``;
  its incoming edges are summed as in NIR. ``operands`` lists the ports in
  order. So a plain NIR reader sees a graph whose extra outputs must be
  turned, by the operation named in the metadata, into its extra inputs;
  every edge type-checks and ``nir.read`` adds nothing.
* **Join.** A ``nir.Flatten`` with ``start_dim = end_dim = 0`` (an identity)
  and ``lensnet.role = "join"``: it sums its incoming edges (a residual
  join). This is standard NIR semantics; the key is informational.
* **Spike planes.** A multi-spike neuron layer ``round(clamp(u, 0, D))`` is
  D standard ``nir.Threshold`` nodes at ``k − 0.5`` (k = 1..D) reading the
  same input; their outputs, summed on the next node's input, are the count.
  Metadata ``lensnet.spike`` = ``{"layer", "plane", "D"}`` names them.
  Thresholds are strict, so an exact tie at k + 0.5 rounds down.
* **Graph metadata.** ``lensnet.convention = "lensnet-nir-ext"``,
  ``lensnet.version = 1``, and ``lensnet.model`` (JSON: the model's input and
  outputs in order, input size, D, the spike layers with the PyTorch calls
  they reproduce).
* **Grouped convolutions.** NIR 1.0.8 derives a ``Conv2d`` input type from
  ``weight.shape[1]`` and ignores ``groups``, so a depthwise convolution
  fails type inference in ``nir.read`` (and ``nir.read`` requires
  ``input_shape``). We store it as the equivalent dense ``Conv2d``
  (``groups = 1``) with a block-diagonal weight, exact and standard, and
  ``lensnet.groups = g`` in its metadata so that readers who know the key
  can run (and count synapses of) the grouped form.

Extension ops (version 1), operands and attributes:

=================  ===========================  ==========================================
op                 operands                     semantics
=================  ===========================  ==========================================
attention          q, k (C×H×W), v (Cv×H×W)     ``scale · q (kᵀ v)`` per head, tokens H·W;
                                                attrs ``heads``, ``scale``
sigmoid            x                            ``1 / (1 + e^−x)``
gate               g (C×1×1), x (C×H×W)         ``g · x · scale``; attr ``scale``
upsample_nearest   x (C×H×W)                    nearest, ×``factor`` in H and W
bilinear           x (C×H×W)                    bilinear ×``factor``, align_corners False
global_maxpool     x (C×H×W)                    max over H, W → C×1×1
sigmoid_table      z (C×1×1), integer           12-bit table ``lensnet.lut`` (C × span) at
                                                ``clamp(z >> z_shift, z_lo, z_hi) − z_lo``
gate_fixed         g, x (integers)              ``(g · x · mult + 2^(r−1)) >> r``
bilinear_int       x (integer)                  exact ``(2f)²`` × bilinear (integer taps)
=================  ===========================  ==========================================

Integer graphs (``lensnet.integer`` in the graph metadata) follow
docs/integer_semantics.md: the model input is centred pixels, Conv2d weights
are ``mantissa << lensnet.weight_exp`` (int64, so y = W x + b stays the NIR
meaning), thresholds are integers, average pooling is a ``SumPool2d``, and
the attention extension has ``scale = 1`` (its real unit is ``unit``).
"""

from __future__ import annotations

import json
from typing import Any

import nir
import numpy as np

from ..errors import LensNetDeployError

CONVENTION = "lensnet-nir-ext"
VERSION = 1
EXT_KEY, PORT_KEY, ROLE_KEY, SPIKE_KEY = "lensnet.ext", "lensnet.port", "lensnet.role", "lensnet.spike"
GROUPS_KEY = "lensnet.groups"
MAXPOOL_KEY = "lensnet.maxpool"  # on the SumPool2d/Threshold pairs of a global max pool of spikes
# integer graphs (docs/integer_semantics.md)
INTEGER_KEY = "lensnet.integer"  # graph metadata: semantics version, input encoding, widths
WEIGHT_EXP_KEY, SHIFT_KEY = "lensnet.weight_exp", "lensnet.shift"  # Conv2d: weight = mantissa << exp
LUT_KEY, REAL_SCALE_KEY = "lensnet.lut", "lensnet.real_scale"
GRAPH_KEYS = ("lensnet.convention", "lensnet.version", "lensnet.model")
EXT_OPERANDS = {"attention": 3, "sigmoid": 1, "gate": 2, "upsample_nearest": 1, "bilinear": 1, "global_maxpool": 1,
                "sigmoid_table": 1, "gate_fixed": 2, "bilinear_int": 1}


class NIRConventionError(LensNetDeployError):
    """A NIR graph breaks the lensnet extension convention (or uses an unknown extension)."""


def ext_node(shape: tuple[int, ...], op: str, operands: list[str], **attrs: Any) -> nir.Input:
    node = nir.Input(input_type={"input": np.array(shape)})
    node.metadata = {EXT_KEY: json.dumps({"op": op, "version": VERSION, "operands": operands, **attrs})}
    return node


def port_node(shape: tuple[int, ...], of: str, index: int) -> nir.Output:
    node = nir.Output(output_type={"output": np.array(shape)})
    node.metadata = {PORT_KEY: json.dumps({"of": of, "index": index})}
    return node


def join_node(shape: tuple[int, ...]) -> nir.Flatten:
    node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=0)
    node.metadata = {ROLE_KEY: "join"}
    return node


def _json(node: nir.NIRNode, key: str) -> dict[str, Any] | None:
    meta = getattr(node, "metadata", None) or {}
    if key not in meta:
        return None
    raw = meta[key]
    if isinstance(raw, bytes | np.bytes_):
        raw = raw.decode()
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise NIRConventionError(f"metadata {key} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise NIRConventionError(f"metadata {key} must be a JSON object")
    return value


def ext_info(node: nir.NIRNode) -> dict[str, Any] | None:
    return _json(node, EXT_KEY)


def port_info(node: nir.NIRNode) -> dict[str, Any] | None:
    return _json(node, PORT_KEY)


def spike_info(node: nir.NIRNode) -> dict[str, Any] | None:
    return _json(node, SPIKE_KEY)


def model_info(graph: nir.NIRGraph) -> dict[str, Any] | None:
    meta = graph.metadata or {}
    raw = meta.get("lensnet.model")
    if raw is None:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes | np.bytes_) else str(raw))


def uses_convention(graph: nir.NIRGraph) -> bool:
    meta = graph.metadata or {}
    return str(meta.get("lensnet.convention", "")) == CONVENTION or any(
        ext_info(n) is not None or port_info(n) is not None for n in graph.nodes.values())


def _shape(node: nir.NIRNode, key: str = "output") -> tuple[int, ...]:
    types = node.output_type if key == "output" else node.input_type
    return tuple(int(s) for s in next(iter(types.values())))


def validate(graph: nir.NIRGraph) -> None:
    """Raise :class:`NIRConventionError` naming the first node that breaks the convention."""
    meta = graph.metadata or {}
    if "lensnet.version" in meta and int(np.asarray(meta["lensnet.version"])) > VERSION:
        raise NIRConventionError(f"graph uses lensnet convention version {meta['lensnet.version']}; "
                                 f"this tool reads up to {VERSION}")
    for name, node in graph.nodes.items():
        ext, port = ext_info(node), port_info(node)
        if ext is not None and not isinstance(node, nir.Input):
            raise NIRConventionError(f"node {name}: an extension node must be a nir.Input, "
                                     f"not a {type(node).__name__}")
        if port is not None:
            if not isinstance(node, nir.Output):
                raise NIRConventionError(f"node {name}: a port must be a nir.Output, not a {type(node).__name__}")
            of = port.get("of")
            if of not in graph.nodes or ext_info(graph.nodes[of]) is None:
                raise NIRConventionError(f"port {name} belongs to {of!r}, which is not an extension node")
        if ext is None:
            continue
        op = ext.get("op")
        if op not in EXT_OPERANDS:
            raise NIRConventionError(f"node {name}: unknown extension op {op!r} "
                                     f"(known: {', '.join(sorted(EXT_OPERANDS))})")
        if int(ext.get("version", 0)) > VERSION:
            raise NIRConventionError(f"node {name}: extension {op} version {ext.get('version')} is newer than "
                                     f"{VERSION}")
        operands = ext.get("operands", [])
        if len(operands) != EXT_OPERANDS[op]:
            raise NIRConventionError(f"node {name}: {op} takes {EXT_OPERANDS[op]} operands, lists {len(operands)}")
        shapes = []
        for i, p in enumerate(operands):
            info = port_info(graph.nodes[p]) if p in graph.nodes else None
            if info is None or info.get("of") != name or int(info.get("index", -1)) != i:
                raise NIRConventionError(f"node {name}: operand {i} ({p!r}) is not its port number {i}")
            shapes.append(_shape(graph.nodes[p]))
        _check_shapes(name, op, ext, shapes, _shape(node))


def _check_shapes(name: str, op: str, ext: dict[str, Any], shapes: list[tuple[int, ...]],
                  out: tuple[int, ...]) -> None:
    def fail(why: str) -> None:
        raise NIRConventionError(f"node {name}: {op} {why} (operands {shapes}, output {out})")

    if op == "attention":
        (q, k, v), heads = shapes, int(ext.get("heads", 0))
        if q != k or q[1:] != v[1:] or heads <= 0 or q[0] % heads or v[0] % heads or out != v:
            fail("shapes do not fit q, k (C×H×W), v (Cv×H×W) with the head count")
    elif op in ("gate", "gate_fixed"):
        g, x = shapes
        if g != (x[0], 1, 1) or out != x:
            fail("needs a C×1×1 gate and a C×H×W input")
    elif op in ("upsample_nearest", "bilinear", "bilinear_int"):
        f = int(ext.get("factor", 0))
        (x,) = shapes
        if f <= 0 or out != (x[0], x[1] * f, x[2] * f):
            fail(f"output is not the input scaled by factor {f}")
    elif op == "global_maxpool":
        (x,) = shapes
        if out != (x[0], 1, 1):
            fail("output must be C×1×1")
    elif op in ("sigmoid", "sigmoid_table") and out != shapes[0]:
        fail("output shape differs from input")
