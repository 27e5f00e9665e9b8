"""Float IR → integer IR, following docs/integer_semantics.md (draft v0).

Residual streams (sets of values joined by additions) share one power-of-two
shift per channel; each is chosen as fine as the int8 weights allow, then
lowered until a static worst-case bound of every membrane fits 24 bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..datasets import IMAGENET_MEAN, IMAGENET_STD
from ..errors import LensNetDeployError
from ..export.ir import Graph

WEIGHT_MAX = 127
STATE_BITS = 24
STATE_MAX = 2 ** (STATE_BITS - 1) - 1
WIDE_MAX = 2**62  # global average pooling sums run on an embedded core or the host, in 64-bit words
GATE_BITS = 12
GATE_SHIFT = 16
PIXEL_MAX = 255


class QuantizationError(LensNetDeployError):
    """No choice of shifts keeps a layer within its integer width."""


@dataclass
class QuantReport:
    rows: list[dict] = field(default_factory=list)

    def worst(self) -> dict:
        return max(self.rows, key=lambda r: r["bound"] / r["limit"])


def _groups(g: Graph) -> dict[str, str]:
    """Union-find over additions: every add and its operands share a stream."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for n in g.of_op("add"):
        for i in n.inputs:
            parent[find(i)] = find(n.name)
    for n in g:
        if n.op in ("conv", "add", "gate"):
            find(n.name)
    return {k: find(k) for k in parent}


PIXEL_OFFSET = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)  # (124, 116, 103)


def _fold_input_normalisation(g: Graph) -> None:
    """The first convolution reads centred pixels ``p − round(255·mean)``: fold
    ``(p/255 − mean)/std`` into it (float64). Zero padding of centred pixels
    equals padding the normalised image with ``(round(255·mean) − 255·mean)/(255·std)``
    (≤ 0.006) instead of 0: the only inexact step of the input."""
    (first,) = [n for n in g if n.op == "conv" and n.inputs == ["input"]]
    mean = np.asarray(IMAGENET_MEAN, np.float64)
    std = np.asarray(IMAGENET_STD, np.float64)
    offset = np.asarray(PIXEL_OFFSET, np.float64)
    w = first.attrs["weight"]
    bias = first.attrs["bias"] if first.attrs["bias"] is not None else np.zeros(w.shape[0])
    first.attrs["weight"] = w / (255.0 * std)[None, :, None, None]
    first.attrs["bias"] = bias + (w * ((offset / 255.0 - mean) / std)[None, :, None, None]).sum(axis=(1, 2, 3))


def _input_max(g: Graph, node_name: str) -> int:
    src = g.nodes[node_name].inputs[0]
    if src == "input":
        return max(max(o, PIXEL_MAX - o) for o in PIXEL_OFFSET)
    op = g.nodes[src].op
    if op in ("spike", "maxpool", "upsample"):
        return _count_max(g, src)
    raise QuantizationError(f"convolution {node_name} reads a {op} value; only spikes or pixels are supported")


def _count_max(g: Graph, name: str) -> int:
    n = g.nodes[name]
    while n.op in ("maxpool", "upsample"):
        n = g.nodes[n.inputs[0]]
    return int(n.attrs["D"])


