"""Float IR → integer IR, following docs/integer_semantics.md (v1).

Residual streams (sets of values joined by additions) share one power-of-two
shift per channel; each is chosen as fine as the target's weights allow, then
lowered until static worst-case bounds fit the target: every membrane (bias
included) its neuron state, every synaptic sum a LIF neuron reads (bias
excluded: Loihi adds the bias inside the neuron) the LIF input, every other
synaptic sum a message. Widths and formats come from the target (``targets``);
a spike whose thresholds no LIF process can hold is a ``DesignRuleError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import DesignRuleError, GraphError, LensNetDeployError
from ...export import ops as O
from ...export.ir import Graph, Node
from ...normalization import INPUT_MEAN, INPUT_STD, PIXEL_MAGNITUDE, PIXEL_OFFSET
from ..target.chips import Target, load_target
from ..target.loihi import NO_SPREAD_LIMIT, clamped_thresholds, pre_shift_layout, threshold_spread_shift
from . import ops as I
from .bounds import conv_synaptic, gate_value
from .semantics import GATE_BITS, GATE_RANGE, GATE_SHIFT, GATE_TABLE_BITS, VERSION, WIDE_MAX

MIN_SHIFT = -8  # a stream coarser than 2^8 per step means the model cannot be represented
# A weight within this fraction of a step of a half-point rounds up, whatever its float noise: a
# snapped model's weights sit exactly on the half-points of every coarser grid the shift search
# tries, and float32 storage (±1e-5 of a step at 127) must not decide which way they go (and
# so which shift wins). Elsewhere it moves a rounding by at most 6e-5 of a step.
HALF_POINT_SLACK = 2.0**-14



class QuantizationError(LensNetDeployError):
    """No choice of shifts keeps a layer within its integer width."""


@dataclass
class QuantReport:
    """Per membrane: the static bound against the state limit, the stream's shifts and, for
    convolutions, the weights' SQNR and how many weights the int range clipped."""

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

    for n in g.of(O.Add):
        for i in n.inputs:
            parent[find(i)] = find(n.name)
    for n in g.of(O.Conv, O.Add, O.Gate):
        find(n.name)
    return {k: find(k) for k in parent}


def _fold_input_normalisation(g: Graph) -> None:
    """The first convolution reads centred pixels ``p − PIXEL_OFFSET``: fold ``(p/255 − mean)/std``
    into it (float64). The mean is ``PIXEL_OFFSET/255`` (``normalization.py``), so the bias term
    vanishes and zero padding is the same pixel in both models: the input is exact."""
    first = [n for n in g.of(O.Conv) if n.inputs == ["input"]]
    if len(first) != 1:
        raise GraphError("an integer model needs exactly one convolution reading the input")
    op: O.Conv = first[0].op  # type: ignore[assignment]
    mean = np.asarray(INPUT_MEAN, np.float64)
    std = np.asarray(INPUT_STD, np.float64)
    offset = np.asarray(PIXEL_OFFSET, np.float64)
    w = op.weight
    bias = op.bias if op.bias is not None else np.zeros(w.shape[0])
    op.weight = w / (255.0 * std)[None, :, None, None]
    op.bias = bias + (w * ((offset / 255.0 - mean) / std)[None, :, None, None]).sum(axis=(1, 2, 3))


def _count_max(g: Graph, name: str) -> int:
    n = g.nodes[name]
    while isinstance(n.op, O.MaxPool | O.Upsample):
        n = g.nodes[n.inputs[0]]
    return int(n.op.D)  # type: ignore[attr-defined]


def _input_max(g: Graph, node_name: str) -> int:
    src = g.nodes[node_name].inputs[0]
    if isinstance(g.nodes[src].op, O.Input):
        return PIXEL_MAGNITUDE
    if isinstance(g.nodes[src].op, O.Spike | O.MaxPool | O.Upsample):
        return _count_max(g, src)
    raise QuantizationError(f"convolution {node_name} reads a {g.nodes[src].kind} value; only spikes or pixels "
                            f"are supported")


