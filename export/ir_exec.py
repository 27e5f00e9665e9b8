"""Execute a float IR graph in float64 (to check that every pass preserves the model).

One function per operation type (``EVAL``), on the float64 kernels of :mod:`kernels`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import GraphError
from . import kernels as K
from . import ops as O
from .ir import Graph, Node


def _t(a) -> torch.Tensor | None:
    return None if a is None else torch.as_tensor(a, dtype=torch.float64)


def _batchnorm(op: O.BatchNorm, x: torch.Tensor) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    inv = 1.0 / torch.sqrt(_t(op.var) + op.eps)
    return (x - _t(op.mean).view(shape)) * (inv * _t(op.weight)).view(shape) + _t(op.bias).view(shape)


def _spike(op: O.Spike, x: torch.Tensor) -> torch.Tensor:
    count = K.spike_count(x, op.D)
    return count * op.out_scale if op.out_scale != 1.0 else count


def _add(op: O.Add, *xs: torch.Tensor) -> torch.Tensor:
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


EVAL: dict[type[O.Op], Callable[..., torch.Tensor]] = {
    O.Conv: lambda op, x: K.conv2d(x, _t(op.weight), _t(op.bias), op.stride, op.padding, op.groups),
    O.BatchNorm: _batchnorm,
    O.Scale: lambda op, x: x * _t(op.scale).view(1, -1, 1, 1),
    O.Shuffle: lambda op, x: x[:, torch.as_tensor(op.perm, dtype=torch.long)],
    O.Spike: _spike,
    O.Add: _add,
    O.AvgPool: lambda op, x: K.global_avgpool(x),
    O.MaxPool: lambda op, x: K.global_maxpool(x),
    O.Upsample: lambda op, x: K.upsample_nearest(x, op.factor),
    O.Attention: lambda op, q, k, v: K.attention(q, k, v, op.heads, op.scale),
    O.Sigmoid: lambda op, x: torch.sigmoid(x),
    O.Gate: lambda op, g, x: K.gate(g, x, op.scale),
    O.Bilinear: lambda op, x: K.bilinear(x, op.factor),
    O.Output: lambda op, x: x,
}


def eval_node(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    fn = EVAL.get(type(node.op))
    if fn is None:
        raise GraphError(f"the float executor cannot run {node.kind} node {node.name} (an integer graph?)")
    return fn(node.op, *args)


def run_ir(graph: Graph, images: torch.Tensor, keep: bool = False) -> dict[str, torch.Tensor]:
    """Values of the output nodes (or of every node with ``keep``), by name."""
    values: dict[str, torch.Tensor] = {}
    remaining = {n.name: len(graph.consumers(n.name)) for n in graph} if not keep else {}
    outputs = {n.name for n in graph.outputs()}
    for node in graph:
        if isinstance(node.op, O.Input):
            values[node.name] = images.to(torch.float64)
            continue
        values[node.name] = eval_node(node, [values[i] for i in node.inputs])
        if not keep:
            for i in node.inputs:
                remaining[i] -= 1
                if remaining[i] == 0 and i not in outputs:
                    del values[i]
    if keep:
        return values
    return {n.name: values[n.name] for n in graph.outputs()}
