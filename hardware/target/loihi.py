"""Loihi 2 fixed-point formats of the neuro-core processes, shared by quantize, the network and the audit.

A memoryless LIF neuron (``LIFReset`` with ``reset_interval = 1``) computes
``v = sat24((a_in << 6) + (bias_mant << bias_exp))`` and spikes when
``v > vth << 6`` (Lava's ``PyLifResetModelBitAcc``). With ``|a_in| < 2^17`` the
shift cannot wrap and the saturation cannot change a decision, so the neuron
spikes exactly when ``a_in > T`` with ``T = vth − ceil(bias / 64)``: one integer
threshold per neuron, written as a shared ``vth`` per process plus a per-neuron
offset ``o = vth − T``: ``bias_mant = o`` at ``bias_exp = 6`` (−4096 ≤ o ≤ 4095)
or ``bias_mant = o / 2`` at ``bias_exp = 7`` (even o, −8192 ≤ o ≤ 8190).
Neurons whose thresholds spread wider than that go into several processes.

A membrane wider than a LIF input (up to the 24-bit state) reaches the LIF neurons
through a GradedVec relay that holds it whole and an identity synapse of weight 2 at
``weight_exp = −k − 1``, which delivers ``floor(m / 2^k)``: the neuron then spikes exactly
when ``m > θ`` for thresholds on the grid ``θ ≡ −1 (mod 2^k)``, which ``quantize`` chooses
(``pre_shift_layout``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chips import Target

NO_SPREAD_LIMIT = 62  # D = 1: one threshold, no spread to fit (the widest shift of a 64-bit word)


@dataclass(frozen=True)
class LifGroup:
    """Neurons (rows of a layer's C·D planes, channel-major ``c·D + k``) sharing one ``vth``."""

    rows: np.ndarray
    vth: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray


def clamped_thresholds(theta_minus_bias: np.ndarray, bound: np.ndarray | int) -> np.ndarray:
    """Thresholds on a synaptic input ``a`` known to stay within ±bound: ``a > T`` is never true for
    T ≥ bound and always for T < −bound, so such thresholds are clamped to the nearest even value
    beyond (even: it keeps a process's offsets of one parity, see ``_fit``) (C × D)."""
    b = np.broadcast_to(np.asarray(bound, np.int64).reshape(-1, 1), theta_minus_bias.shape)
    hi = b + (b % 2)  # smallest even ≥ bound
    lo = -b - 1 - ((b + 1) % 2)  # largest even < −bound
    return np.clip(theta_minus_bias, lo, hi)


def _fit(T: np.ndarray, t: Target) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(vth, bias_mant, bias_exp) that give every threshold of ``T`` exactly, or None."""
    m = t.bias_mant_max + 1  # 4096
    lo, hi = int(T.min()), int(T.max())
    for exp, step in ((t.act_shift, 1), (t.act_shift + 1, 2)):
        if exp > t.bias_exp_max or (step == 2 and len(np.unique(T % 2)) > 1):
            continue
        lo_off, hi_off = -m * step, (m - 1) * step
        vth = max(0, hi + lo_off)
        if step == 2 and (vth - hi) % 2:
            vth += 1
        if vth > t.vth_max or vth - lo > hi_off:
            continue
        off = vth - T
        return vth, off // step, np.full(T.shape, exp, dtype=np.int64)
    return None


def lif_groups(T: np.ndarray, t: Target, keep_channels: bool = True) -> list[LifGroup] | None:
    """Pack neurons into processes whose thresholds one ``vth`` and per-neuron offsets hold:
    with ``keep_channels`` all D planes of a channel stay in one process (readers then take
    the planes directly); None when that is impossible."""
    channels, D = T.shape
    units = [[c] for c in range(channels)] if keep_channels else [[r] for r in range(channels * D)]
    flat = T.reshape(-1)

    def values(unit_rows: list[int]) -> np.ndarray:
        return T[unit_rows].reshape(-1) if keep_channels else flat[unit_rows]

    order = sorted(range(len(units)), key=lambda u: int(values(units[u]).min()))
    groups: list[list[int]] = []
    for u in order:
        if _fit(values(units[u]), t) is None:
            return None
        if groups and _fit(values(groups[-1] + units[u]), t) is not None:
            groups[-1] = groups[-1] + units[u]
        else:
            groups.append(list(units[u]))
    out = []
    for g in groups:
        members = sorted(g)
        rows = (np.asarray(members)[:, None] * D + np.arange(D)[None, :]).reshape(-1) if keep_channels \
            else np.asarray(members)
        vth, mant, exp = _fit(flat[rows], t)  # type: ignore[misc]
        out.append(LifGroup(rows, vth, mant, exp))
    return out


def pre_shift_layout(theta: np.ndarray, bias: np.ndarray, syn_bound: np.ndarray,
                     t: Target) -> tuple[int, LifLayout] | None:
    """``(k, layout)`` with the smallest pre-shift ``k`` at which LIF processes hold the spike:
    ``k = 0`` reads the synaptic sum directly (``lif_layout``); ``k > 0`` reads ``floor(m / 2^k)``
    of the whole membrane ``m`` (bias included), with thresholds ``(θ + 1) / 2^k − 1``, exact
    when every ``θ + 1`` is a multiple of ``2^k``. None if no k up to ``t.pre_shift_max`` fits."""
    layout = lif_layout(theta, bias, syn_bound, t)
    if layout is not None:
        return 0, layout
    full = np.asarray(syn_bound, np.int64) + np.abs(np.asarray(bias, np.int64))
    for k in range(1, t.pre_shift_max + 1):
        if ((theta + 1) % 2**k).any():
            return None
        coarse_bound = -(-full // 2**k)  # floor(m / 2^k) stays within ±ceil(bound / 2^k)
        if coarse_bound.max(initial=0) > t.lif_input_max:
            continue
        layout = lif_layout(((theta + 1) >> k) - 1, np.zeros_like(full), coarse_bound, t)
        if layout is not None:
            return k, layout
    return None


def threshold_spread_shift(D: int, t: Target) -> int:
    """The finest shift at which the D thresholds of a spike, ``(j − ½)·2^s``, fit one process:
    (D − 1)·2^s within the offsets one ``vth`` reaches (even offsets at bias_exp 7)."""
    spread = 2 * (2 * (t.bias_mant_max + 1)) - 2  # 16382
    return int(np.floor(np.log2(spread / max(1, D - 1)))) if D > 1 else NO_SPREAD_LIMIT


def weight_format(w_int: np.ndarray, exp: int) -> tuple[np.ndarray, int]:
    """int8 weights ``W << exp`` as Loihi's mixed-sign 8-bit mantissa, which drops the lowest
    bit: ``2·W`` at ``weight_exp = exp − 1`` (the accumulated sum is even, so the shift is exact)."""
    return 2 * np.asarray(w_int, np.int64), int(exp) - 1


@dataclass(frozen=True)
class LifLayout:
    """How one spike layer's thresholds sit in LIF processes: the groups, and whether the
    per-channel bias reaches the neurons as synapses from always-on neurons (``bias_synapses``,
    then the thresholds are θ itself) or sits in their own bias mantissas."""

    groups: list[LifGroup]
    bias_synapses: bool
    input_bound: np.ndarray  # per channel: bound of a_in


BIAS_DIGIT_BITS = 8  # a bias synapse carries one base-256 digit (−128..127) of the bias


def bias_digits(bias: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """``bias`` as balanced base-256 digits ``[(d, unit), …]`` with d in −128..127 per channel
    and ``bias = Σ d·unit`` (units 1, 256, 65536, …); only the non-zero digits."""
    q = np.asarray(bias, np.int64)
    digits = []
    unit = 1
    while q.any():
        d = ((q + 128) % 256) - 128
        if d.any():
            digits.append((d, unit))
        q = (q - d) // 256
        unit *= 256
    return digits


def lif_layout(theta: np.ndarray, bias: np.ndarray, syn_bound: np.ndarray, t: Target) -> LifLayout | None:
    """Thresholds ``θ`` (C × D) on ``synaptic sum + bias`` as LIF processes: with the whole bias
    in the neurons' offsets when one process holds them, else with the bias delivered by
    synapses (thresholds θ, a few processes at most); None if the input bound is too wide."""
    b = np.asarray(bias, np.int64)
    bound = np.asarray(syn_bound, np.int64)
    if bound.max(initial=0) <= t.lif_input_max:
        groups = lif_groups(clamped_thresholds(theta - b[:, None], bound), t)
        if groups is not None and len(groups) == 1:
            return LifLayout(groups, False, bound)
    full = bound + np.abs(b)
    if full.max(initial=0) > t.lif_input_max:
        return None
    groups = lif_groups(clamped_thresholds(theta, full), t)
    return None if groups is None else LifLayout(groups, True, full)