class _Quantizer:
    def __init__(self, graph: Graph, target: Target, per_channel: bool) -> None:
        self.g = graph.copy()
        _fold_input_normalisation(self.g)
        self.t = target
        self.per_channel = per_channel
        self.groups = _groups(self.g)
        self.ideal = {n.name: self._ideal_shift(n.op.weight) for n in self.g.of(O.Conv)}  # type: ignore
        # an all-zero output channel has no grid to respect: it must not coarsen its stream or set the
        # layer's exponent (a model whose weights already sit on the integer grid has such channels)
        self.live = {n.name: np.abs(n.op.weight).reshape(n.shape[0], -1).max(axis=1) > 0  # type: ignore
                     for n in self.g.of(O.Conv)}
        self.shift: dict[str, np.ndarray] = {}  # per stream root
        self.syn_bound: dict[str, np.ndarray] = {}  # per member: bound of the synaptic sum (no bias)
        self.bias_sum: dict[str, np.ndarray] = {}  # per member: the biases its membrane adds to that sum

    def stream_biases(self, names: list[str], s: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in names:
            n = self.g.nodes[name]
            if isinstance(n.op, O.Conv):
                out[name] = self.bias(name, s)
            elif isinstance(n.op, O.Add):
                out[name] = sum(out[i] for i in n.inputs)
            else:
                out[name] = np.zeros(n.shape[0], dtype=np.int64)
        return out

    def check_lif(self, name: str, op: I.IntSpike) -> None:
        """The thresholds of a spike on a membrane must fit LIF processes (``loihi.lif_groups``)."""
        src = self.g.nodes[name].inputs[0]
        if src not in self.syn_bound:
            return  # a spike on a wide value runs on an embedded core
        if pre_shift_layout(op.theta, self.bias_sum[src], self.syn_bound[src], self.t) is None:
            T = clamped_thresholds(op.theta - self.bias_sum[src][:, None], self.syn_bound[src])
            worst = int(np.abs(T).max())
            raise DesignRuleError(name, "lif_threshold", f"vth 0..{self.t.vth_max} with 13-bit offsets",
                                  f"a threshold of {worst:,} on the synaptic input")

    def _ideal_shift(self, weight: np.ndarray) -> np.ndarray:
        """Per output channel, the largest t with max|rint(W·2^t)| ≤ the weight maximum (0 for a
        zero channel). The rounded integer is what must fit: a weight snapped to ±127 that float
        storage leaves a hair above (127.0000001) keeps its grid instead of losing a bit."""
        wmax = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1)
        t = np.zeros(weight.shape[0], dtype=np.int64)
        ok = wmax > 0
        t[ok] = np.floor(np.log2((self.t.weight_max + 0.5) / wmax[ok])).astype(np.int64)
        t[ok & (np.floor(wmax * np.exp2(t) + (0.5 + HALF_POINT_SLACK)) > self.t.weight_max)] -= 1  # 127.5 → 128
        return t

    def exponent(self, name: str, shift: np.ndarray) -> int:
        """Per-layer weight exponent e ≥ 0: the weights sit at shift − e ≤ their ideal shift."""
        return int(max(0, int(np.max(shift - self.ideal[name], where=self.live[name], initial=0))))

    def weights(self, name: str, shift: np.ndarray) -> np.ndarray:
        op: O.Conv = self.g.nodes[name].op  # type: ignore[assignment]
        at = shift - self.exponent(name, shift)
        w = np.floor(op.weight * np.exp2(at)[:, None, None, None] + (0.5 + HALF_POINT_SLACK)).astype(np.int64)
        return np.clip(w, -self.t.weight_max, self.t.weight_max)

    def bias(self, name: str, shift: np.ndarray) -> np.ndarray:
        op: O.Conv = self.g.nodes[name].op  # type: ignore[assignment]
        bias = op.bias if op.bias is not None else np.zeros(op.weight.shape[0])
        return np.rint(bias * np.exp2(shift)).astype(np.int64)

    def gate_mult(self, op: O.Gate, shift: np.ndarray) -> np.ndarray:
        return np.rint(op.scale * np.exp2(shift + GATE_SHIFT - GATE_BITS)).astype(np.int64)

    def member_bounds(self, names: list[str], s: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per member: the bound of its membrane (bias included) and of its synaptic sum (bias excluded)."""
        full: dict[str, np.ndarray] = {}
        syn: dict[str, np.ndarray] = {}
        for name in names:
            n = self.g.nodes[name]
            if isinstance(n.op, O.Conv):
                e = self.exponent(name, s)
                w = self.weights(name, s)
                syn[name] = conv_synaptic(w, _input_max(self.g, name), e)
                full[name] = syn[name] + np.abs(self.bias(name, s))
            elif isinstance(n.op, O.Add):
                full[name] = sum(full[i] for i in n.inputs)
                syn[name] = sum(syn[i] for i in n.inputs)
            elif isinstance(n.op, O.Gate):
                full[name] = syn[name] = gate_value(2**GATE_BITS, _count_max(self.g, n.inputs[1]),
                                                    self.gate_mult(n.op, s), GATE_SHIFT)
        return full, syn

    def lif_shift_max(self, names: list[str]) -> int:
        """The finest shift a spike's membrane may take: its thresholds must fit one LIF process
        after the largest pre-shift (``loihi.pre_shift_layout``)."""
        D = self.spike_D(names)
        return threshold_spread_shift(D, self.t) + self.t.pre_shift_max if D > 1 else NO_SPREAD_LIMIT

    def spike_D(self, names: list[str]) -> int:
        return max((c.op.D for m in names for c in self.g.consumers(m) if isinstance(c.op, O.Spike)), default=1)

    def lif_read(self, name: str) -> bool:
        return any(isinstance(c.op, O.Spike) for c in self.g.consumers(name))

    def synaptic_limit(self, name: str) -> int:
        """Every sum is a message (a spike's membrane reaches its LIF neurons whole, or through a
        relay and a pre-shift, ``loihi.pre_shift_layout``)."""
        return self.t.message_max

    def pre_shift(self, src: str, D: int) -> int:
        """k of the LIF neurons that read ``floor(m / 2^k)`` of membrane ``src``: the smallest that
        brings its bound within a LIF input and its thresholds within one process's spread."""
        if src not in self.syn_bound:
            return 0
        full = int((self.syn_bound[src] + np.abs(self.bias_sum[src])).max(initial=0))
        k = 0
        while -(-full // 2**k) > self.t.lif_input_max:
            k += 1
        return max(k, int(self.node_shift(src).max()) - threshold_spread_shift(D, self.t), 0)

    def lif_input_bound(self, name: str, full: np.ndarray, syn: np.ndarray) -> np.ndarray:
        return full if self.lif_read(name) else syn

    def choose_shifts(self, strict: bool) -> QuantReport:
        """1) per channel, the finest shift any member convolution's weights allow (members with larger
        weights reach it through their own exponent); 2) lower shifts until every bound fits the state."""
        members: dict[str, list[str]] = {}
        order = [n.name for n in self.g]
        for name, root in self.groups.items():
            members.setdefault(root, []).append(name)
        report = QuantReport()
        limit = self.t.state_max
        for root, names in members.items():
            names = [m for m in order if m in set(names)]
            convs = [m for m in names if isinstance(self.g.nodes[m].op, O.Conv)]
            s = np.max(np.stack([self.ideal[c] for c in convs]), axis=0) if convs else np.zeros(
                self.g.nodes[root].shape[0], dtype=np.int64)
            s = np.minimum(s, self.lif_shift_max(names))
            for c in convs:  # a member with smaller weights reaches the shift through its exponent (≤ the target's)
                s = np.where(self.live[c], np.minimum(s, self.ideal[c] + self.t.weight_exp_max + 1), s)
            if not self.per_channel:
                s = np.full_like(s, s.min())
            syn_limits = {m: self.synaptic_limit(m) for m in names}
            for _ in range(40):
                bounds, syn = self.member_bounds(names, s)
                over_state = np.stack([bounds[m] > limit for m in names]).any(axis=0)
                over_syn = np.stack([self.lif_input_bound(m, bounds[m], syn[m]) > syn_limits[m]
                                     for m in names]).any(axis=0)
                over = over_state | over_syn
                if not over.any():
                    break
                if strict:
                    ratios = {m: max(bounds[m].max() / limit,
                                     self.lif_input_bound(m, bounds[m], syn[m]).max() / syn_limits[m]) for m in names}
                    layer = max(ratios, key=ratios.__getitem__)
                    what = (f"worst case {int(bounds[layer].max()):,} exceeds {self.t.state_bits}-bit state"
                            if bounds[layer].max() > limit else
                            f"synaptic input {int(self.lif_input_bound(layer, bounds[layer], syn[layer]).max()):,} "
                            f"exceeds {syn_limits[layer]:,}")
                    raise QuantizationError(f"{layer}: {what} at the precision its weights allow (strict)")
                s = s - (over.astype(np.int64) if self.per_channel else 1)
                if (s < MIN_SHIFT).any():
                    raise QuantizationError(f"stream {root}: no shift keeps it within {self.t.state_bits} bits")
            self.shift[root] = s
            self.syn_bound.update(syn)
            self.bias_sum.update(self.stream_biases(names, s))
            for m in names:
                report.rows.append({"layer": m, "op": self.g.nodes[m].kind, "bound": int(bounds[m].max()),
                                    "limit": limit, "bits": self.t.state_bits, "synaptic_bound": int(syn[m].max()),
                                    "synaptic_limit": syn_limits[m], "min_shift": int(s.min()),
                                    "max_shift": int(s.max())})
        return report

    def node_shift(self, name: str) -> np.ndarray:
        return self.shift[self.groups[name]]

    def unit(self, name: str) -> np.ndarray:
        """Real value of one integer step of ``name``'s output, per channel."""
        n = self.g.nodes[name]
        if isinstance(n.op, O.Conv | O.Add | O.Gate):
            return np.exp2(-self.node_shift(name).astype(np.float64))
        if isinstance(n.op, O.AvgPool):
            src = self.g.nodes[n.inputs[0]]
            return np.exp2(-self.node_shift(src.name).astype(np.float64)) / (src.shape[1] * src.shape[2])
        if isinstance(n.op, O.Attention):
            return np.full(n.shape[0], float(n.op.scale))
        raise QuantizationError(f"a spike reads a {n.kind} value ({name}); no integer threshold rule for it")

    def thresholds(self, src: str, D: int) -> np.ndarray:
        """θ[c, k] = ceil((k − 0.5) / unit_c) − 1: ``m > θ`` ⟺ ``m·unit ≥ k − 0.5`` (ties round up).

        Up, not down: ``θ + 1 = (k − 0.5)·2^s`` is then a multiple of 2^(s−1), so a pre-shifted
        LIF (which needs θ ≡ −1 mod 2^k) holds it exactly whenever k < s; ties-down thresholds
        sit one above and had to move by up to 2^(k−1) (docs/qat.md)."""
        unit = self.unit(src)
        ks = np.arange(1, D + 1, dtype=np.float64) - 0.5
        theta = np.ceil(ks[None, :] / unit[:, None]) - 1
        if np.abs(theta).max() > WIDE_MAX:
            raise QuantizationError(f"threshold of the spike after {src} does not fit 64 bits")
        theta = theta.astype(np.int64)
        k = self.pre_shift(src, D)
        if k:  # on the grid θ ≡ −1 (mod 2^k), the nearest point, so that LIFs reading m >> k decide exactly
            theta = (((theta + 1 + (1 << (k - 1))) >> k) << k) - 1
        return theta

    def sigmoid_table(self, n: Node) -> I.SigmoidTable:
        """``g = LUT_c[clamp(z >> t_c, lo_c, hi_c) − lo_c]``: a 12-bit sigmoid sampled every
        2^−8 (bin centres) over |z| ≤ 16, where it saturates; ``t_c = max(0, s_c − 8)``."""
        s = self.node_shift(n.inputs[0]).astype(np.int64)
        t = np.maximum(0, s - GATE_TABLE_BITS)
        step = np.exp2((t - s).astype(np.float64))  # real value of one table index
        hi = np.ceil(GATE_RANGE / step).astype(np.int64)
        lo = -hi
        span = int((hi - lo).max()) + 1
        tables = np.zeros((n.shape[0], span), dtype=np.int64)
        for c in range(n.shape[0]):
            j = np.arange(lo[c], hi[c] + 1, dtype=np.float64)
            centre = (j + (0.5 if t[c] > 0 else 0.0)) * step[c]
            tables[c, : len(j)] = np.floor(1.0 / (1.0 + np.exp(-centre)) * 2**GATE_BITS + 0.5).astype(np.int64)
        return I.SigmoidTable(z_shift=t, z_lo=lo, z_hi=hi, lut=tables)

    def integer_op(self, n: Node, report_rows: dict[str, dict]) -> O.Op:
        op = n.op
        if isinstance(op, O.Conv):
            s = self.node_shift(n.name)
            w_int = self.weights(n.name, s)
            exp = self.exponent(n.name, s)
            exact = op.weight * np.exp2((s - exp).astype(np.float64))[:, None, None, None]
            report_rows[n.name].update(weight_bits=self.t.weight_bits, sqnr_db=_sqnr(op.weight, w_int / np.exp2(
                (s - exp).astype(np.float64))[:, None, None, None]),
                clipped=int((np.abs(np.rint(exact)) > self.t.weight_max).sum()))
            return I.IntConv(w_int=w_int, b_int=self.bias(n.name, s), exp=exp, shift=s, stride=op.stride,
                             padding=op.padding, groups=op.groups)
        if isinstance(op, O.Spike):
            spike = I.IntSpike(D=op.D, theta=self.thresholds(n.inputs[0], op.D), sources=op.sources)
            self.check_lif(n.name, spike)
            return spike
        if isinstance(op, O.AvgPool):
            src = self.g.nodes[n.inputs[0]]
            bound = src.shape[1] * src.shape[2] * report_rows[src.name]["bound"]
            if bound > WIDE_MAX:
                raise QuantizationError(f"{n.name}: the pooled sum (≤ {bound}) exceeds 64 bits")
            return I.SumPool()
        if isinstance(op, O.Attention):
            return I.IntAttention(heads=op.heads, unit=float(op.scale))
        if isinstance(op, O.Sigmoid):
            return self.sigmoid_table(n)
        if isinstance(op, O.Gate):
            return I.IntGate(mult=self.gate_mult(op, self.node_shift(n.name)), r=GATE_SHIFT)
        if isinstance(op, O.Bilinear):
            return I.IntBilinear(factor=op.factor)
        if isinstance(op, O.Output):
            up = self.g.nodes[n.inputs[0]]
            f = up.op.factor  # type: ignore[attr-defined]
            s = self.node_shift(up.inputs[0]).astype(np.float64)
            return I.IntOutput(real_scale=np.exp2(-s) / (2 * f) ** 2)
        if isinstance(op, O.Input | O.Add | O.MaxPool | O.Upsample):
            return op.replace()
        raise GraphError(f"{n.kind} node {n.name} has no integer form (fold it first)")


def _sqnr(weight: np.ndarray, approx: np.ndarray) -> float | None:
    noise = float(((weight - approx) ** 2).sum())
    signal = float((weight**2).sum())
    return None if noise == 0 or signal == 0 else 10 * np.log10(signal / noise)


def quantize_ir(graph: Graph, target: str | Target = "loihi2", per_channel: bool = True,
                strict: bool = False) -> tuple[Graph, QuantReport]:
    """Integer version of a folded float IR graph (see the module docstring) and its bound report.

    ``per_channel=False`` gives every stream one shift (the coarsest channel's),
    for targets without per-channel thresholds. ``strict`` fails, naming the
    layer, when the state bound forces a stream coarser than its weights allow.
    """
    if graph.integer is not None:
        raise LensNetDeployError("graph is already quantized")
    for n in graph.of(O.Conv):
        for key in ("weight", "bias"):
            value = getattr(n.op, key)
            if value is not None and not np.isfinite(value).all():
                raise LensNetDeployError(f"layer {n.name}: {key}s are not finite (NaN or Inf)")
    tgt = load_target(target)
    q = _Quantizer(graph, tgt, per_channel)
    report = q.choose_shifts(strict)
    rows = {r["layer"]: r for r in report.rows}
    out = Graph(meta={k: v for k, v in graph.meta.items() if k != "integer"})
    for n in q.g:
        out.add(n.name, q.integer_op(n, rows), n.inputs, n.shape)
    out.meta["integer"] = {"semantics": VERSION, "weight_bits": tgt.weight_bits, "state_bits": tgt.state_bits,
                           "target": tgt.name}
    return out, report
