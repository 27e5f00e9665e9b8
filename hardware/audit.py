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

from ..errors import DesignRuleError
from .network import NetworkPlan, Proc
from .targets import Target

SYNAPSES = ("Conv", "Sparse", "DelaySparse")


def _weights(p: Proc) -> np.ndarray:
    """The stored weights (a sparse matrix's explicit entries: its zeros are no synapses)."""
    w = p.params["weights"] if p.kind != "Conv" else p.params["weight"]
    return np.asarray(w.data if hasattr(w, "data") and hasattr(w, "nnz") else w, dtype=np.int64)


def _weight_rule(p: Proc, t: Target) -> list[DesignRuleError]:
    """8-bit mantissas: mixed sign drops the lowest bit (even −256..254); one sign: 0..255 in magnitude."""
    w = _weights(p)
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
    exp = int(p.params.get("weight_exp", 0))
    if not t.weight_exp_min <= exp <= t.weight_exp_max:
        found.append(DesignRuleError(p.name, "weight_exp", f"{t.weight_exp_min}..{t.weight_exp_max}", exp))
    mbits = int(p.params.get("num_message_bits", 0))
    if mbits > t.message_bits:
        found.append(DesignRuleError(p.name, "message_bits", t.message_bits, mbits))
    return found


def _shape(p: Proc) -> tuple[int, ...]:
    if p.kind in ("Sparse", "DelaySparse"):
        return (p.params["weights"].shape[0],)
    return tuple(p.params.get("shape", (1,)))


