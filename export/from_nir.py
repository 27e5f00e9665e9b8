"""A lensnet NIR graph → the folded IR again (the inverse of :mod:`to_nir`).

Quantization and the simulators work on the IR; NIR files are the artifacts
users keep. Spike planes become one spike node, pooled planes one max pool,
joins additions, extension nodes their ops (operands read from the ports).
Several edges into one node become an explicit addition.
"""

from __future__ import annotations

import nir
import numpy as np

from . import convention as C
from .ir import Graph
from .to_nir import dense_to_grouped

EXT_TO_OP = {"attention": "attention", "sigmoid": "sigmoid", "gate": "gate", "upsample_nearest": "upsample",
             "bilinear": "bilinear", "global_maxpool": "maxpool"}


def _shape(types: dict) -> tuple[int, ...]:
    return tuple(int(v) for v in next(iter(types.values())))


def from_nir(graph: nir.NIRGraph) -> Graph:
    """The IR of a graph written by :func:`lensnet_deploy.export_nir` (float)."""
    C.validate(graph)
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

    from .interpreter import _order  # topological order incl. extension operands

    g = Graph(meta={"input_size": info.get("input_size"), "D": info.get("D"), "config": info.get("config")})

    def operand(nir_name: str) -> str:
        """The IR node summing the (distinct) producers of ``nir_name``'s incoming edges."""
        srcs = sorted({owner[s] for s in incoming[nir_name]})
        if len(srcs) == 1:
            return srcs[0]
        join = f"{nir_name}.sum"
        if join not in g.nodes:
            g.add(join, "add", srcs, g.nodes[srcs[0]].shape)
        return join

    for name in _order(graph):
        node = graph.nodes[name]
        ir_name = owner[name]
        if ir_name in g.nodes or C.port_info(node) is not None:
            continue
        ext = C.ext_info(node)
        shape = _shape(node.output_type)
        if ext is not None:
            attrs = {k: v for k, v in ext.items() if k not in ("op", "version", "operands")}
            g.add(name, EXT_TO_OP[ext["op"]], [operand(p) for p in ext["operands"]], shape, **attrs)
        elif isinstance(node, nir.Input):
            g.add(name, "input", [], shape)
        elif isinstance(node, nir.Output):
            g.add(name, "output", [operand(name)], shape)
        elif isinstance(node, nir.Conv2d):
            groups = int((node.metadata or {}).get(C.GROUPS_KEY, 1))
            w = np.asarray(node.weight, np.float64)
            if groups > 1:
                w = dense_to_grouped(w, groups)
            pad = tuple(int(p) for p in np.atleast_1d(node.padding)) * (1 if np.size(node.padding) == 2 else 2)
            g.add(name, "conv", [operand(name)], shape, weight=w, bias=np.asarray(node.bias, np.float64),
                  stride=tuple(int(s) for s in np.atleast_1d(node.stride)) * (1 if np.size(node.stride) == 2 else 2),
                  padding=pad[:2], groups=groups)
        elif isinstance(node, nir.Flatten):
            g.add(name, "add", sorted({owner[s] for s in incoming[name]}), shape)
        elif isinstance(node, nir.AvgPool2d):
            g.add(name, "avgpool", [operand(name)], shape)
        elif C.spike_info(node) is not None:
            meta = layers[ir_name]
            g.add(ir_name, "spike", [operand(name)], tuple(meta["shape"]), D=int(meta["D"]), out_scale=1.0,
                  sources=meta["sources"])
        elif ir_name != name:  # pooled planes of a spike layer: a global max pool of its counts
            first_sum = next(n for n in incoming if owner[n] == ir_name and isinstance(graph.nodes[n], nir.SumPool2d))
            g.add(ir_name, "maxpool", [owner[incoming[first_sum][0]]], _shape(graph.nodes[first_sum].output_type))
        else:
            raise C.NIRConventionError(f"node {name}: {type(node).__name__} is not part of a lensnet graph")
    g.validate()
    return g
