"""A small, plain graph of tensor operations: what capture produces and passes rewrite.

Every node has a name, an op, ordered operand names, attributes (numpy float64
arrays or plain Python values) and its output shape (C, H, W) without batch.
Operands of ``add`` are summed; every other op takes its operands by position.
Lowering to NIR (``to_nir``) happens once, after the passes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# op -> operand count (None: any number), for validation
OPS: dict[str, int | None] = {
    "input": 0,
    "conv": 1,  # attrs: weight (O, I/g, kh, kw), bias (O,) or None, stride, padding, groups
    "batchnorm": 1,  # attrs: mean, var, eps, weight, bias
    "scale": 1,  # attrs: scale (C,) per channel
    "shuffle": 1,  # attrs: perm (output channel c reads input channel perm[c])
    "spike": 1,  # attrs: D, out_scale (output = out_scale · count), sources
    "add": None,
    "avgpool": 1,  # global average pool → C×1×1
    "maxpool": 1,  # global max pool → C×1×1
    "upsample": 1,  # nearest, attrs: factor
    "attention": 3,  # q, k, v; attrs: heads, scale (y = scale · q (kᵀ v) per head)
    "sigmoid": 1,
    "gate": 2,  # gate (C×1×1) · x (C×H×W) · attrs scale
    "bilinear": 1,  # attrs: factor (align_corners False)
    "output": 1,
}


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown op {self.op!r} for node {self.name}")
        want = OPS[self.op]
        if want is not None and len(self.inputs) != want:
            raise ValueError(f"{self.op} node {self.name} takes {want} operands, got {len(self.inputs)}")


@dataclass
class Graph:
    """Nodes in insertion order (a valid topological order is kept by construction)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, op: str, inputs: list[str], shape: tuple[int, ...], **attrs: Any) -> str:
        if name in self.nodes:
            raise ValueError(f"duplicate node name {name}")
        for src in inputs:
            if src not in self.nodes:
                raise ValueError(f"node {name} reads unknown node {src}")
        self.nodes[name] = Node(name, op, list(inputs), tuple(int(s) for s in shape), dict(attrs))
        return name

    def copy(self) -> Graph:
        return copy.deepcopy(self)

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes.values()))

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes.values() if name in n.inputs]

    def of_op(self, op: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.op == op]

    def inputs(self) -> list[Node]:
        return self.of_op("input")

    def outputs(self) -> list[Node]:
        """Output nodes in model order (``meta["outputs"]`` when recorded, else graph order)."""
        order = self.meta.get("outputs")
        if order:
            return [self.nodes[name] for name in order]
        return self.of_op("output")

    def remove(self, name: str) -> None:
        if self.consumers(name):
            raise ValueError(f"cannot remove {name}: it still has consumers")
        del self.nodes[name]

    def bypass(self, name: str) -> None:
        """Remove a one-operand node, wiring its consumers to its operand."""
        node = self.nodes[name]
        (src,) = node.inputs
        for c in self.consumers(name):
            c.inputs = [src if i == name else i for i in c.inputs]
        del self.nodes[name]

    def rewire(self, old: str, new: str) -> None:
        """Make every consumer of ``old`` read ``new`` instead."""
        for c in self.consumers(old):
            c.inputs = [new if i == old else i for i in c.inputs]

    def insert_after(self, anchor: str, node: Node) -> None:
        """Insert ``node`` right after ``anchor`` in the order (keeps topological order)."""
        items = list(self.nodes.items())
        at = [k for k, _ in items].index(anchor) + 1
        items.insert(at, (node.name, node))
        self.nodes = dict(items)

    def validate(self) -> None:
        seen: set[str] = set()
        for node in self.nodes.values():
            for src in node.inputs:
                if src not in seen:
                    raise ValueError(f"node {node.name} reads {src}, which is not defined before it")
            seen.add(node.name)
