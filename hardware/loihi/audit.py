"""The design-rule audit of a network plan: every process's parameters against the chip's formats.

Lava's CPU models do not enforce Loihi's formats (they cast into int16/int32: a bias
mantissa of 40000 silently becomes −25536), so a network can be bit-exact on
``Loihi2SimCfg`` and still illegal for the chip. This audit reads only the plan (the
processes' constructor parameters and connections) and the target, recomputes the static
bound of every message and every LIF input from the weights themselves, and reports each
broken rule as a ``DesignRuleError`` naming the process, the rule, the limit and the value.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ...errors import DesignRuleError
from ..target.chips import Target
from .plan import (
    ConvSpec,
    CubaLIFSpec,
    DelaySparseSpec,
    GradedVecSpec,
    LIFResetSpec,
    NetworkPlan,
    SparseSpec,
    Spec,
    SynapseSpec,
)


def _weight_rule(p: SynapseSpec, t: Target) -> list[DesignRuleError]:
    """8-bit mantissas: mixed sign drops the lowest bit (even −256..254); one sign: 0..255 in magnitude."""
    w = p.stored()
    if w.size == 0:
        w = np.zeros(1, np.int64)
    lo, hi = int(w.min(initial=0)), int(w.max(initial=0))
    found = []
    bits = 2 ** t.weight_bits
    if lo < 0 < hi:
        if lo < -bits or hi > bits - 2 or (w % 2).any():
            found.append(DesignRuleError(p.name, "weight_bits", f"even mantissas −{bits}..{bits - 2} (mixed sign)",
                                         f"{lo}..{hi}{' with odd values' if (w % 2).any() else ''}"))
    elif max(abs(lo), abs(hi)) > bits - 1:
        found.append(DesignRuleError(p.name, "weight_bits", f"|w| ≤ {bits - 1}", max(abs(lo), abs(hi))))
    if not t.weight_exp_min <= int(p.weight_exp) <= t.weight_exp_max:
        found.append(DesignRuleError(p.name, "weight_exp", f"{t.weight_exp_min}..{t.weight_exp_max}", p.weight_exp))
    if int(p.num_message_bits) > t.message_bits:
        found.append(DesignRuleError(p.name, "message_bits", t.message_bits, p.num_message_bits))
    return found


def _synapse_bound(p: SynapseSpec, src: np.ndarray, src_shape: tuple) -> np.ndarray:
    """Per output neuron, the bound of |a_out| given per input neuron bounds ``src`` (flattened)."""
    exp = int(p.weight_exp)
    if isinstance(p, ConvSpec):  # Lava layout: weight (O, kx, ky, I/g), input (X, Y, C)
        w = np.abs(np.asarray(p.weight, np.int64))
        x, y, c = p.input_shape
        per_channel = src.reshape(src_shape).reshape(c, -1).max(axis=1) if len(src_shape) == 3 else \
            np.full(c, int(src.max(initial=0)))
        per_out, per_in = w.shape[0] // p.groups, w.shape[3]
        taps = w.sum(axis=(1, 2))  # O × I/g
        out = np.array([int((taps[o] * per_channel[(o // per_out) * per_in:(o // per_out + 1) * per_in]).sum())
                        for o in range(w.shape[0])], dtype=np.int64)  # per output channel, every position alike
    else:
        out = np.asarray(abs(p.weights) @ src.astype(np.int64)).reshape(-1)  # type: ignore[attr-defined]
    return out << exp if exp >= 0 else -((-out) >> -exp)


class _Bounds:
    """Static bounds recomputed from the processes' own parameters (independent of the lowering)."""

    def __init__(self, plan: NetworkPlan) -> None:
        self.plan = plan
        self.incoming: dict[str, list[str]] = defaultdict(list)
        for link in plan.links:
            self.incoming[link.dst].append(link.src)
        self.cache: dict[str, np.ndarray] = {}

    def out(self, name: str) -> np.ndarray:
        """Per neuron (or per channel, for a convolution's outputs), the static bound of |message|."""
        if name not in self.cache:
            p = self.plan.procs[name]
            if isinstance(p, LIFResetSpec):  # binary spikes (CubaLIFSpec too)
                self.cache[name] = np.ones(p.size, np.int64)
            elif isinstance(p, SynapseSpec):
                (src,) = self.incoming[name]
                s = self.plan.procs[src]
                self.cache[name] = _synapse_bound(p, self.out(src), tuple(getattr(s, "shape", (s.size,))))
            elif p.constant is not None:
                self.cache[name] = np.full(p.size, abs(p.constant), np.int64)
            elif isinstance(p, GradedVecSpec):
                self.cache[name] = self.input(name)
            else:  # our embedded/host processes: the bound their operation guarantees (per channel)
                shape = tuple(getattr(p, "shape", (1,)))
                per = np.broadcast_to(np.asarray(p.out_bound, np.int64).reshape(-1, *([1] * (len(shape) - 1))),
                                      shape)
                self.cache[name] = per.reshape(-1).copy()
        return self.cache[name]

    def constant_input(self, syn: str) -> np.ndarray | None:
        """The exact input a synapse from an always-on source adds every step (signed), else None."""
        (src,) = self.incoming[syn]
        value = self.plan.procs[src].constant
        p = self.plan.procs[syn]
        if value is None or not isinstance(p, SparseSpec):
            return None
        exp = int(p.weight_exp)
        out = np.asarray(p.weights @ np.full(p.weights.shape[1], value, np.int64)).reshape(-1)
        return out << exp if exp >= 0 else out >> -exp

    def input(self, name: str) -> np.ndarray:
        """Per neuron of a neuron process, the sum of its synapses' bounds; constant inputs (biases
        from always-on sources) add exactly their signed sum."""
        p = self.plan.procs[name]
        total = np.zeros(p.size, np.int64)
        constant = np.zeros_like(total)
        for s in self.incoming[name]:
            fixed = self.constant_input(s) if isinstance(self.plan.procs[s], SynapseSpec) else None
            if fixed is not None:
                constant = constant + fixed
                continue
            b = self.out(s)
            if isinstance(self.plan.procs[s], ConvSpec):  # per output channel, over the (C, H, W) layout
                b = np.repeat(b, int(np.prod(p.shape[1:])))  # type: ignore[attr-defined]
            total = total + b
        return total + np.abs(constant)


