"""Execute an IR graph in float64 (to check that every pass preserves the model)."""

from __future__ import annotations

import torch

from . import kernels as K
from .ir import Graph, Node


def _t(a) -> torch.Tensor | None:
    return None if a is None else torch.as_tensor(a, dtype=torch.float64)


def eval_node(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    op = node.op
    if op == "conv":
        return K.conv2d(args[0], _t(a["weight"]), _t(a["bias"]), a["stride"], a["padding"], a["groups"])
    if op == "batchnorm":
        shape = (1, -1, 1, 1)
        inv = 1.0 / torch.sqrt(_t(a["var"]) + a["eps"])
        return (args[0] - _t(a["mean"]).view(shape)) * (inv * _t(a["weight"])).view(shape) + _t(a["bias"]).view(shape)
    if op == "scale":
        return args[0] * _t(a["scale"]).view(1, -1, 1, 1)
    if op == "shuffle":
        return args[0][:, torch.as_tensor(a["perm"], dtype=torch.long)]
    if op == "spike":
        count = K.spike_count(args[0], a["D"])
        return count * a["out_scale"] if a["out_scale"] != 1.0 else count
    if op == "add":
        total = args[0]
        for x in args[1:]:
            total = total + x
        return total
    if op == "avgpool":
        return K.global_avgpool(args[0])
    if op == "maxpool":
        return K.global_maxpool(args[0])
    if op == "upsample":
        return K.upsample_nearest(args[0], a["factor"])
    if op == "attention":
        return K.attention(args[0], args[1], args[2], a["heads"], a["scale"])
    if op == "sigmoid":
        return torch.sigmoid(args[0])
    if op == "gate":
        return K.gate(args[0], args[1], a["scale"])
    if op == "bilinear":
        return K.bilinear(args[0], a["factor"])
    if op == "output":
        return args[0]
    raise ValueError(f"cannot execute op {op!r} of node {node.name}")


def run_ir(graph: Graph, images: torch.Tensor, keep: bool = False) -> dict[str, torch.Tensor]:
    """Values of the output nodes (or of every node with ``keep``), by name."""
    values: dict[str, torch.Tensor] = {}
    remaining = {n.name: len(graph.consumers(n.name)) for n in graph} if not keep else {}
    for node in graph:
        if node.op == "input":
            values[node.name] = images.to(torch.float64)
            continue
        values[node.name] = eval_node(node, [values[i] for i in node.inputs])
        if not keep:
            for i in node.inputs:
                remaining[i] -= 1
                if remaining[i] == 0 and graph.nodes[i].op != "output":
                    del values[i]
    if keep:
        return values
    return {n.name: values[n.name] for n in graph.outputs()}
