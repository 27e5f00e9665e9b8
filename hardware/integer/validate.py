"""The one check of an integer graph's parameters: every array read whole, every value an
integer within its width. A file that breaks a rule is one :class:`GraphError` line naming
the node, the parameter and the offending value (exit 2).

Two stages, both here:

* :func:`integers` runs while an integer NIR file is read (``int_nir.from_int_nir``), on the
  arrays as the file holds them, before anything casts them: finite, no fraction, within
  int64 (NaN, ``2.5`` or ``2^64 − 1`` would otherwise become some integer silently). A spike
  plane's thresholds are one value per channel that the NIR encoding broadcasts over the
  channel's cells (:func:`channel_thresholds` refuses a file whose cells differ).
* :func:`check_integer_graph` runs on the integer IR (read from a file, or made by
  ``quantize``): each parameter against the widths the graph records in its ``integer``
  metadata (``weight_bits``, ``state_bits``) and the fixed formats of
  docs/integer_semantics.md. The rules, per operation:

  ==============  ==================================================================
  IntConv         ``weight = W << exp`` with ``|W| ≤ 2^(weight_bits−1) − 1``;
                  ``0 ≤ exp ≤ weight_exp_max + 1`` of the recorded target (Loihi's
                  ``weight_exp = exp − 1``); ``|bias| ≤ 2^(state_bits−1) − 1``;
                  one shift per channel in ``MIN_SHIFT..MAX_SHIFT``
  IntSpike        C × D thresholds, not decreasing with the count; ``|θ|`` within the
                  state (64-bit words after a global pool or the attention product)
  SigmoidTable    per channel ``0 ≤ z_shift ≤ MAX_SHIFT``, ``z_lo ≤ z_hi``, the table
                  long enough for ``z_hi − z_lo + 1`` entries, entries in 0..2^12
  IntGate         ``1 ≤ r ≤ MAX_SHIFT``; the gate's worst case
                  ``(2^12 · D · |mult| + 2^(r−1)) >> r`` within the state
  IntOutput       finite real scales; IntAttention a finite unit
  ==============  ==================================================================

The int64 reference (``reference.py``) does not use this module: it stays an independent
reading of the semantics document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import GraphError
from ...export import ops as O
from ...export.ir import Graph, Node
from . import ops as I
from .quantize import MIN_SHIFT  # a stream coarser than 2^8 per step cannot be represented
from .semantics import GATE_BITS, WIDE_MAX

INT64_MAX = np.iinfo(np.int64).max
MAX_SHIFT = 62  # a shift of an int64 value (a channel's 2^s, a table's z >> z_shift, the gate's >> r)
WEIGHT_BITS = (2, 32)  # the widths a graph may record; a file claiming wider ones is refused
STATE_BITS = (2, 62)
DEFAULT_WEIGHT_EXP_MAX = 7  # Loihi's synapse weight exponent −8..7, where a graph names no known target
WIDE_SOURCES = (I.SumPool, I.IntAttention)  # spikes after these compare 64-bit words (embedded cores)


def _at(index: tuple[int, ...]) -> str:
    """`` at [i, j]`` of an array's element ("" for a scalar)."""
    return " at [" + ", ".join(str(int(i)) for i in index) + "]" if len(index) else ""


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def integers(what: str, values: Any) -> np.ndarray:
    """``values`` as an int64 array, or a :class:`GraphError` ``"{what} …"`` naming the first value
    that is not an integer (NaN, ±Inf, a fraction, beyond int64, not a number)."""
    a = np.asarray(values)
    if a.dtype == object:  # JSON lists: integers beyond int64, or not numbers at all
        flat = list(a.reshape(-1))
        for i, v in enumerate(flat):
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise GraphError(f"{what}: {v!r}{_at(np.unravel_index(i, a.shape))} is not a number")
        if any(isinstance(v, float | np.floating) for v in flat):
            a = a.astype(np.float64)
        else:
            for i, v in enumerate(flat):
                if abs(int(v)) > INT64_MAX:
                    raise GraphError(f"{what}: {int(v)}{_at(np.unravel_index(i, a.shape))} does not fit int64")
            a = np.array([int(v) for v in flat], dtype=np.int64).reshape(a.shape)
    if a.dtype.kind in "SU" and a.size:
        raise GraphError(f"{what}: {a.reshape(-1)[0].item()!r}{_at((0,) * a.ndim)} is not a number")
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise GraphError(f"{what}: values of type {a.dtype} are not integers")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            i = _first(bad)
            raise GraphError(f"{what}: {a[i]}{_at(i)} is not an integer")
        frac = a != np.floor(a)
        if frac.any():
            i = _first(frac)
            raise GraphError(f"{what}: {a[i].item()!r}{_at(i)} is not an integer")
        big = np.abs(a) >= 2.0**63
        if big.any():
            i = _first(big)
            raise GraphError(f"{what}: {a[i]:.0f}{_at(i)} does not fit int64")
    elif a.dtype.kind == "u" and a.dtype.itemsize >= 8:
        big = a > INT64_MAX
        if big.any():
            i = _first(big)
            raise GraphError(f"{what}: {int(a[i])}{_at(i)} does not fit int64")
    return a.astype(np.int64)


