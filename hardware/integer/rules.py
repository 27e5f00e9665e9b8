"""Checks of integer graphs: their own widths (a malformed file), and a target's design rules.

``check_integer_graph`` (from :mod:`.validate`, the one validator of integer
parameters) refuses an integer graph whose parameters break the widths it
declares (docs/integer_semantics.md): a :class:`GraphError`, bad input.
``check_design_rules`` runs the named rules of a target on a graph and raises
:class:`DesignRuleError` naming the first layer, the rule, the limit and the
value (as Rockpool's Xylo mapper does): the target cannot hold it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ...errors import DesignRuleError
from ...export import ops as O
from ...export.ir import Graph, Node
from ..target.chips import Target
from . import ops as I
from .semantics import count_bits
from .validate import WIDE_SOURCES, check_integer_graph

__all__ = ["RULES", "check_design_rules", "check_integer_graph", "design_rule_violations"]


Rule = Callable[[Graph, Node, Target], Iterator[DesignRuleError]]


def _weight_bits(ir: Graph, n: Node, t: Target) -> Iterator[DesignRuleError]:
    if isinstance(n.op, I.IntConv):
        value = int(np.abs(n.op.w_int).max(initial=0))
        if value > t.weight_max:
            yield DesignRuleError(n.name, "weight_bits", f"|w| ≤ {t.weight_max} ({t.weight_bits}-bit)", value)


def _state_bits(ir: Graph, n: Node, t: Target) -> Iterator[DesignRuleError]:
    if isinstance(n.op, I.IntConv):
        value = int(np.abs(n.op.b_int).max(initial=0))
        if value > t.state_max:
            yield DesignRuleError(n.name, "state_bits", f"|bias| ≤ {t.state_max} ({t.state_bits}-bit)", value)
    elif isinstance(n.op, I.IntSpike) and not isinstance(ir.nodes[n.inputs[0]].op, WIDE_SOURCES):
        value = int(np.abs(n.op.theta).max(initial=0))
        if value > t.state_max:
            yield DesignRuleError(n.name, "state_bits", f"|threshold| ≤ {t.state_max} ({t.state_bits}-bit)", value)


def _graded_spike_bits(ir: Graph, n: Node, t: Target) -> Iterator[DesignRuleError]:
    """A spike count of 0..D is a graded payload of ``count_bits(D)`` bits; 1 bit is a binary spike."""
    if isinstance(n.op, I.IntSpike):
        bits = count_bits(n.op.D)
        if bits > max(1, t.graded_spike_bits):
            limit = "binary spikes only" if t.graded_spike_bits == 0 else f"{t.graded_spike_bits}-bit payloads"
            yield DesignRuleError(n.name, "graded_spike_bits", limit, f"{bits}-bit spike counts (D = {n.op.D})")


RULES: dict[str, Rule] = {
    "weight_bits": _weight_bits,
    "state_bits": _state_bits,
    "graded_spike_bits": _graded_spike_bits,
}


def design_rule_violations(ir: Graph, target: Target) -> list[DesignRuleError]:
    """Every violation of every rule, in graph order."""
    found = []
    for n in ir:
        if isinstance(n.op, O.Input | O.Output):
            continue
        for rule in RULES.values():
            found.extend(rule(ir, n, target))
    return found


def check_design_rules(ir: Graph, target: Target) -> None:
    """Raise the first violation (in graph order) of the target's design rules."""
    found = design_rule_violations(ir, target)
    if found:
        raise found[0]