# --- one rule function per spec type ---------------------------------------------------------------
def _synapse_rules(p: SynapseSpec, t: Target, b: _Bounds) -> list[DesignRuleError]:
    found = _weight_rule(p, t)
    out = int(b.out(p.name).max(initial=0))
    if out > t.message_max:
        found.append(DesignRuleError(p.name, "synaptic_output", f"|a_out| ≤ {t.message_max:,}", out))
    graded = [s for s in b.incoming[p.name] if int(b.out(s).max(initial=0)) > 1]  # not binary spikes
    need = max((int(b.out(s).max(initial=0)).bit_length() + 1 for s in graded), default=0)
    if graded and int(p.num_message_bits) < need:
        found.append(DesignRuleError(p.name, "message_bits", f"≥ {need} bits for its graded input",
                                     p.num_message_bits))
    return found


def _conv_rules(p: ConvSpec, t: Target, b: _Bounds) -> list[DesignRuleError]:
    found = _synapse_rules(p, t, b)
    for key in ("groups", "stride", "padding"):
        value = int(np.max(np.atleast_1d(getattr(p, key))))
        if value > t.conv_param_max:
            found.append(DesignRuleError(p.name, f"conv_{key}", f"≤ {t.conv_param_max}", value))
    kernel = max(np.shape(p.weight)[1:3])
    if kernel > t.conv_param_max:
        found.append(DesignRuleError(p.name, "conv_kernel", f"≤ {t.conv_param_max}", kernel))
    return found


def _delay_rules(p: DelaySparseSpec, t: Target, b: _Bounds) -> list[DesignRuleError]:
    found = _synapse_rules(p, t, b)
    delay = int(np.max(np.atleast_1d(p.delays)))
    if delay > t.max_delay:
        found.append(DesignRuleError(p.name, "max_delay", t.max_delay, delay))
    return found