def quantize_ir(graph: Graph, per_channel: bool = True, strict: bool = False) -> tuple[Graph, QuantReport]:
    """Integer version of a folded IR graph (see the module docstring) and its bound report.

    ``per_channel=False`` gives every stream one shift (the coarsest channel's),
    for targets without per-channel thresholds. ``strict`` fails, naming the
    layer, when the 24-bit bound forces a stream coarser than its weights allow.
    """
    g = graph.copy()
    _fold_input_normalisation(g)
    groups = _groups(g)
    members: dict[str, list[str]] = {}
    for name, root in groups.items():
        members.setdefault(root, []).append(name)
    channels = {root: g.nodes[root].shape[0] for root in members}
    # 1) per channel, the finest shift any member conv's int8 weights allow; members with
    #    larger weights reach it through their own per-layer exponent (a left shift)
    for n in g.of_op("conv"):
        n.attrs["ideal_shift"] = _ideal_shift(n.attrs["weight"])
    shift: dict[str, np.ndarray] = {}
    for root, names in members.items():
        convs = [g.nodes[m] for m in names if g.nodes[m].op == "conv"]
        shift[root] = np.max(np.stack([c.attrs["ideal_shift"] for c in convs]), axis=0) if convs else np.zeros(
            channels[root], dtype=np.int64)
        if not per_channel:
            shift[root] = np.full_like(shift[root], shift[root].min())
    # 2) lower shifts until every member's worst case fits 24 bits
    report = QuantReport()
    order = [n.name for n in g]
    for root, names in members.items():
        for _ in range(40):
            bounds = _member_bounds(g, [m for m in order if m in set(names)], shift[root])
            worst = np.max(np.stack(list(bounds.values())), axis=0)
            over = worst > STATE_MAX
            if not over.any():
                break
            if strict:
                layer = max(bounds, key=lambda m: bounds[m].max())
                raise QuantizationError(f"{layer}: worst case {int(bounds[layer].max()):,} exceeds {STATE_BITS}-bit "
                                        f"state at the precision its weights allow (strict)")
            shift[root] = shift[root] - (over.astype(np.int64) if per_channel else 1)
            if (shift[root] < -8).any():
                raise QuantizationError(f"stream {root}: no shift keeps it within {STATE_BITS} bits")
        for m in names:
            report.rows.append({"layer": m, "op": g.nodes[m].op, "bound": int(bounds[m].max()), "limit": STATE_MAX,
                                "min_shift": int(shift[root].min()), "max_shift": int(shift[root].max())})
    # 3) integer parameters
    for n in g:
        if n.op in ("conv", "add", "gate"):
            n.attrs["shift"] = shift[groups[n.name]]
        if n.op == "conv":
            s = n.attrs["shift"]
            n.attrs["exp"] = _exponent(n.attrs["ideal_shift"], s)
            n.attrs["w_int"] = _weights(n.attrs["weight"], s - n.attrs["exp"])
            bias = n.attrs["bias"] if n.attrs["bias"] is not None else np.zeros(n.shape[0])
            n.attrs["b_int"] = np.rint(bias * np.exp2(s)).astype(np.int64)
        elif n.op == "gate":
            mult = n.attrs["scale"] * np.exp2(n.attrs["shift"] + GATE_SHIFT - GATE_BITS)
            n.attrs["mult"] = np.rint(mult).astype(np.int64)
            n.attrs["r"] = GATE_SHIFT
    for n in g:
        if n.op == "spike":
            n.attrs["theta"] = _thresholds(g, n.inputs[0], n.attrs["D"], n.shape[0])
        elif n.op == "sigmoid":
            _sigmoid_table(g, n)
        elif n.op == "avgpool":
            src = g.nodes[n.inputs[0]]
            hw = src.shape[1] * src.shape[2]
            bound = hw * _stream_bound(g, src.name, report)
            if bound > WIDE_MAX:
                raise QuantizationError(f"{n.name}: the pooled sum (≤ {bound}) exceeds 64 bits")
            n.attrs["shift"] = src.attrs["shift"]
            n.attrs["hw"] = hw
        elif n.op == "output":
            src = g.nodes[n.inputs[0]]
            conv = g.nodes[src.inputs[0]]
            f = src.attrs["factor"]
            n.attrs["real_scale"] = np.exp2(-conv.attrs["shift"].astype(np.float64)) / (2 * f) ** 2
    g.meta["quantized"] = {"semantics": "docs/integer_semantics.md v0", "weight_bits": 8, "state_bits": STATE_BITS}
    return g, report


def _stream_bound(g: Graph, name: str, report: QuantReport) -> int:
    for row in report.rows:
        if row["layer"] == name:
            return row["bound"]
    raise KeyError(name)


