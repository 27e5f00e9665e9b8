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

Extension ops (version 1) of float graphs, operands and attributes:

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
=================  ===========================  ==========================================

Integer graphs carry ``lensnet.integer`` in the graph metadata; their
dialect (integer Conv2d weights, thresholds and three more extension ops)
is defined, read and written by ``lensnet_deploy.hardware.integer.int_nir``
(see docs/integer_semantics.md). A float reader refuses them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from ..errors import GraphError, LensNetDeployError
from . import ops as O

CONVENTION = "lensnet-nir-ext"
VERSION = 1
EXT_KEY, PORT_KEY, ROLE_KEY, SPIKE_KEY = "lensnet.ext", "lensnet.port", "lensnet.role", "lensnet.spike"
GROUPS_KEY = "lensnet.groups"
MAXPOOL_KEY = "lensnet.maxpool"  # on the SumPool2d/Threshold pairs of a global max pool of spikes
INTEGER_KEY = "lensnet.integer"  # graph metadata of an integer graph (its dialect: hardware.int_nir)
GRAPH_KEYS = ("lensnet.convention", "lensnet.version", "lensnet.model")


@dataclass(frozen=True)
class Extension:
    """One extension op of the file format: its operand count and the IR operation it becomes
    (``build(attrs, node)`` from the JSON attributes and the NIR node carrying them)."""

    operands: int
    build: Callable[[dict[str, Any], nir.NIRNode], O.Op]


FLOAT_EXTENSIONS: dict[str, Extension] = {
    "attention": Extension(3, lambda a, n: O.Attention(heads=int(a["heads"]), scale=float(a["scale"]))),
    "sigmoid": Extension(1, lambda a, n: O.Sigmoid()),
    "gate": Extension(2, lambda a, n: O.Gate(scale=float(a["scale"]))),
    "upsample_nearest": Extension(1, lambda a, n: O.Upsample(factor=int(a["factor"]))),
    "bilinear": Extension(1, lambda a, n: O.Bilinear(factor=int(a["factor"]))),
    "global_maxpool": Extension(1, lambda a, n: O.MaxPool()),
}


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


def validate(graph: nir.NIRGraph, extensions: dict[str, Extension] | None = None) -> None:
    """Raise :class:`NIRConventionError` naming the first node that breaks the convention
    (``extensions``: the ops the reader knows; default the float ones)."""
    known = FLOAT_EXTENSIONS if extensions is None else extensions
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
        if op not in known:
            raise NIRConventionError(f"node {name}: unknown extension op {op!r} "
                                     f"(known: {', '.join(sorted(known))})")
        if int(ext.get("version", 0)) > VERSION:
            raise NIRConventionError(f"node {name}: extension {op} version {ext.get('version')} is newer than "
                                     f"{VERSION}")
        operands = ext.get("operands", [])
        if len(operands) != known[op].operands:
            raise NIRConventionError(f"node {name}: {op} takes {known[op].operands} operands, lists {len(operands)}")
        shapes = []
        for i, p in enumerate(operands):
            info = port_info(graph.nodes[p]) if p in graph.nodes else None
            if info is None or info.get("of") != name or int(info.get("index", -1)) != i:
                raise NIRConventionError(f"node {name}: operand {i} ({p!r}) is not its port number {i}")
            shapes.append(_shape(graph.nodes[p]))
        try:  # the operation's own shape rules
            known[op].build(ext, node).check(name, shapes, _shape(node))
        except (GraphError, KeyError, TypeError, ValueError) as err:
            detail = str(err) if isinstance(err, GraphError) else f"attribute {err} missing or malformed"
            raise NIRConventionError(f"node {name}: {op} {detail}") from None


def topological_order(graph: nir.NIRGraph) -> list[str]:
    """Node names in an order where every node follows its edges' sources and, for an
    extension node, its operand ports (sorted among equals, so the order is reproducible)."""
    deps: dict[str, set[str]] = {name: set() for name in graph.nodes}
    for src, dst in graph.edges:
        deps[dst].add(src)
    for name, node in graph.nodes.items():
        ext = ext_info(node)
        if ext is not None:
            deps[name].update(ext["operands"])
    users: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for dst, srcs in deps.items():
        for s in srcs:
            users[s].append(dst)
    pending = {n: len(d) for n, d in deps.items()}
    ready = sorted(n for n, d in deps.items() if not d)
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for u in sorted(users[name]):
            pending[u] -= 1
            if pending[u] == 0:
                ready.append(u)
    if len(order) != len(graph.nodes):
        stuck = sorted(set(graph.nodes) - set(order))[:3]
        raise NIRConventionError(f"graph has a cycle or unreachable dependency at {', '.join(stuck)}")
    return order