def _synapse_bound(p: Proc, src: np.ndarray, src_shape: tuple) -> np.ndarray:
    """Per output neuron, the bound of |a_out| given per input neuron bounds ``src`` (flattened)."""
    exp = int(p.params.get("weight_exp", 0))
    if p.kind == "Conv":  # Lava layout: weight (O, kx, ky, I/g), input (X, Y, C)
        w = np.abs(np.asarray(p.params["weight"], np.int64))
        groups = int(p.params["groups"])
        x, y, c = p.params["input_shape"]
        per_channel = src.reshape(src_shape).reshape(c, -1).max(axis=1) if len(src_shape) == 3 else \
            np.full(c, int(src.max(initial=0)))
        per_out, per_in = w.shape[0] // groups, w.shape[3]
        taps = w.sum(axis=(1, 2))  # O × I/g
        rows = np.array([int((taps[o] * per_channel[(o // per_out) * per_in:(o // per_out + 1) * per_in]).sum())
                         for o in range(w.shape[0])], dtype=np.int64)
        out = rows  # per output channel; the same bound for every position
    else:
        out = np.asarray(abs(p.params["weights"]) @ src.astype(np.int64)).reshape(-1)
    return out << exp if exp >= 0 else -((-out) >> -exp)


def audit(plan: NetworkPlan, t: Target) -> list[DesignRuleError]:
    """Every broken design rule of the plan (empty: the chip can hold it as it is)."""
    found: list[DesignRuleError] = []
    incoming: dict[str, list[str]] = defaultdict(list)
    for link in plan.links:
        incoming[link.dst].append(link.src)
    bound: dict[str, np.ndarray] = {}

    def out_bound(name: str) -> np.ndarray:
        """Per neuron (or per channel, for a convolution's outputs), the static bound of |message|."""
        if name not in bound:
            p = plan.procs[name]
            if p.kind == "LIFReset":
                bound[name] = np.ones(int(np.prod(_shape(p))), np.int64)
            elif p.kind in SYNAPSES:
                (src,) = incoming[name]
                bound[name] = _synapse_bound(p, neuron_bound(src), _shape(plan.procs[src]))
            elif p.constant is not None:
                bound[name] = np.full(int(np.prod(_shape(p))), abs(p.constant), np.int64)
            elif p.kind == "GradedVec":
                bound[name] = input_bound(name)
            else:  # our embedded/host processes: the bound their operation guarantees (per channel)
                shape = _shape(p)
                per = np.broadcast_to(np.asarray(p.out_bound, np.int64).reshape(-1, *([1] * (len(shape) - 1))),
                                      shape)
                bound[name] = per.reshape(-1).copy()
        return bound[name]

    def neuron_bound(name: str) -> np.ndarray:
        return out_bound(name) if plan.procs[name].kind != "Conv" else out_bound(name)

    def constant_input(syn: str) -> np.ndarray | None:
        """The exact input a synapse from an always-on source adds every step (signed), else None."""
        (src,) = incoming[syn]
        value = plan.procs[src].constant
        p = plan.procs[syn]
        if value is None or p.kind == "Conv":
            return None
        exp = int(p.params.get("weight_exp", 0))
        out = np.asarray(p.params["weights"] @ np.full(p.params["weights"].shape[1], value, np.int64)).reshape(-1)
        return out << exp if exp >= 0 else out >> -exp

    def input_bound(name: str) -> np.ndarray:
        """Per neuron of a neuron process, the sum of its synapses' bounds; constant inputs (biases
        from always-on sources) add exactly their signed sum."""
        p = plan.procs[name]
        shape = _shape(p)
        total = np.zeros(int(np.prod(shape)), np.int64)
        constant = np.zeros_like(total)
        for s in incoming[name]:
            fixed = constant_input(s) if plan.procs[s].kind in SYNAPSES else None
            if fixed is not None:
                constant = constant + fixed
                continue
            b = out_bound(s)
            if plan.procs[s].kind == "Conv":  # per output channel, over the transposed (C, H, W) layout
                b = np.repeat(b, int(np.prod(shape[1:])))
            total = total + b
        return total + np.abs(constant)

    for p in plan.procs.values():
        if p.placement == "neuro-core" and not p.library:
            found.append(DesignRuleError(p.name, "neuro_core_process", "a lava.proc library process", p.kind))
        if p.kind in SYNAPSES:
            found += _weight_rule(p, t)
            out = int(out_bound(p.name).max(initial=0))
            if out > t.message_max:
                found.append(DesignRuleError(p.name, "synaptic_output", f"|a_out| ≤ {t.message_max:,}", out))
            sources = incoming[p.name]
            graded = [s for s in sources if plan.procs[s].kind != "LIFReset"]
            need = max((int(out_bound(s).max(initial=0)).bit_length() + 1 for s in graded), default=0)
            if graded and int(p.params.get("num_message_bits", 0)) < need:
                found.append(DesignRuleError(p.name, "message_bits", f"≥ {need} bits for its graded input",
                                             int(p.params.get("num_message_bits", 0))))
        if p.kind == "Conv":
            for key in ("groups", "stride", "padding"):
                value = int(np.max(np.atleast_1d(p.params[key])))
                if value > t.conv_param_max:
                    found.append(DesignRuleError(p.name, f"conv_{key}", f"≤ {t.conv_param_max}", value))
            kernel = max(np.shape(p.params["weight"])[1:3])
            if kernel > t.conv_param_max:
                found.append(DesignRuleError(p.name, "conv_kernel", f"≤ {t.conv_param_max}", kernel))
        if p.kind == "DelaySparse":
            delay = int(np.max(np.atleast_1d(p.params["delays"])))
            if delay > t.max_delay:
                found.append(DesignRuleError(p.name, "max_delay", t.max_delay, delay))
        if p.kind == "LIFReset":
            m = np.asarray(p.params["bias_mant"])
            e = np.asarray(p.params["bias_exp"])
            if m.min(initial=0) < -t.bias_mant_max - 1 or m.max(initial=0) > t.bias_mant_max:
                found.append(DesignRuleError(p.name, "bias_mant", f"{-t.bias_mant_max - 1}..{t.bias_mant_max}",
                                             f"{int(m.min(initial=0))}..{int(m.max(initial=0))}"))
            if e.min(initial=0) < 0 or e.max(initial=0) > t.bias_exp_max:
                found.append(DesignRuleError(p.name, "bias_exp", f"0..{t.bias_exp_max}",
                                             f"{int(e.min(initial=0))}..{int(e.max(initial=0))}"))
            vth = int(p.params["vth"])
            if not 0 <= vth <= t.vth_max:
                found.append(DesignRuleError(p.name, "vth", f"0..{t.vth_max}", vth))
            if int(p.params.get("reset_interval", 0)) != 1:
                found.append(DesignRuleError(p.name, "reset_interval", "1 (memoryless neurons)",
                                             p.params.get("reset_interval")))
            a_in = int(input_bound(p.name).max(initial=0))
            if a_in > t.lif_input_max:
                found.append(DesignRuleError(p.name, "lif_input", f"|a_in| ≤ {t.lif_input_max:,} (2^17 − 1)", a_in))
        if p.kind == "GradedVec":
            if int(p.params.get("vth", 1)) != 0:
                found.append(DesignRuleError(p.name, "graded_relay_vth", "0 (an exact relay)", p.params.get("vth")))
            v = int(out_bound(p.name).max(initial=0))
            if v > t.message_max:
                found.append(DesignRuleError(p.name, "message_bits", f"|value| ≤ {t.message_max:,}", v))
    return found


def check_network(plan: NetworkPlan, t: Target) -> None:
    """Raise the first broken design rule of the plan."""
    found = audit(plan, t)
    if found:
        raise found[0]
