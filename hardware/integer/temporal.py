"""Temporal NIR graphs as integer models in Loihi 2's CUBA formats (integer semantics v4).

A graph of neurons (LIF, CubaLIF, IF, LI, CubaLI, I) joined by linear maps (Affine, Linear, Scale,
Conv1d/2d, SumPool2d/AvgPool2d, Flatten, Delay) becomes *layers*: one CUBA neuron group each, fed
by *paths* (one synapse from a source layer or input: a sparse int8 weight matrix with a weight
exponent and an extra delay). Each layer runs ``cuba.cuba_step``; each synapse delivers one step late.

The float model's Euler step ``v ← v + k·(v_leak − v + R·x)`` (``k = dt/τ``; ``exact``:
``k = 1 − e^(−dt/τ)``) maps to ``dv = round(4096·k)`` and, with the voltage unit ``σ_i`` of neuron i
chosen so that its threshold is ``vth << 6`` with ``vth = 2^12`` (``σ_i = θ_i / 2^18``; vth halves
while the layer's static bound of |a_in| exceeds the LIF's 18-bit input), weights
``k·R·M / (64·σ_i)`` as 8-bit mantissas with one exponent per path, the bias ``k·(v_leak + R·b) / σ_i``
as ``bias_mant << bias_exp``. CubaLIF adds ``du = round(4096·k_syn) − 1`` and ``k_syn·w_in`` to the
weights. IF and I integrate (``dv = 0``, gain ``dt``). Non-spiking outputs (LI, I) take ``σ_i`` from
the calibration run (their largest |v| at 2^21). Time: a layer's value of float step t appears at
chip step ``t + offset``; a join whose paths arrive at different steps is balanced with extra
delays; a loop through k synapses takes k chip steps and is refused unless k = 1. Per sample a layer
is idle before its offset; a stream of samples runs as the chip does (``Timeline``).

What has no form here is a ``DesignRuleError`` naming the node, the rule and the value: a reset to
a non-zero ``v_reset`` or a subtractive reset, a non-positive threshold, a constant current into a
CubaLIF, a decay shorter than one 4096th of a step, an output that is not a neuron.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import nir
import numpy as np
import torch
from scipy import sparse

from ...errors import DesignRuleError, GraphError
from ...export import temporal as FT
from ..target.chips import load_target
from . import cuba

LIF_INPUT_MAX = load_target("loihi2").lif_input_max  # |a_in| (a_in << 6 into the 24-bit current)
VTH = 1 << 12  # a spiking neuron's vth: its threshold θ_i is 2^18 voltage units σ_i (vth halved while the
# static bound of its a_in exceeds LIF_INPUT_MAX, the weights with it)
LI_HEADROOM = 1 << 21  # a non-spiking neuron's largest calibrated |v| in units σ_i
WEIGHT_MAX = 127  # mantissas −128..127 (passed to Lava as 2·W at weight_exp − 1: even −256..254)
BIAS_MANT_MAX, BIAS_EXP_MAX = 4095, 7
LINEAR = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Flatten,
          nir.Delay)
NEURONS = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
PUSH_ENTRIES = 20_000_000  # dense entries of one block of a path's matrix while it is built
SYNAPSE_LIMIT = 200_000_000  # stored synapses of one path
ONE = "__one__"  # the always-on source (a LIF neuron that fires every step) of bias synapses


@dataclass
class Path:
    """One synapse into a layer: from ``source`` (a layer or an Input node), weights (int, −127..127)
    × 2^``weight_exp``, delivered ``1 + delay`` chip steps after the source sends."""

    source: str
    weights: sparse.csr_matrix  # int64 mantissas (a dense array is taken too)
    weight_exp: int
    delay: int
    float_weights: sparse.csr_matrix  # what the integers approximate (for the report)


@dataclass
class Layer:
    name: str
    kind: str
    shape: tuple[int, ...]
    du: np.ndarray
    dv: np.ndarray
    vth: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    spiking: bool
    scale: np.ndarray  # σ_i: float voltage per integer unit of v
    offset: int = 0
    paths: list[Path] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def weight_sqnr(self) -> float:
        """The worst SQNR (dB) of its synaptic weights against the float ones they stand for (the
        two bytes of a 16-bit weight summed); inf when exact."""
        groups: dict[int, tuple] = {}
        for p in self.paths:
            if p.source != ONE:
                exact, approx = groups.get(id(p.float_weights), (sparse.csr_matrix(p.float_weights), 0))
                groups[id(p.float_weights)] = (exact, approx + sparse.csr_matrix(p.weights) * 2.0**p.weight_exp)
        worst = float("inf")
        for exact, approx in groups.values():
            diff = sparse.csr_matrix(exact - approx)
            noise = float(diff.multiply(diff).sum())
            if noise:
                worst = min(worst, 10 * float(np.log10(float(exact.multiply(exact).sum()) / noise)))
        return worst

    def params(self) -> cuba.CubaParams:
        return cuba.CubaParams(du=self.du, dv=self.dv, vth=self.vth, bias_mant=self.bias_mant,
                               bias_exp=self.bias_exp)


@dataclass
class TemporalIntModel:
    inputs: dict[str, tuple[int, ...]]
    layers: dict[str, Layer]  # in an order where every forward source comes first
    outputs: dict[str, str]  # Output node → the layer it reads
    dt: float
    method: str

    @property
    def latency(self) -> int:
        """Chip steps from a float step to the last output's value of it."""
        return max(self.layers[s].offset for s in self.outputs.values())