def _member_bounds(g: Graph, names: list[str], s: np.ndarray) -> dict[str, np.ndarray]:
    bounds: dict[str, np.ndarray] = {}
    for name in names:
        n = g.nodes[name]
        if n.op == "conv":
            e = _exponent(n.attrs["ideal_shift"], s)
            w = _weights(n.attrs["weight"], s - e)
            bias = n.attrs["bias"] if n.attrs["bias"] is not None else np.zeros(n.shape[0])
            bounds[name] = np.abs(w).reshape(n.shape[0], -1).sum(axis=1) * _input_max(g, name) * 2**e + np.abs(
                np.rint(bias * np.exp2(s)))
        elif n.op == "add":
            bounds[name] = sum(bounds[i] for i in n.inputs)
        elif n.op == "gate":
            mult = np.rint(n.attrs["scale"] * np.exp2(s + GATE_SHIFT - GATE_BITS))
            top = (2**GATE_BITS) * _count_max(g, n.inputs[1]) * np.abs(mult)
            bounds[name] = np.floor((top + 2 ** (GATE_SHIFT - 1)) / 2**GATE_SHIFT)
    return bounds


def _ideal_shift(weight: np.ndarray) -> np.ndarray:
    """Per output channel, the largest t with max|W·2^t| ≤ 127 (0 for an all-zero channel)."""
    wmax = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1)
    t = np.zeros(weight.shape[0], dtype=np.int64)
    ok = wmax > 0
    t[ok] = np.floor(np.log2(WEIGHT_MAX / wmax[ok])).astype(np.int64)
    return t


def _exponent(ideal: np.ndarray, shift: np.ndarray) -> int:
    """Per-layer weight exponent e ≥ 0: the weights sit at shift − e ≤ their ideal shift."""
    return int(max(0, int(np.max(shift - ideal))))


def _weights(weight: np.ndarray, at: np.ndarray) -> np.ndarray:
    w = np.rint(weight * np.exp2(at)[:, None, None, None]).astype(np.int64)
    return np.clip(w, -WEIGHT_MAX, WEIGHT_MAX)


def _unit(g: Graph, name: str) -> np.ndarray:
    """Real value of one integer step of ``name``'s output, per channel."""
    n = g.nodes[name]
    if n.op in ("conv", "add", "gate"):
        return np.exp2(-n.attrs["shift"].astype(np.float64))
    if n.op == "avgpool":
        return np.exp2(-n.attrs["shift"].astype(np.float64)) / n.attrs["hw"]
    if n.op == "attention":
        return np.full(n.shape[0], float(n.attrs["scale"]))
    raise QuantizationError(f"a spike reads a {n.op} value ({name}); no integer threshold rule for it")


def _thresholds(g: Graph, src: str, D: int, channels: int) -> np.ndarray:
    """θ[c, k] = floor((k − 0.5) / unit_c): ``m > θ`` ⟺ ``m·unit > k − 0.5`` (ties round down)."""
    unit = _unit(g, src)
    ks = np.arange(1, D + 1, dtype=np.float64) - 0.5
    theta = np.floor(ks[None, :] / unit[:, None])
    if np.abs(theta).max() > 2**62:
        raise QuantizationError(f"threshold of the spike after {src} does not fit 64 bits")
    return theta.astype(np.int64)


GATE_TABLE_BITS = 8  # table resolution: 2^-8 in real units of z


def _sigmoid_table(g: Graph, n) -> None:
    """``g = LUT_c[clamp(z >> t_c, lo_c, hi_c) − lo_c]``: a 12-bit sigmoid sampled every
    2^−8 (bin centres) over |z| ≤ 16, where it saturates; ``t_c = max(0, s_c − 8)``."""
    src = g.nodes[n.inputs[0]]
    s = src.attrs["shift"].astype(np.int64)
    t = np.maximum(0, s - GATE_TABLE_BITS)
    step = np.exp2((t - s).astype(np.float64))  # real value of one table index
    hi = np.ceil(16.0 / step).astype(np.int64)
    lo = -hi
    span = int((hi - lo).max()) + 1
    tables = np.zeros((n.shape[0], span), dtype=np.int64)
    for c in range(n.shape[0]):
        j = np.arange(lo[c], hi[c] + 1, dtype=np.float64)
        centre = (j + (0.5 if t[c] > 0 else 0.0)) * step[c]
        tables[c, : len(j)] = np.floor(1.0 / (1.0 + np.exp(-centre)) * 2**GATE_BITS + 0.5).astype(np.int64)
    n.attrs.update(z_shift=t, z_lo=lo, z_hi=hi, lut=tables)
