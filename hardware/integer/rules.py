"""Checks of integer graphs: their own widths (a malformed file), and a target's design rules.

``check_integer_graph`` refuses an integer graph whose parameters break the
widths it declares (docs/integer_semantics.md): a :class:`GraphError`, bad
input. ``check_design_rules`` runs the named rules of a target on a graph
and raises :class:`DesignRuleError` naming the first layer, the rule, the
limit and the value (as Rockpool's Xylo mapper does): the target cannot hold it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ...errors import DesignRuleError, GraphError
from ...export import ops as O
from ...export.ir import Graph, Node
from ..target.chips import Target
from . import ops as I
from .semantics import WIDE_MAX, count_bits

WIDE_SOURCES = (I.SumPool, I.IntAttention)  # spikes after these compare 64-bit words (embedded cores)


def check_integer_graph(ir: Graph) -> None:
    """Refuse an integer graph whose parameters break the widths it declares."""
    if ir.integer is None:
        raise GraphError("this step needs an integer graph: run quantize first")
    weight_max = 2 ** (int(ir.integer.get("weight_bits", 8)) - 1) - 1
    state_bits = int(ir.integer.get("state_bits", 24))
    state_max = 2 ** (state_bits - 1) - 1
    for n in ir:
        op = n.op
        if isinstance(op, I.IntConv):
            if np.abs(op.w_int).max(initial=0) > weight_max:
                raise GraphError(f"layer {n.name}: weight mantissa outside int{weight_max.bit_length() + 1} "
                                 f"(|w| ≤ {weight_max})")
            if np.abs(op.b_int).max(initial=0) > state_max:
                raise GraphError(f"layer {n.name}: bias does not fit the {state_bits}-bit state")
        elif isinstance(op, I.IntSpike):
            wide = isinstance(ir.nodes[n.inputs[0]].op, WIDE_SOURCES)
            limit = WIDE_MAX if wide else state_max
            if np.abs(op.theta).max(initial=0) > limit:
                raise GraphError(f"layer {n.name}: threshold {int(np.abs(op.theta).max()):,} overflows "
                                 f"{64 if wide else state_bits} bits")
            if np.any(np.diff(op.theta, axis=1) < 0):
                raise GraphError(f"layer {n.name}: thresholds are not increasing with the count")


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