# --- the linear maps between neurons ------------------------------------------------------------------
def _sources(graph: nir.NIRGraph, back: set[tuple[str, str]], node: str, preds: dict[str, list[str]]
             ) -> list[tuple[str, list[str], int]]:
    """The paths into ``node``: (source, linear nodes from source to node, back edges on the way)."""
    out = []
    for p in preds[node]:
        step = 1 if (p, node) in back else 0
        pnode = graph.nodes[p]
        if isinstance(pnode, (nir.Input, *NEURONS)):
            out.append((p, [], step))
        elif isinstance(pnode, LINEAR):
            out += [(s, [*chain, p], lag + step) for s, chain, lag in _sources(graph, back, p, preds)]
        else:
            raise GraphError(f"node {p}: {type(pnode).__name__} cannot feed a neuron here")
    return out


def _path_matrix(graph: nir.NIRGraph, source_shape: tuple[int, ...], chain: list[str], dt: float, name: str
                 ) -> tuple[sparse.csr_matrix, np.ndarray, int]:
    """(matrix, bias, delay steps) of a chain of linear nodes, by pushing the identity through it a
    block of source neurons at a time (a convolution's matrix is sparse: it is kept sparse)."""
    n = int(np.prod(source_shape))
    ops, delay = [], 0
    for k in chain:
        node = graph.nodes[k]
        if isinstance(node, nir.Delay):
            steps = FT._Delay(k, node, dt, "euler", "zero").steps
            if np.unique(steps).size != 1:
                raise DesignRuleError(k, "delay", "one delay per Delay node", f"{np.unique(steps).size} delays")
            delay += int(steps.reshape(-1)[0])
            continue
        ops.append(FT.STEPS[type(node)](k, node, dt, "euler", "zero"))

    def push(x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x = op.step(x, {})
        return x.reshape(x.shape[0], -1)

    zero = push(torch.zeros((1, *source_shape), dtype=torch.float64))
    out = zero.shape[1]
    block = max(1, min(n, PUSH_ENTRIES // max(1, out)))
    parts = []
    for i in range(0, n, block):
        rows = min(block, n - i)
        x = torch.zeros((rows, n), dtype=torch.float64)
        x[torch.arange(rows), torch.arange(i, i + rows)] = 1.0
        parts.append(sparse.csr_matrix((push(x.reshape(rows, *source_shape)) - zero).numpy()))
    matrix = sparse.vstack(parts).T.tocsr()
    matrix.eliminate_zeros()
    if matrix.nnz > SYNAPSE_LIMIT:
        raise DesignRuleError(name, "path_size", f"≤ {SYNAPSE_LIMIT:,} synapses per path in this version",
                              f"{matrix.nnz:,}")
    return matrix, zero.reshape(-1).numpy(), delay


def _gains(node, dt: float, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(k_v, dv, du or None, input gain) per neuron, as float arrays (du, dv not yet rounded)."""
    def k(tau):
        t = np.asarray(tau, np.float64)
        return (1 - np.exp(-dt / t)) if method == "exact" else dt / t

    r = np.asarray(node.r, np.float64)
    if isinstance(node, nir.IF | nir.I):
        return np.asarray(dt * r), np.zeros_like(r), None, np.ones_like(r)
    if isinstance(node, nir.LIF | nir.LI):
        kv = k(node.tau)
        return kv * r, kv, None, np.ones_like(r)
    kv, ks = k(node.tau_mem), k(node.tau_syn)
    return kv * r, kv, ks, ks * np.asarray(node.w_in, np.float64)


def _mantissas(target: sparse.csr_matrix, name: str, rule: str, bits: int = 8
               ) -> list[tuple[sparse.csr_matrix, int]]:
    """Mantissas (−128..127) and exponents for ``target`` (sparse: its stored entries): one synapse
    (8 bits), or two (16 bits: a high byte at exponent e + 8 and a low byte at e, which the chip
    adds in the neuron's input)."""
    target = sparse.csr_matrix(target)
    data = target.data
    top = float(np.abs(data).max(initial=0))

    def like(values: np.ndarray) -> sparse.csr_matrix:
        m = sparse.csr_matrix((values.astype(np.int64), target.indices.copy(), target.indptr.copy()),
                              shape=target.shape)
        m.eliminate_zeros()  # (in place: on copies of the index arrays, which the other byte still needs)
        return m

    if bits == 16:
        limit = WEIGHT_MAX * 256 - 128  # the high byte stays within ±127
        exp = max(int(np.ceil(np.log2(top / limit))) if top else 0, -7)
        if exp + 8 > 8:
            raise DesignRuleError(name, rule, "weights ≤ 127·2^16 voltage units per spike", f"{top:.4g}")
        w16 = np.clip(np.rint(data / 2.0**exp), -limit, limit).astype(np.int64)
        low = (w16 + 128) % 256 - 128
        return [(like((w16 - low) // 256), exp + 8), (like(low), exp)]
    if top == 0:
        return [(like(np.zeros_like(data)), 0)]
    exp = max(int(np.ceil(np.log2(top / WEIGHT_MAX))), -7)  # Lava's weight_exp −8..7 holds 2·W at exp − 1
    if exp > 8:
        raise DesignRuleError(name, rule, "weights ≤ 127·2^8 voltage units per spike", f"{top:.4g}")
    return [(like(np.clip(np.rint(data / 2.0**exp), -WEIGHT_MAX, WEIGHT_MAX)), exp)]


def _bias(target: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(target, np.float64)
    exp = np.zeros(t.shape, np.int64)
    big = np.abs(t) > BIAS_MANT_MAX
    exp[big] = np.ceil(np.log2(np.abs(t[big]) / BIAS_MANT_MAX)).astype(np.int64)
    if (exp > BIAS_EXP_MAX).any():
        raise DesignRuleError(name, "bias", f"|bias| ≤ {BIAS_MANT_MAX}·2^{BIAS_EXP_MAX} voltage units per step",
                              f"{float(np.abs(t).max()):.4g}")
    mant = np.clip(np.rint(t / 2.0**exp), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64)
    return mant, exp


def _input_bound(layer: Layer, tops: dict[str, int]) -> int:
    """The static bound of a neuron's |a_in| (every source at once at its largest value: a spike
    1, an input its largest calibration count)."""
    total = np.zeros(layer.size)
    for p in layer.paths:
        total += np.asarray(abs(p.weights).sum(axis=1)).reshape(-1) * 2.0**p.weight_exp * tops.get(p.source, 1)
    return int(np.ceil(total.max(initial=0)))


def quantize_temporal(graph: nir.NIRGraph, calibration: np.ndarray | dict, dt: float, method: str = "euler",
                      reset: str | None = None, weight_bits: int = 16) -> TemporalIntModel:
    """The integer model of a temporal graph (see the module docstring); ``calibration``: input
    sequences (B×T×shape) for the scales of non-spiking outputs; ``weight_bits``: 8 (one synapse
    per path) or 16 (two 8-bit synapses per path, high and low byte: docs/results.md measures what
    the 8-bit weights cost)."""
    if weight_bits not in (8, 16):
        raise GraphError(f"weight_bits must be 8 or 16, got {weight_bits}")
    vth = VTH
    reset = FT.graph_reset(graph, reset)
    calib = FT.run_temporal(graph, calibration, dt, method, reset, keep_states=True, record_voltages=True)
    edges = FT._edges(graph)
    FT._check_loops(graph, edges)
    order, back = FT._order(graph, edges)
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for s, d in edges:
        preds[d].append(s)
    inputs = {n: FT.input_shape(graph, n) or tuple(np.asarray(calibration).shape[2:])
              for n in FT.input_nodes(graph)}
    layers: dict[str, Layer] = {}
    shapes: dict[str, tuple[int, ...]] = dict(inputs)
    tops = {n: int(np.abs(np.asarray(calibration[n] if isinstance(calibration, dict) else calibration)).max(initial=1))
            for n in inputs}
    for name in order:
        node = graph.nodes[name]
        if not isinstance(node, NEURONS):
            continue
        shape = tuple(int(s) for s in calib.voltages[name].shape[2:])
        shapes[name] = shape
        spiking = isinstance(node, nir.LIF | nir.CubaLIF | nir.IF)
        if spiking:
            if reset == "subtract":
                raise DesignRuleError(name, "reset", "reset to 0 (Lava's LIF has no subtractive reset)", reset)
            v_reset = getattr(node, "v_reset", None)
            if v_reset is not None and np.any(np.asarray(v_reset) != 0):
                raise DesignRuleError(name, "v_reset", "0 (the chip resets v to 0)",
                                      float(np.abs(np.asarray(v_reset)).max()))
            theta = np.broadcast_to(np.asarray(node.v_threshold, np.float64), shape).reshape(-1)
            if (theta <= 0).any():
                raise DesignRuleError(name, "v_threshold", "> 0 (vth is unsigned)", float(theta.min()))
            scale = theta / (vth << cuba.ACT_SHIFT)
        else:
            top = calib.voltages[name].abs().reshape(-1, int(np.prod(shape))).max(dim=0).values.numpy()
            scale = np.where(top > 0, top, 1.0) / LI_HEADROOM
        gain_v, kv, ks, gain_in = (np.broadcast_to(a, shape).reshape(-1) if a is not None else None
                                   for a in _gains(node, dt, method))
        dv = np.rint(kv * cuba.DECAY_UNITY).astype(np.int64)
        du = np.full(dv.shape, cuba.DECAY_UNITY - 1, np.int64) if ks is None else \
            np.rint(ks * cuba.DECAY_UNITY).astype(np.int64) - cuba.DS_OFFSET
        for what, d in (("dv", dv), ("du", du)):
            if (d < 0).any() or (d > cuba.DECAY_UNITY - 1).any():
                raise DesignRuleError(name, what, "0..4095 (a decay of at least 1/4096 per step)", int(d.min()))
        paths = []  # (source, matrix, bias, delay, lag) of every path into the layer, built once
        for src, chain, lag in _sources(graph, back, name, preds):
            if src not in shapes and src != name:  # a back edge from a later layer: a loop via ≥ 2 synapses
                raise DesignRuleError(name, "loop_latency", "loops through one synapse (a loop through k "
                                      "synapses takes k chip steps, the float graph one)", f"a loop via {src}")
            matrix, bias, delay = _path_matrix(graph, shapes[src], chain, dt, name)
            if matrix.shape[0] != int(np.prod(shape)):
                raise GraphError(f"node {name}: a path from {src} brings {matrix.shape[0]} values for "
                                 f"{int(np.prod(shape))} neurons")
            paths.append((src, matrix, bias, delay, lag))
        for k in range(VTH.bit_length()):  # shrink vth (and so the weights) until a_in's bound fits
            vth_k = vth >> k
            scale_k = scale * (1 << k)
            layer = Layer(name, type(node).__name__, shape, du, dv, vth_k if spiking else (1 << 17) - 1,
                          np.zeros(dv.shape, np.int64), np.zeros(dv.shape, np.int64), spiking, scale_k)
            bias_total = np.zeros(layer.size)
            lags = []
            for src, matrix, bias, delay, lag in paths:
                unit = gain_v * gain_in / (scale_k * (1 << cuba.ACT_SHIFT))  # a_in per unit of input
                target = sparse.diags(unit) @ matrix
                for w, e in _mantissas(target, name, "weight_exp", weight_bits):
                    layer.paths.append(Path(src, w, e, delay + lag, target))
                    lags.append(lag)
                if not np.any(bias != 0):
                    continue
                if ks is None and lag == 0:  # a constant input to v from the first step: the neurons' bias
                    bias_total += bias
                else:  # into a current, or from the step after (a back edge): synapses from an always-on source
                    target = sparse.csr_matrix((unit * bias)[:, None])
                    for w, e in _mantissas(target, name, "bias_weight_exp", weight_bits):
                        layer.paths.append(Path(ONE, w, e, delay + lag, target))
                        lags.append(-1)
            leak = 0.0 if isinstance(node, nir.IF | nir.I) else \
                np.broadcast_to(np.asarray(node.v_leak, np.float64), shape).reshape(-1)
            layer.bias_mant, layer.bias_exp = _bias((kv * leak + gain_v * bias_total) / scale_k, name)
            if _input_bound(layer, tops) <= LIF_INPUT_MAX:
                break
        else:
            raise DesignRuleError(name, "lif_input", f"|a_in| ≤ {LIF_INPUT_MAX:,}", _input_bound(layer, tops))
        # time: one chip step after its latest forward source; every path delayed to match (a Delay's
        # steps and a back edge's float step become DelaySparse steps)
        layer.offset = max((layers[p.source].offset + 1 if p.source in layers else 1
                            for p, lag in zip(layer.paths, lags) if lag == 0), default=1)
        for p in layer.paths:
            if p.source == ONE:  # its value of float step 0 must arrive at the layer's chip step 0 + offset
                p.delay = layer.offset - 1 + p.delay
                continue
            if p.source in layers or p.source in inputs:
                o = layers[p.source].offset if p.source in layers else 0
            elif p.source == name:
                o = layer.offset
            else:
                raise DesignRuleError(name, "loop_latency", "loops through one synapse (a loop through k "
                                      "synapses takes k chip steps, the float graph one)", f"a loop via {p.source}")
            extra = layer.offset - o - 1 + p.delay
            if extra < 0:
                raise DesignRuleError(name, "loop_latency", "loops through one synapse (a loop through k "
                                      "synapses takes k chip steps, the float graph one)", f"a loop via {p.source}")
            p.delay = extra
        layers[name] = layer
    outputs = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Output):
            (src,) = preds[name] or [None]
            if src not in layers:
                raise DesignRuleError(name, "output", "an Output read from a neuron layer", src)
            outputs[name] = src
    return TemporalIntModel(inputs, layers, outputs, float(dt), method)


# --- running it: the int64 reference ------------------------------------------------------------------
def integer_inputs(model: TemporalIntModel, inputs) -> dict[str, np.ndarray]:
    """Each input's B×T×(shape) sequences as B×T×neurons int64; a wrong input name, shape or a
    fractional count is one ``GraphError`` naming the input."""
    if not isinstance(inputs, dict):
        (name,) = model.inputs
        inputs = {name: inputs}
    if set(inputs) != set(model.inputs):
        raise GraphError(f"inputs {sorted(inputs)} do not match the graph's {sorted(model.inputs)}")
    out = {}
    for name, x in inputs.items():
        a = np.asarray(x, np.float64)
        shape = tuple(model.inputs[name])
        if a.ndim < 2 or int(np.prod(a.shape[2:])) != int(np.prod(shape)) or \
                (a.ndim > 3 and tuple(a.shape[2:]) != shape):
            raise GraphError(f"input {name}: expected B×T×{'×'.join(map(str, shape))}, got "
                             f"{'×'.join(map(str, a.shape))}")
        if not np.array_equal(a, np.rint(a)):
            raise GraphError(f"input {name}: the integer model takes integer spike counts (graded input "
                             "comes later)")
        out[name] = a.astype(np.int64).reshape(a.shape[0], a.shape[1], -1)
    return out


@dataclass
class IntRun:
    """Every layer's spikes (or, non-spiking, voltages in its integer units) per float step, aligned
    with the float reference (its chip latency removed); ``outputs`` per Output node."""

    values: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # per layer: u and v, chip steps

    def aligned_states(self, model: TemporalIntModel) -> dict[str, dict[str, np.ndarray]]:
        """u and v of every layer at every float step (B×T×neurons)."""
        steps = next(iter(self.values.values())).shape[1]
        return {n: {k: a[:, model.layers[n].offset:model.layers[n].offset + steps] for k, a in st.items()}
                for n, st in self.states.items()}


def lookback(model: TemporalIntModel) -> int:
    """The most chip steps any path reads before its source's first value of a sample (a back
    edge's step, a Delay's steps): a stream of samples needs at least this gap between them, or a
    sample's first steps would receive the previous one's last."""
    deepest = 0
    for layer in model.layers.values():
        for p in layer.paths:
            o = model.layers[p.source].offset if p.source in model.layers else 0
            deepest = max(deepest, p.delay - (layer.offset - o - 1))
    return deepest


@dataclass
class Timeline:
    """When a batch runs on the chip. Per sample (``period`` None): one row per sample, each layer
    idle until its offset (its values before the sample's first step are 0, as in the float graph).
    A stream (``period`` P ≥ T): one row, sample s's inputs at chip steps s·P … s·P + T − 1, each
    layer reset at s·P + offset (``LIFReset`` with ``reset_interval = P``) and running between,
    from rest, as the chip does; the always-on source of bias synapses on for the first T steps of
    every period."""

    samples: int
    steps: int
    period: int | None
    latency: int

    @property
    def rows(self) -> int:
        return self.samples if self.period is None else 1

    @property
    def total(self) -> int:
        return self.steps + self.latency if self.period is None else self.samples * self.period + self.latency

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """B×T×n sample inputs as rows × total chip steps × n."""
        out = np.zeros((self.rows, self.total, x.shape[2]), np.int64)
        if self.period is None:
            out[:, :self.steps] = x
        else:
            for s in range(self.samples):
                out[0, s * self.period:s * self.period + self.steps] = x[s]
        return out

    def one(self) -> np.ndarray:
        tau = np.arange(self.total)
        on = tau < self.steps if self.period is None else tau % self.period < self.steps
        return np.repeat(on.astype(np.int64)[None, :, None], self.rows, axis=0)

    def idle(self, tau: int, offset: int) -> bool:
        return self.period is None and tau < offset

    def reset(self, tau: int, offset: int) -> bool:
        if self.period is None:
            return tau == offset
        return tau >= offset and (tau - offset) % self.period == 0

    def window(self, a: np.ndarray, offset: int) -> np.ndarray:
        """rows × total × n chip values → B × T × n, each sample's steps of a layer at ``offset``."""
        if self.period is None:
            return a[:, offset:offset + self.steps]
        return np.stack([a[0, s * self.period + offset:s * self.period + offset + self.steps]
                         for s in range(self.samples)])


def _timeline(model: TemporalIntModel, xs: dict[str, np.ndarray], period: int | None) -> Timeline:
    B, steps = next(iter(xs.values())).shape[:2]
    if period is not None and period < steps + lookback(model):
        raise GraphError(f"a stream's period ({period}) must hold the sample's {steps} steps and the "
                         f"{lookback(model)}-step gap its delayed and recurrent paths read back")
    return Timeline(B, steps, period, model.latency)


def collect(model: TemporalIntModel, line: Timeline, chip: dict[str, np.ndarray],
                states: dict[str, dict[str, np.ndarray]]) -> IntRun:
    values = {name: line.window(chip[name], layer.offset).reshape(line.samples, line.steps, *layer.shape)
              for name, layer in model.layers.items()}
    return IntRun(values, {o: values[src] for o, src in model.outputs.items()}, states)


def run_reference(model: TemporalIntModel, inputs, period: int | None = None) -> IntRun:
    """The int64 oracle: every layer's CUBA neurons and every synapse, step by chip step; per
    sample, or (``period``) the samples streamed through one network (``Timeline``)."""
    xs = integer_inputs(model, inputs)
    line = _timeline(model, xs, period)
    R, total = line.rows, line.total
    history: dict[str, np.ndarray] = {name: line.inputs(x) for name, x in xs.items()}
    history[ONE] = line.one()
    for layer in model.layers.values():
        history[layer.name] = np.zeros((R, total, layer.size), np.int64)
    voltages = {n: np.zeros((R, total, layer.size), np.int64) for n, layer in model.layers.items()}
    currents = {n: np.zeros((R, total, layer.size), np.int64) for n, layer in model.layers.items()}
    state = {n: (np.zeros((R, layer.size), np.int64), np.zeros((R, layer.size), np.int64))
             for n, layer in model.layers.items()}
    for tau in range(total):
        for name, layer in model.layers.items():
            if line.idle(tau, layer.offset):
                continue
            a_in = np.zeros((R, layer.size), np.int64)
            for p in layer.paths:
                t_src = tau - 1 - p.delay
                if t_src >= 0:
                    a_in += cuba.synapse(p.weights, p.weight_exp, history[p.source][:, t_src].T).T
            u, v = state[name]
            if line.reset(tau, layer.offset):  # a sample's first step reaches the layer: LIFReset zeroes u and v
                u, v = np.zeros_like(u), np.zeros_like(v)
            u, v, s = cuba.cuba_step(u, v, a_in, layer.params())
            state[name] = (u, v)
            history[name][:, tau] = s
            voltages[name][:, tau] = v
            currents[name][:, tau] = u
    chip = {n: (history if layer.spiking else voltages)[n] for n, layer in model.layers.items()}
    return collect(model, line, chip, {n: {"u": currents[n], "v": voltages[n]} for n in model.layers})


# --- the fast simulator: the same integers in float64 torch tensors ------------------------------------
def _operator(weights) -> torch.Tensor:
    """A path's weights for the product: sparse (CSR, W itself) where few are non-zero (convolutions),
    else dense Wᵀ."""
    m = sparse.csr_matrix(weights, dtype=np.float64)
    if m.shape[0] * m.shape[1] > 4096 and m.nnz < 0.1 * m.shape[0] * m.shape[1]:
        with warnings.catch_warnings():  # torch calls its CSR support beta; the products here are exact
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)),
                                           torch.from_numpy(m.indices.astype(np.int64)),
                                           torch.from_numpy(m.data), size=m.shape, dtype=torch.float64)
    return torch.from_numpy(m.toarray().T.copy())


def run_fast(model: TemporalIntModel, inputs, period: int | None = None) -> IntRun:
    """The integer model in float64 on torch (every value an exact integer below 2^53: states are
    24-bit, decay products below 2^36, synaptic sums below 2^40): batched matrix products instead of
    the reference's integer loops, bit for bit the same values (``period``: as ``run_reference``)."""
    ints = integer_inputs(model, inputs)
    line = _timeline(model, ints, period)
    B, total = line.rows, line.total
    xs = {k: torch.from_numpy(line.inputs(v)).double() for k, v in ints.items()}
    unity, top = float(cuba.DECAY_UNITY), float(1 << (cuba.STATE_BITS - 1))
    prepared = {}
    for name, layer in model.layers.items():
        prepared[name] = {
            "keep_u": torch.from_numpy(cuba.DECAY_UNITY - (np.broadcast_to(layer.du, (layer.size,)) + cuba.DS_OFFSET)
                                       ).double(),
            "keep_v": torch.from_numpy(cuba.DECAY_UNITY - (np.broadcast_to(layer.dv, (layer.size,)) + cuba.DM_OFFSET)
                                       ).double(),
            "bias": torch.from_numpy(np.broadcast_to(layer.params().bias, (layer.size,)).astype(np.float64)),
            "paths": [(p.source, _operator(p.weights), 2.0**p.weight_exp, p.delay) for p in layer.paths],
        }
    sent = {name: x.transpose(0, 1).contiguous() for name, x in xs.items()}
    sent[ONE] = torch.from_numpy(np.ascontiguousarray(line.one().transpose(1, 0, 2))).double()
    out: dict[str, torch.Tensor] = {}
    kept = {}
    for name, layer in model.layers.items():
        sent[name] = torch.zeros((total, B, layer.size), dtype=torch.float64)
        out[name] = torch.zeros((total, B, layer.size), dtype=torch.float64)
        kept[name] = {k: torch.zeros((total, B, layer.size), dtype=torch.float64) for k in ("u", "v")}
    u = {n: torch.zeros((B, layer.size), dtype=torch.float64) for n, layer in model.layers.items()}
    v = {n: torch.zeros((B, layer.size), dtype=torch.float64) for n, layer in model.layers.items()}
    thresholds = {n: float(layer.vth << cuba.ACT_SHIFT) for n, layer in model.layers.items()}
    for tau in range(total):
        for name, layer in model.layers.items():
            if line.idle(tau, layer.offset):
                continue
            p = prepared[name]
            a_in = torch.zeros((B, layer.size), dtype=torch.float64)
            for source, w_t, factor, delay in p["paths"]:
                if tau - 1 - delay >= 0:
                    x = sent[source][tau - 1 - delay]
                    acc = torch.sparse.mm(w_t, x.T).T if w_t.layout != torch.strided else x @ w_t
                    a_in += acc * factor if factor >= 1 else torch.floor(acc * factor)
            if line.reset(tau, layer.offset):
                u[name].zero_()
                v[name].zero_()
            cu = torch.trunc(u[name] * p["keep_u"] / unity) + a_in * 64.0
            cu = torch.where(cu > top, cu - 2 * top, cu)
            cu = torch.where(cu <= -top, cu + 2 * top, cu)
            cv = torch.clamp(torch.trunc(v[name] * p["keep_v"] / unity) + cu + p["bias"], -top + 1, top - 1)
            s = cv > thresholds[name]
            u[name], v[name] = cu, torch.where(s, torch.zeros_like(cv), cv)
            kept[name]["u"][tau], kept[name]["v"][tau] = u[name], v[name]
            sent[name][tau] = s.double()
            out[name][tau] = sent[name][tau] if layer.spiking else v[name]
    chip = {n: t.transpose(0, 1).round().long().numpy() for n, t in out.items()}
    states = {n: {k: t.transpose(0, 1).round().long().numpy() for k, t in st.items()} for n, st in kept.items()}
    return collect(model, line, chip, states)


def stream_period(model: TemporalIntModel, inputs, longest: int | None = None) -> int:
    """The shortest period that streams these samples through one network exactly: ``T + gap`` with
    the gap from ``lookback`` up (doubling), checked with the fast simulator against the samples
    run one by one. A layer that keeps firing after its sample ends (its own loop, a bias) and
    feeds a delayed or recurrent path can need a longer gap; ``DesignRuleError`` when none up to
    ``longest`` extra steps (default: 4·T) is exact."""
    xs = integer_inputs(model, inputs)
    steps = next(iter(xs.values())).shape[1]
    gap, longest = lookback(model), 4 * steps if longest is None else longest
    alone = run_fast(model, xs).values
    while True:
        streamed = run_fast(model, xs, period=steps + gap).values
        if all(np.array_equal(alone[n], streamed[n]) for n in model.layers):
            return steps + gap
        if gap >= longest:
            bad = next(n for n in model.layers if not np.array_equal(alone[n], streamed[n]))
            raise DesignRuleError(bad, "stream_gap", f"a sample's activity dies out within {longest} steps "
                                  "(it reaches the next sample through a delayed or recurrent path)",
                                  f"still different with a {gap}-step gap")
        gap = min(longest, max(1, 2 * gap))
