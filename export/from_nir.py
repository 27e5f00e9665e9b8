"""A lensnet NIR graph → the folded IR again (the inverse of :mod:`to_nir`).

Quantization and the simulators work on the IR; NIR files are the artifacts
users keep. Spike planes become one spike node, pooled planes one max pool,
joins additions, extension nodes their ops (operands read from the ports).
Several edges into one node become an explicit addition.
"""

from __future__ import annotations

import json

import nir
import numpy as np

from . import convention as C
from .ir import Graph
from .to_nir import dense_to_grouped

EXT_TO_OP = {"attention": "attention", "sigmoid": "sigmoid", "gate": "gate", "upsample_nearest": "upsample",
             "bilinear": "bilinear", "global_maxpool": "maxpool", "sigmoid_table": "sigmoid", "gate_fixed": "gate",
             "bilinear_int": "bilinear"}


def _shape(types: dict) -> tuple[int, ...]:
    return tuple(int(v) for v in next(iter(types.values())))


def from_nir(graph: nir.NIRGraph) -> Graph:
    """The IR of a graph written by :func:`lensnet_deploy.export_nir` or by ``quantize``
    (integer graphs come back with the integer attributes the simulators read)."""
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

    g = Graph(meta={"input_size": info.get("input_size"), "D": info.get("D"), "config": info.get("config"),
                    "outputs": list(info["outputs"])})
    integer = (graph.metadata or {}).get(C.INTEGER_KEY)
    if integer is not None:
        g.meta["quantized"] = json.loads(integer.decode() if isinstance(integer, bytes) else str(integer))

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
            if ext["op"] == "sigmoid_table":
                attrs = {k: np.asarray(v, np.int64) for k, v in attrs.items()}
                attrs["lut"] = np.asarray(node.metadata[C.LUT_KEY], np.int64)
            elif ext["op"] == "gate_fixed":
                attrs["mult"] = np.asarray(attrs["mult"], np.int64)
            elif ext["op"] == "attention" and integer is not None:
                attrs["scale"] = attrs.pop("unit")
            g.add(name, EXT_TO_OP[ext["op"]], [operand(p) for p in ext["operands"]], shape, **attrs)
        elif isinstance(node, nir.Input):
            g.add(name, "input", [], shape)
        elif isinstance(node, nir.Output):
            g.add(name, "output", [operand(name)], shape)
            if integer is not None:
                g.nodes[name].attrs["real_scale"] = np.asarray(node.metadata[C.REAL_SCALE_KEY], np.float64)
        elif isinstance(node, nir.Conv2d):
            _add_conv(g, name, node, operand(name), shape, integer is not None)
        elif isinstance(node, nir.Flatten):
            g.add(name, "add", sorted({owner[s] for s in incoming[name]}), shape)
        elif isinstance(node, nir.AvgPool2d) or (node.metadata or {}).get(C.ROLE_KEY) == "average_as_sum":
            g.add(name, "avgpool", [operand(name)], shape)
        elif C.spike_info(node) is not None:
            meta = layers[ir_name]
            g.add(ir_name, "spike", [operand(name)], tuple(meta["shape"]), D=int(meta["D"]), out_scale=1.0,
                  sources=meta["sources"])
            if integer is not None:
                planes = [graph.nodes[f"{ir_name}.s{k}"].threshold for k in range(1, int(meta["D"]) + 1)]
                g.nodes[ir_name].attrs["theta"] = np.stack([np.asarray(p)[:, 0, 0] for p in planes], 1).astype(np.int64)
        elif ir_name != name:  # pooled planes of a spike layer: a global max pool of its counts
            first_sum = next(n for n in incoming if owner[n] == ir_name and isinstance(graph.nodes[n], nir.SumPool2d))
            g.add(ir_name, "maxpool", [owner[incoming[first_sum][0]]], _shape(graph.nodes[first_sum].output_type))
        else:
            raise C.NIRConventionError(f"node {name}: {type(node).__name__} is not part of a lensnet graph")
    g.validate()
    return g


def _pair(v) -> tuple[int, int]:
    arr = [int(x) for x in np.atleast_1d(v)]
    return (arr[0], arr[0]) if len(arr) == 1 else (arr[0], arr[1])


def _add_conv(g: Graph, name: str, node: nir.Conv2d, src: str, shape: tuple[int, ...], integer: bool) -> None:
    meta = node.metadata or {}
    groups = int(meta.get(C.GROUPS_KEY, 1))
    w = np.asarray(node.weight)
    if groups > 1:
        w = dense_to_grouped(w, groups)
    attrs = {"stride": _pair(node.stride), "padding": _pair(node.padding), "groups": groups}
    if integer:
        exp = int(meta[C.WEIGHT_EXP_KEY])
        w_int = np.asarray(w, np.int64)
        if np.any(w_int & ((1 << exp) - 1)):
            raise C.NIRConventionError(f"node {name}: integer weights are not multiples of 2^{exp}")
        attrs.update(weight=w_int.astype(np.float64), bias=None, w_int=w_int >> exp, exp=exp,
                     b_int=np.asarray(node.bias, np.int64), shift=np.asarray(meta[C.SHIFT_KEY], np.int64))
    else:
        attrs.update(weight=np.asarray(w, np.float64), bias=np.asarray(node.bias, np.float64))
    g.add(name, "conv", [src], shape, **attrs)
