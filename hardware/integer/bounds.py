"""Static worst-case bounds of an integer graph: one pass, one rule per operation.

Every consumer of a bound reads it from here: the fast simulator picks each node's exact
number type from it, the Loihi plan sizes messages and proves LIF inputs within their width,
and the quantizer evaluates the same rules on candidate weights while it chooses shifts. (The
design-rule audit recomputes bounds from the Lava processes' own parameters on purpose: it
checks the plan, so it must not share the plan's arithmetic.)

A *membrane* (a convolution, a join of membranes, a gate) has two parts: the bound of its
synaptic sum (``syn``) and its bias; its value bound is ``syn + |bias|``. Bounds are per
channel, as int64 where they fit and float64 where a wide value (64-bit words of embedded cores)
may exceed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InternalError
from ...export import ops as O
from ...export.ir import Graph, Node
from ...normalization import PIXEL_MAGNITUDE
from . import ops as I


# --- the rules, on plain arrays (the quantizer calls them on candidate weights) --------------------
def conv_synaptic(weight: np.ndarray, in_max: int | float, exp: int = 0) -> np.ndarray:
    """Per output channel: Σ|w| over its taps times the largest |input|, times 2^exp."""
    w = np.abs(np.asarray(weight)).reshape(weight.shape[0], -1).sum(axis=1)
    return w * in_max * 2**exp if exp else w * in_max


def gate_value(gate_max: np.ndarray | int, count_max: np.ndarray | int, mult: np.ndarray, r: int) -> np.ndarray:
    """``⌊(g·count·mult + 2^(r−1)) / 2^r⌋`` at its largest |value|."""
    top = np.asarray(gate_max) * np.asarray(count_max) * np.abs(mult)
    if np.issubdtype(np.asarray(top).dtype, np.integer):
        return (top + (1 << (r - 1))) >> r
    return np.floor((top + 2.0 ** (r - 1)) / 2.0**r)


def attention_values(tokens: int, channels_per_head: int, q_max: int, k_max: int, v_max: int) -> tuple[int, int]:
    """Bounds of ``kᵀv`` (Σ over the tokens) and of ``q·(kᵀv)`` (Σ over a head's channels)."""
    kv = tokens * k_max * v_max
    return kv, channels_per_head * q_max * kv


@dataclass
class Bound:
    """A node's static bound per channel: ``value`` of |output|; membranes also ``syn`` (the
    synaptic sum, bias excluded) and ``bias``; ``wide``: an intermediate bound the node's kernel
    reaches (the attention's kᵀv)."""

    value: np.ndarray
    syn: np.ndarray | None = None
    bias: np.ndarray | None = None
    wide: int = 0

    @property
    def magnitude(self) -> int | float:
        m = self.value.max(initial=0)
        return int(m) if np.issubdtype(self.value.dtype, np.integer) else float(m)


def _per_channel(n: Node, value) -> np.ndarray:
    v = np.asarray(value)
    dtype = np.int64 if np.issubdtype(v.dtype, np.integer) else np.float64
    return np.broadcast_to(v.astype(dtype), (n.shape[0],)).copy()


def _membrane(n: Node, syn: np.ndarray, bias: np.ndarray) -> Bound:
    return Bound(syn + np.abs(bias), syn, bias)


def _input(n: Node, src: list[Bound]) -> Bound:
    return Bound(_per_channel(n, PIXEL_MAGNITUDE))


def _conv(n: Node, src: list[Bound]) -> Bound:
    op: I.IntConv = n.op  # type: ignore[assignment]
    return _membrane(n, conv_synaptic(op.weight, src[0].magnitude), np.asarray(op.b_int, np.int64).copy())


def _add(n: Node, src: list[Bound]) -> Bound:
    """A join sums synaptic parts and biases apart (a bias is exact, so |Σ bias| not Σ |bias|)."""
    syn = sum(b.syn if b.syn is not None else b.value for b in src)
    bias = sum(b.bias if b.bias is not None else np.zeros_like(b.value) for b in src)
    return _membrane(n, syn, bias)


def _gate(n: Node, src: list[Bound]) -> Bound:
    op: I.IntGate = n.op  # type: ignore[assignment]
    v = gate_value(src[0].value, src[1].value, op.mult, op.r)
    return Bound(v, v, np.zeros(n.shape[0], np.int64))


def _sumpool(n: Node, src: list[Bound], graph: Graph) -> Bound:
    h, w = graph.nodes[n.inputs[0]].shape[1:]
    return Bound(h * w * src[0].value)


def _attention(n: Node, src: list[Bound], graph: Graph) -> Bound:
    q, k, v = src
    per_head = graph.nodes[n.inputs[0]].shape[0] // n.op.heads  # type: ignore[attr-defined]
    kv, value = attention_values(n.shape[1] * n.shape[2], per_head, q.magnitude, k.magnitude, v.magnitude)
    return Bound(_per_channel(n, float(value)), wide=max(kv, value))


RULES = {
    O.Input: _input,
    I.IntConv: _conv,
    I.IntSpike: lambda n, src: Bound(_per_channel(n, n.op.D)),
    O.Add: _add,
    O.MaxPool: lambda n, src: Bound(src[0].value.copy()),
    O.Upsample: lambda n, src: Bound(src[0].value.copy()),
    I.SigmoidTable: lambda n, src: Bound(np.asarray(n.op.lut, np.int64).max(axis=1)),
    I.IntGate: _gate,
    I.IntBilinear: lambda n, src: Bound((2 * n.op.factor) ** 2 * src[0].value),
    I.IntOutput: lambda n, src: Bound(src[0].value.copy()),
}
GRAPH_RULES = {I.SumPool: _sumpool, I.IntAttention: _attention}  # rules that read input shapes


def static_bounds(graph: Graph) -> dict[str, Bound]:
    """Every node's bound, in graph order."""
    out: dict[str, Bound] = {}
    for n in graph:
        src = [out[i] for i in n.inputs]
        if type(n.op) in RULES:
            out[n.name] = RULES[type(n.op)](n, src)
        elif type(n.op) in GRAPH_RULES:
            out[n.name] = GRAPH_RULES[type(n.op)](n, src, graph)
        else:
            raise InternalError(f"no bound rule for {n.kind} node {n.name}")
    return out
