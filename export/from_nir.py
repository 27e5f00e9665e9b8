"""A lensnet NIR graph → the folded IR again (the inverse of :mod:`to_nir`).

Quantization and the simulators work on the IR; NIR files are the artifacts
users keep. Spike planes become one spike node, pooled planes one max pool,
joins additions, extension nodes their ops (operands read from the ports).
Several edges into one node become an explicit addition. What each NIR
node becomes is the reader's :class:`Dialect`: float here, integer in
``lensnet_deploy.hardware.integer.int_nir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from ..errors import GraphError
from . import convention as C
from . import ops as O
from .ir import Graph
from .to_nir import dense_to_grouped


def _pair(v) -> tuple[int, int]:
    arr = [int(x) for x in np.atleast_1d(v)]
    return (arr[0], arr[0]) if len(arr) == 1 else (arr[0], arr[1])


@dataclass
class Dialect:
    """How the nodes of one kind of lensnet NIR file become IR operations (the float one here)."""

    name: str = "float"
    extensions: dict[str, C.Extension] = field(default_factory=lambda: dict(C.FLOAT_EXTENSIONS))

    def accepts(self, graph: nir.NIRGraph) -> None:
        if C.INTEGER_KEY in (graph.metadata or {}):
            raise GraphError("graph is already quantized (an integer NIR graph): simulate or compile it")

    def graph_meta(self, graph: nir.NIRGraph) -> dict[str, Any]:
        return {}

    def conv(self, name: str, node: nir.Conv2d, weight: np.ndarray, geometry: dict[str, Any]) -> O.Op:
        return O.Conv(weight=np.asarray(weight, np.float64), bias=np.asarray(node.bias, np.float64), **geometry)

    def spike(self, name: str, D: int, sources: list, planes: list[nir.Threshold]) -> O.Op:
        return O.Spike(D=D, out_scale=1.0, sources=sources)

    def sum_pool(self, name: str, node: nir.NIRNode) -> O.Op:
        return O.AvgPool()

    def output(self, name: str, node: nir.Output) -> O.Op:
        return O.Output()


FLOAT = Dialect()


def _shape(types: dict) -> tuple[int, ...]:
    return tuple(int(v) for v in next(iter(types.values())))


def from_nir(graph: nir.NIRGraph, dialect: Dialect = FLOAT) -> Graph:
    """The IR of a graph written by :func:`lensnet_deploy.export_nir` (or, with the integer
    dialect, by ``quantize``)."""
    dialect.accepts(graph)
    C.validate(graph, dialect.extensions)
    info = C.model_info(graph)
    if info is None:
        raise C.NIRConventionError("not a lensnet graph: no lensnet.model metadata")
    layers = info["spike_layers"]
    owner: dict[str, str] = {}  # NIR node → IR node whose value it carries (a part of)
    for name, node in graph.nodes.items():
        spike = C.spike_info(node)
        pooled = (node.metadata or {}).get(C.MAXPOOL_KEY)
        if spike is not None:
            owner[name] = spike["layer"]
        elif pooled is not None:
            owner[name] = str(pooled.decode() if isinstance(pooled, bytes) else pooled)
        else:
            owner[name] = name
    incoming: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        incoming[dst].append(src)

    g = Graph(meta={"input_size": info.get("input_size"), "D": info.get("D"), "config": info.get("config"),
                    "outputs": list(info["outputs"]), **dialect.graph_meta(graph)})

    def operand(nir_name: str) -> str:
        """The IR node summing the (distinct) producers of ``nir_name``'s incoming edges."""
        srcs = sorted({owner[s] for s in incoming[nir_name]})
        if len(srcs) == 1:
            return srcs[0]
        join = f"{nir_name}.sum"
        if join not in g.nodes:
            g.add(join, O.Add(), srcs, g.nodes[srcs[0]].shape)
        return join

    for name in C.topological_order(graph):
        node = graph.nodes[name]
        ir_name = owner[name]
        if ir_name in g.nodes or C.port_info(node) is not None:
            continue
        ext = C.ext_info(node)
        shape = _shape(node.output_type)
        if ext is not None:
            op = dialect.extensions[ext["op"]].build(ext, node)
            g.add(name, op, [operand(p) for p in ext["operands"]], shape)
        elif isinstance(node, nir.Input):
            g.add(name, O.Input(), [], shape)
        elif isinstance(node, nir.Output):
            g.add(name, dialect.output(name, node), [operand(name)], shape)
        elif isinstance(node, nir.Conv2d):
            meta = node.metadata or {}
            groups = int(meta.get(C.GROUPS_KEY, 1))
            w = np.asarray(node.weight)
            if groups > 1:
                w = dense_to_grouped(w, groups)
            geometry = {"stride": _pair(node.stride), "padding": _pair(node.padding), "groups": groups}
            g.add(name, dialect.conv(name, node, w, geometry), [operand(name)], shape)
        elif isinstance(node, nir.Flatten):
            g.add(name, O.Add(), sorted({owner[s] for s in incoming[name]}), shape)
        elif isinstance(node, nir.AvgPool2d) or (node.metadata or {}).get(C.ROLE_KEY) == "average_as_sum":
            g.add(name, dialect.sum_pool(name, node), [operand(name)], shape)
        elif C.spike_info(node) is not None:
            meta = layers[ir_name]
            D = int(meta["D"])
            planes = [graph.nodes[f"{ir_name}.s{k}"] for k in range(1, D + 1)]
            g.add(ir_name, dialect.spike(ir_name, D, meta["sources"], planes), [operand(name)], tuple(meta["shape"]))
        elif ir_name != name:  # pooled planes of a spike layer: a global max pool of its counts
            first_sum = next(n for n in incoming if owner[n] == ir_name and isinstance(graph.nodes[n], nir.SumPool2d))
            g.add(ir_name, O.MaxPool(), [owner[incoming[first_sum][0]]], _shape(graph.nodes[first_sum].output_type))
        else:
            raise C.NIRConventionError(f"node {name}: {type(node).__name__} is not part of a lensnet graph")
    g.validate()
    return g
