"""Temporal NIR graphs as integer models in Loihi 2's CUBA formats (integer semantics v4, first cut).

A graph of neurons (LIF, CubaLIF, IF, LI, CubaLI, I) joined by linear maps (Affine, Linear, Scale,
Conv1d/2d, SumPool2d/AvgPool2d, Flatten, Delay) becomes *layers*: one CUBA neuron group each, fed
by *paths* (one synapse from a source layer or input: an int8 weight matrix with a weight exponent
and an extra delay). Each layer runs ``cuba.cuba_step``; each synapse delivers one step late.

The float model's Euler step ``v ← v + k·(v_leak − v + R·x)`` (``k = dt/τ``; ``exact``:
``k = 1 − e^(−dt/τ)``) maps to ``dv = round(4096·k)`` and, with the voltage unit ``σ_i`` of neuron i
chosen so that its threshold is ``vth << 6`` with ``vth = 2^12`` (``σ_i = θ_i / 2^18``), weights
``k·R·M / (64·σ_i)`` as 8-bit mantissas with one exponent per path, the bias ``k·(v_leak + R·b) / σ_i``
as ``bias_mant << bias_exp``. CubaLIF adds ``du = round(4096·k_syn) − 1`` and ``k_syn·w_in`` to the
weights. IF and I integrate (``dv = 0``, gain ``dt``). Non-spiking outputs (LI, I) take ``σ_i`` from
the calibration run (their largest |v| at 2^21). Time: a layer's value of float step t appears at
chip step ``t + offset``; a join whose paths arrive at different steps is balanced with extra
delays; a loop through k synapses takes k chip steps and is refused unless k = 1.

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

from ...errors import DesignRuleError, GraphError
from ...export import temporal as FT
from . import cuba

VTH = 1 << 12  # every spiking neuron's vth: its threshold θ_i is 2^18 voltage units σ_i
LI_HEADROOM = 1 << 21  # a non-spiking neuron's largest calibrated |v| in units σ_i
WEIGHT_MAX = 127  # mantissas −128..127 (passed to Lava as 2·W at weight_exp − 1: even −256..254)
BIAS_MANT_MAX, BIAS_EXP_MAX = 4095, 7
LINEAR = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Flatten,
          nir.Delay)
NEURONS = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
DENSE_LIMIT = 50_000_000  # entries of one path's matrix (this first cut builds dense matrices)
ONE = "__one__"  # the always-on source (a LIF neuron that fires every step) of bias synapses


@dataclass
class Path:
    """One synapse into a layer: from ``source`` (a layer or an Input node), weights (int, −127..127)
    × 2^``weight_exp``, delivered ``1 + delay`` chip steps after the source sends."""

    source: str
    weights: np.ndarray
    weight_exp: int
    delay: int
    float_weights: np.ndarray  # what the integers approximate (for the report)


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
        groups: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for p in self.paths:
            if p.source != ONE:
                exact, approx = groups.get(id(p.float_weights), (p.float_weights, 0.0))
                groups[id(p.float_weights)] = (exact, approx + p.weights * 2.0**p.weight_exp)
        worst = float("inf")
        for exact, approx in groups.values():
            noise = float(((exact - approx) ** 2).sum())
            if noise:
                worst = min(worst, 10 * float(np.log10(float((exact**2).sum()) / noise)))
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
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """(matrix, bias, delay steps) of a chain of linear nodes, by pushing the identity through it."""
    n = int(np.prod(source_shape))
    x = torch.eye(n, dtype=torch.float64).reshape(n, *source_shape)
    zero = torch.zeros((1, *source_shape), dtype=torch.float64)
    delay = 0
    for k in chain:
        node = graph.nodes[k]
        if isinstance(node, nir.Delay):
            steps = FT._Delay(k, node, dt, "euler", "zero").steps
            if np.unique(steps).size != 1:
                raise DesignRuleError(k, "delay", "one delay per Delay node", f"{np.unique(steps).size} delays")
            delay += int(steps.reshape(-1)[0])
            continue
        op = FT.STEPS[type(node)](k, node, dt, "euler", "zero")
        x, zero = op.step(x, {}), op.step(zero, {})
    out = int(np.prod(x.shape[1:]))
    if out * n > DENSE_LIMIT:
        raise DesignRuleError(name, "path_size", f"≤ {DENSE_LIMIT:,} synapses per path in this version",
                              f"{out * n:,}")
    bias = zero.reshape(-1).numpy()
    return (x.reshape(n, -1) - zero.reshape(1, -1)).T.numpy(), bias, delay


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


def _mantissas(target: np.ndarray, name: str, rule: str, bits: int = 8) -> list[tuple[np.ndarray, int]]:
    """Mantissas (−128..127) and exponents for ``target``: one synapse (8 bits), or two (16 bits: a
    high byte at exponent e + 8 and a low byte at e, which the chip adds in the neuron's input)."""
    if bits == 16:
        top = float(np.abs(target).max(initial=0))
        limit = WEIGHT_MAX * 256 - 128  # the high byte stays within ±127
        exp = max(int(np.ceil(np.log2(top / limit))) if top else 0, -7)
        if exp + 8 > 8:
            raise DesignRuleError(name, rule, "weights ≤ 127·2^16 voltage units per spike", f"{top:.4g}")
        w16 = np.clip(np.rint(target / 2.0**exp), -limit, limit).astype(np.int64)
        low = (w16 + 128) % 256 - 128
        return [((w16 - low) // 256, exp + 8), (low, exp)]
    top = float(np.abs(target).max(initial=0))
    if top == 0:
        return [(np.zeros(target.shape, np.int64), 0)]
    exp = int(np.ceil(np.log2(top / WEIGHT_MAX)))
    exp = max(exp, -7)  # Lava's weight_exp −8..7 holds 2·W at exp − 1
    if exp > 8:
        raise DesignRuleError(name, rule, "weights ≤ 127·2^8 voltage units per spike", f"{top:.4g}")
    w = np.clip(np.rint(target / 2.0**exp), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int64)
    return [(w, exp)]


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
        layer = Layer(name, type(node).__name__, shape, du, dv, vth if spiking else (1 << 17) - 1,
                      np.zeros(dv.shape, np.int64), np.zeros(dv.shape, np.int64), spiking, scale)
        bias_total = np.zeros(layer.size)
        lags = []
        for src, chain, lag in _sources(graph, back, name, preds):
            if src not in shapes and src != name:  # a back edge from a later layer: a loop through ≥ 2 synapses
                raise DesignRuleError(name, "loop_latency", "loops through one synapse (a loop through k "
                                      "synapses takes k chip steps, the float graph one)", f"a loop via {src}")
            matrix, bias, delay = _path_matrix(graph, shapes[src], chain, dt, name)
            if matrix.shape[0] != layer.size:
                raise GraphError(f"node {name}: a path from {src} brings {matrix.shape[0]} values for "
                                 f"{layer.size} neurons")
            unit = gain_v * gain_in / (scale * (1 << cuba.ACT_SHIFT))  # a_in per unit of input, per neuron
            target = unit[:, None] * matrix
            for w, e in _mantissas(target, name, "weight_exp", weight_bits):
                layer.paths.append(Path(src, w, e, delay + lag, target))
                lags.append(lag)
            if not np.any(bias != 0):
                continue
            if ks is None and lag == 0:  # a constant input to v from the first step: the neurons' own bias
                bias_total += bias
            else:  # into a current, or only from the step after (a back edge): synapses from an always-on neuron
                target = (unit * bias)[:, None]
                for w, e in _mantissas(target, name, "bias_weight_exp", weight_bits):
                    layer.paths.append(Path(ONE, w, e, delay + lag, target))
                    lags.append(-1)
        leak = 0.0 if isinstance(node, nir.IF | nir.I) else \
            np.broadcast_to(np.asarray(node.v_leak, np.float64), shape).reshape(-1)
        layer.bias_mant, layer.bias_exp = _bias((kv * leak + gain_v * bias_total) / scale, name)
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
    if not isinstance(inputs, dict):
        (name,) = model.inputs
        inputs = {name: inputs}
    out = {}
    for name, x in inputs.items():
        a = np.asarray(x, np.float64)
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


def run_reference(model: TemporalIntModel, inputs) -> IntRun:
    """The int64 oracle: every layer's CUBA neurons and every synapse, step by chip step."""
    xs = integer_inputs(model, inputs)
    B, T = next(iter(xs.values())).shape[:2]
    total = T + model.latency
    history: dict[str, np.ndarray] = {}
    for name, x in xs.items():
        pad = np.zeros((B, total, x.shape[2]), np.int64)
        pad[:, :T] = x
        history[name] = pad
    history[ONE] = np.ones((B, total, 1), np.int64)
    for layer in model.layers.values():
        history[layer.name] = np.zeros((B, total, layer.size), np.int64)
    voltages = {n: np.zeros((B, total, layer.size), np.int64) for n, layer in model.layers.items()}
    currents = {n: np.zeros((B, total, layer.size), np.int64) for n, layer in model.layers.items()}
    state = {n: (np.zeros((B, layer.size), np.int64), np.zeros((B, layer.size), np.int64))
             for n, layer in model.layers.items()}
    for tau in range(total):
        for name, layer in model.layers.items():
            a_in = np.zeros((B, layer.size), np.int64)
            for p in layer.paths:
                t_src = tau - 1 - p.delay
                if t_src >= 0:
                    a_in += cuba.synapse(p.weights, p.weight_exp, history[p.source][:, t_src].T).T
            u, v = state[name]
            if tau == layer.offset:  # the sample's first step reaches the layer: LIFReset zeroes u and v
                u, v = np.zeros_like(u), np.zeros_like(v)
            u, v, s = cuba.cuba_step(u, v, a_in, layer.params())
            state[name] = (u, v)
            history[name][:, tau] = s
            voltages[name][:, tau] = v
            currents[name][:, tau] = u
    values = {}
    for name, layer in model.layers.items():
        src = history if layer.spiking else voltages
        values[name] = src[name][:, layer.offset:layer.offset + T].reshape(B, T, *layer.shape)
    return IntRun(values, {o: values[src] for o, src in model.outputs.items()},
                  {n: {"u": currents[n], "v": voltages[n]} for n in model.layers})


# --- the fast simulator: the same integers in float64 torch tensors ------------------------------------
def _operator(weights: np.ndarray) -> torch.Tensor:
    """A path's weights for the product: sparse (CSR, W itself) where few are non-zero (convolutions),
    else dense Wᵀ."""
    w = torch.from_numpy(weights.astype(np.float64))
    if weights.size > 4096 and np.count_nonzero(weights) < 0.1 * weights.size:
        with warnings.catch_warnings():  # torch calls its CSR support beta; the products here are exact
            warnings.simplefilter("ignore", UserWarning)
            return w.to_sparse_csr()
    return w.T.contiguous()


def run_fast(model: TemporalIntModel, inputs) -> IntRun:
    """The integer model in float64 on torch (every value an exact integer below 2^53: states are
    24-bit, decay products below 2^36, synaptic sums below 2^40): batched matrix products instead of
    the reference's integer loops, bit for bit the same values."""
    xs = {k: torch.from_numpy(v).double() for k, v in integer_inputs(model, inputs).items()}
    B, T = next(iter(xs.values())).shape[:2]
    total = T + model.latency
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
    sent = {name: torch.zeros((total, B, x.shape[2]), dtype=torch.float64) for name, x in xs.items()}
    for name, x in xs.items():
        sent[name][:T] = x.transpose(0, 1)
    sent[ONE] = torch.ones((total, B, 1), dtype=torch.float64)
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
            p = prepared[name]
            a_in = torch.zeros((B, layer.size), dtype=torch.float64)
            for source, w_t, factor, delay in p["paths"]:
                if tau - 1 - delay >= 0:
                    x = sent[source][tau - 1 - delay]
                    acc = torch.sparse.mm(w_t, x.T).T if w_t.layout != torch.strided else x @ w_t
                    a_in += acc * factor if factor >= 1 else torch.floor(acc * factor)
            if tau == layer.offset:
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
    values = {}
    for name, layer in model.layers.items():
        values[name] = out[name][layer.offset:layer.offset + T].transpose(0, 1).round().long().numpy() \
            .reshape(B, T, *layer.shape)
    states = {n: {k: t.transpose(0, 1).round().long().numpy() for k, t in st.items()} for n, st in kept.items()}
    return IntRun(values, {o: values[src] for o, src in model.outputs.items()}, states)