def _neuron_rules(p: LIFResetSpec | CubaLIFSpec, t: Target, b: _Bounds) -> list[DesignRuleError]:
    """Bias, threshold and input formats, the same for every LIF process."""
    found = []
    m, e = np.asarray(p.bias_mant), np.asarray(p.bias_exp)
    if m.min(initial=0) < -t.bias_mant_max - 1 or m.max(initial=0) > t.bias_mant_max:
        found.append(DesignRuleError(p.name, "bias_mant", f"{-t.bias_mant_max - 1}..{t.bias_mant_max}",
                                     f"{int(m.min(initial=0))}..{int(m.max(initial=0))}"))
    if e.min(initial=0) < 0 or e.max(initial=0) > t.bias_exp_max:
        found.append(DesignRuleError(p.name, "bias_exp", f"0..{t.bias_exp_max}",
                                     f"{int(e.min(initial=0))}..{int(e.max(initial=0))}"))
    if not 0 <= int(p.vth) <= t.vth_max:
        found.append(DesignRuleError(p.name, "vth", f"0..{t.vth_max}", p.vth))
    a_in = int(b.input(p.name).max(initial=0))
    if a_in > t.lif_input_max:
        found.append(DesignRuleError(p.name, "lif_input", f"|a_in| ≤ {t.lif_input_max:,} (2^17 − 1)", a_in))
    return found


def _lif_rules(p: LIFResetSpec, t: Target, b: _Bounds) -> list[DesignRuleError]:
    found = _neuron_rules(p, t, b)
    if int(p.reset_interval) != 1:
        found.append(DesignRuleError(p.name, "reset_interval", "1 (memoryless neurons)", p.reset_interval))
    return found


def _cuba_rules(p: CubaLIFSpec, t: Target, b: _Bounds) -> list[DesignRuleError]:
    """Neurons with state: 12-bit decays, a reset interval within a period the chip counts."""
    found = _neuron_rules(p, t, b)
    for key in ("du", "dv"):
        value = int(np.max(np.atleast_1d(getattr(p, key))))
        if not 0 <= value <= t.decay_max or np.atleast_1d(getattr(p, key)).size != 1:
            found.append(DesignRuleError(p.name, key, f"one value 0..{t.decay_max} per process ({t.decay_bits} bits)",
                                         value))
    if int(p.reset_interval) < 1:
        found.append(DesignRuleError(p.name, "reset_interval", "≥ 1", p.reset_interval))
    return found


def _graded_rules(p: GradedVecSpec, t: Target, b: _Bounds) -> list[DesignRuleError]:
    found = []
    if int(p.vth) != 0:
        found.append(DesignRuleError(p.name, "graded_relay_vth", "0 (an exact relay)", p.vth))
    v = int(b.out(p.name).max(initial=0))
    if v > t.message_max:
        found.append(DesignRuleError(p.name, "message_bits", f"|value| ≤ {t.message_max:,}", v))
    return found


def _off_core_rules(p: Spec, t: Target, b: _Bounds) -> list[DesignRuleError]:
    if p.placement == "neuro-core":
        return [DesignRuleError(p.name, "neuro_core_process", "a lava.proc library process", p.lava_class)]
    return []


RULES = {SparseSpec: _synapse_rules, DelaySparseSpec: _delay_rules, ConvSpec: _conv_rules,
         LIFResetSpec: _lif_rules, CubaLIFSpec: _cuba_rules, GradedVecSpec: _graded_rules}


def audit(plan: NetworkPlan, t: Target) -> list[DesignRuleError]:
    """Every broken design rule of the plan (empty: the chip can hold it as it is)."""
    found: list[DesignRuleError] = []
    bounds = _Bounds(plan)
    for p in plan.procs.values():
        found += RULES.get(type(p), _off_core_rules)(p, t, bounds)
    return found


def check_network(plan: NetworkPlan, t: Target) -> None:
    """Raise the first broken design rule of the plan."""
    found = audit(plan, t)
    if found:
        raise found[0]