def integer(what: str, value: Any) -> int:
    """One integer (a scalar or a one-element array)."""
    a = integers(what, value)
    if a.size != 1:
        raise GraphError(f"{what}: one integer expected, got shape {list(a.shape)}")
    return int(a.reshape(-1)[0])


def channel_thresholds(what: str, threshold: Any) -> np.ndarray:
    """A spike plane's C×H×W thresholds (integers, one value per channel broadcast over its cells)
    as the C per-channel values."""
    t = integers(what, threshold)
    if t.ndim != 3 or t.shape[0] == 0:
        raise GraphError(f"{what}: shape {list(t.shape)}, expected channels × height × width")
    first = t[:, :1, :1]
    differ = t != first
    if differ.any():
        c, y, x = _first(differ)
        raise GraphError(f"{what}: {int(t[c, y, x])}{_at((c, y, x))} differs from {int(first[c, 0, 0])}"
                         f"{_at((c, 0, 0))}; a threshold is one value per channel")
    return first[:, 0, 0].copy()


@dataclass(frozen=True)
class Widths:
    """The widths an integer graph records (``Graph.integer``) and the exponent range of its target."""

    weight_bits: int
    state_bits: int
    exp_max: int

    @property
    def weight_max(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1

    @property
    def state_max(self) -> int:
        return 2 ** (self.state_bits - 1) - 1


def widths(info: dict[str, Any] | None) -> Widths:
    """The recorded widths of an integer graph's metadata, each within its sane range."""
    from ..target.chips import known_targets, load_target

    if info is None:
        raise GraphError("this step needs an integer graph: run quantize first")
    found = {}
    for key, default, (lo, hi) in (("weight_bits", 8, WEIGHT_BITS), ("state_bits", 24, STATE_BITS)):
        value = integer(f"graph metadata integer.{key}", info.get(key, default))
        if not lo <= value <= hi:
            raise GraphError(f"graph metadata integer.{key}: {value} outside {lo}..{hi}")
        found[key] = value
    name = info.get("target")
    known = isinstance(name, str) and name in known_targets()
    exp_max = load_target(name).weight_exp_max if known else DEFAULT_WEIGHT_EXP_MAX
    return Widths(found["weight_bits"], found["state_bits"], exp_max + 1)


def _outside(n: Node, param: str, values: np.ndarray, lo: int, hi: int, unit: str = "") -> None:
    bad = (values < lo) | (values > hi)
    if bad.any():
        i = _first(bad)
        raise GraphError(f"node {n.name}: {param} {int(values[i])}{_at(i)} outside {lo}..{hi}{unit}")


def _per_channel(n: Node, param: str, values: np.ndarray) -> None:
    if values.shape != (n.shape[0],):
        raise GraphError(f"node {n.name}: {param} of shape {list(values.shape)}, expected one per channel "
                         f"({n.shape[0]})")


def _count_max(ir: Graph, name: str) -> int:
    """The largest spike count a value can hold (through max pools and upsampling): its spike's D."""
    n = ir.nodes[name]
    while isinstance(n.op, O.MaxPool | O.Upsample):
        n = ir.nodes[n.inputs[0]]
    return int(n.op.D) if isinstance(n.op, I.IntSpike) else 1


def _conv(ir: Graph, n: Node, w: Widths) -> None:
    op: I.IntConv = n.op  # type: ignore[assignment]
    _outside(n, "weight mantissa", op.w_int, -w.weight_max, w.weight_max, f" (int{w.weight_bits})")
    if not 0 <= op.exp <= w.exp_max:
        raise GraphError(f"node {n.name}: weight exponent {op.exp} outside 0..{w.exp_max}")
    _per_channel(n, "bias", op.b_int)
    _outside(n, "bias", op.b_int, -w.state_max, w.state_max, f" ({w.state_bits}-bit state)")
    if np.shape(op.shift) != (1,):  # one shift for the layer, or one per channel
        _per_channel(n, "shift", op.shift)
    _outside(n, "shift", op.shift, MIN_SHIFT, MAX_SHIFT)


def _spike(ir: Graph, n: Node, w: Widths) -> None:
    op: I.IntSpike = n.op  # type: ignore[assignment]
    wide = isinstance(ir.nodes[n.inputs[0]].op, WIDE_SOURCES)
    limit = WIDE_MAX if wide else w.state_max
    over = np.abs(op.theta) > limit
    if over.any():
        c, k = _first(over)
        raise GraphError(f"node {n.name}: threshold {int(op.theta[c, k])} (channel {c}, plane {k + 1}) overflows "
                         f"{64 if wide else w.state_bits} bits (|θ| ≤ {limit})")
    down = np.diff(op.theta, axis=1) < 0
    if down.any():
        c, k = _first(down)
        raise GraphError(f"node {n.name}: threshold {int(op.theta[c, k + 1])} of plane {k + 2} is below "
                         f"{int(op.theta[c, k])} of plane {k + 1} (channel {c}): thresholds may not decrease "
                         f"with the count")


def _sigmoid(ir: Graph, n: Node, w: Widths) -> None:
    op: I.SigmoidTable = n.op  # type: ignore[assignment]
    for param in ("z_shift", "z_lo", "z_hi"):
        _per_channel(n, param, getattr(op, param))
    _outside(n, "z_shift", op.z_shift, 0, MAX_SHIFT)
    _outside(n, "z_lo", op.z_lo, -WIDE_MAX, WIDE_MAX)
    _outside(n, "z_hi", op.z_hi, -WIDE_MAX, WIDE_MAX)
    if op.lut.ndim != 2 or op.lut.shape[0] != n.shape[0] or op.lut.shape[1] == 0:
        raise GraphError(f"node {n.name}: sigmoid table of shape {list(op.lut.shape)}, expected "
                         f"{n.shape[0]} channels × entries")
    span = op.z_hi - op.z_lo + 1
    short = (span < 1) | (span > op.lut.shape[1])
    if short.any():
        (c,) = _first(short)
        raise GraphError(f"node {n.name}: z_lo {int(op.z_lo[c])}..z_hi {int(op.z_hi[c])} of channel {c} does not "
                         f"index a table of {op.lut.shape[1]} entries")
    _outside(n, "sigmoid table entry", op.lut, 0, 2**GATE_BITS)


def _gate(ir: Graph, n: Node, w: Widths) -> None:
    op: I.IntGate = n.op  # type: ignore[assignment]
    _per_channel(n, "mult", op.mult)
    if not 1 <= op.r <= MAX_SHIFT:
        raise GraphError(f"node {n.name}: rounding shift r {op.r} outside 1..{MAX_SHIFT}")
    top = int(np.abs(op.mult).max(initial=0))  # Python integers: no overflow
    worst = (2**GATE_BITS * _count_max(ir, n.inputs[1]) * top + 2 ** (op.r - 1)) >> op.r
    if worst > w.state_max:
        c = int(np.abs(op.mult).argmax())
        raise GraphError(f"node {n.name}: mult {int(op.mult[c])} (channel {c}) gives gate values up to {worst}, "
                         f"beyond the {w.state_bits}-bit state")


def _finite(n: Node, param: str, values: Any) -> None:
    flat = np.atleast_1d(np.asarray(values, dtype=np.float64)).reshape(-1)
    bad = ~np.isfinite(flat)
    if bad.any():
        raise GraphError(f"node {n.name}: {param} {flat[int(bad.argmax())]} is not a finite number")


RULES = {
    I.IntConv: _conv,
    I.IntSpike: _spike,
    I.SigmoidTable: _sigmoid,
    I.IntGate: _gate,
    I.IntOutput: lambda ir, n, w: _finite(n, "real scale", n.op.real_scale),
    I.IntAttention: lambda ir, n, w: _finite(n, "unit", n.op.unit),
}


def check_integer_graph(ir: Graph) -> None:
    """Refuse an integer graph whose parameters break the widths it declares (the rules above)."""
    w = widths(ir.integer)
    for n in ir:
        rule = RULES.get(type(n.op))
        if rule is not None:
            rule(ir, n, w)
