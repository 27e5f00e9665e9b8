"""The graph IR: named nodes, each holding one typed operation (``ops``), in topological order.

A node has a name, an operation (a dataclass of ``export.ops`` or, in
integer graphs, of ``hardware.ops``), ordered operand names and its output
shape (C, H, W) without the batch axis. The operation checks its operand
count and shapes when the node is added. Float and integer graphs are the
same class; ``meta["integer"]`` records the integer semantics of an integer
graph. Lowering to NIR (``to_nir``) happens once, after the passes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import GraphError
from .ops import Op

O = TypeVar("O", bound=Op)


@dataclass
class Node:
    name: str
    op: Op
    inputs: list[str]
    shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        return self.op.kind

    def __post_init__(self) -> None:
        want = type(self.op).arity
        if want is not None and len(self.inputs) != want:
            raise GraphError(f"{self.kind} node {self.name} takes {want} operands, got {len(self.inputs)}")
        if want is None and not self.inputs:
            raise GraphError(f"{self.kind} node {self.name} needs at least one operand")


@dataclass
class Graph:
    """Nodes in insertion order (a valid topological order is kept by construction)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def integer(self) -> dict[str, Any] | None:
        """The integer semantics this graph follows (None for a float graph)."""
        return self.meta.get("integer")

    def add(self, name: str, op: Op, inputs: list[str], shape: tuple[int, ...]) -> str:
        if name in self.nodes:
            raise GraphError(f"duplicate node name {name}")
        for src in inputs:
            if src not in self.nodes:
                raise GraphError(f"node {name} reads unknown node {src}")
        node = Node(name, op, list(inputs), tuple(int(s) for s in shape))
        op.check(name, [self.nodes[i].shape for i in inputs], node.shape)
        self.nodes[name] = node
        return name

    def copy(self) -> Graph:
        return copy.deepcopy(self)

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes.values()))

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes.values() if name in n.inputs]

    def of(self, *types: type[Op]) -> list[Node]:
        """The nodes whose operation is one of ``types`` (subclasses included)."""
        return [n for n in self.nodes.values() if isinstance(n.op, types)]

    def inputs(self) -> list[Node]:
        return [n for n in self.nodes.values() if type(n.op).arity == 0]

    def outputs(self) -> list[Node]:
        """Output nodes in model order (``meta["outputs"]`` when recorded, else graph order)."""
        order = self.meta.get("outputs")
        if order:
            return [self.nodes[name] for name in order]
        return [n for n in self.nodes.values() if n.kind == "output"]

    def remove(self, name: str) -> None:
        if self.consumers(name):
            raise GraphError(f"cannot remove {name}: it still has consumers")
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
                    raise GraphError(f"node {node.name} reads {src}, which is not defined before it")
            node.op.check(node.name, [self.nodes[i].shape for i in node.inputs], node.shape)
            seen.add(node.name)
