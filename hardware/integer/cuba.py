"""Integer semantics v4 for neurons with state: Loihi 2's CUBA LIF as Lava 0.10's bit-accurate models
compute it (docs/integer_semantics.md, "Neurons with state"), in int64 numpy: the oracle that the
fast simulator and the Lava network of a temporal graph are held to.

One step of a CUBA neuron (``lava/proc/lif/models.py``, ``AbstractPyLifModelFixed``):

- current: ``u ← trunc0(u · (4096 − (du + 1)) / 4096) + (a_in << 6)``; above 2^23 it wraps once
  by 2^24 (exactly +2^23 is kept), at or below −2^23 it wraps up;
- voltage: ``v ← trunc0(v · (4096 − dv) / 4096) + u + bias``, ``bias = bias_mant << bias_exp``
  (the bias is not shifted by 6), clipped to ±(2^23 − 1);
- spike where ``v > vth << 6``; a neuron that spiked has ``v = 0`` (u is kept).

``trunc0`` rounds toward zero for both signs (Lava: ``sign(p) · (|p| >> 12)``). A synapse
(``Dense``/``Sparse``) delivers ``(W @ s) << weight_exp`` (a right shift floors) one step after the
spikes it reads. On the chip v reads 128 right after a spike where Lava's model reads 0 (lava issue
282); spikes are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECAY_BITS = 12  # du, dv: unsigned 12-bit; decays act as x · (4096 − d) >> 12
DECAY_UNITY = 1 << DECAY_BITS
DS_OFFSET, DM_OFFSET = 1, 0  # Lava's offsets added to du and dv
ACT_SHIFT = 6  # a_in and vth are MSB-aligned by 6 bits
STATE_BITS = 24


@dataclass(frozen=True)
class CubaParams:
    """One Lava LIF process: ``du``, ``dv``, ``vth`` one each; ``bias_mant``/``bias_exp`` per neuron."""

    du: int | np.ndarray
    dv: int | np.ndarray
    vth: int
    bias_mant: np.ndarray | int = 0
    bias_exp: np.ndarray | int = 0

    @property
    def bias(self) -> np.ndarray:
        m, e = np.asarray(self.bias_mant, np.int64), np.asarray(self.bias_exp, np.int64)
        return np.where(e >= 0, m << np.maximum(e, 0), m >> np.maximum(-e, 0))


def trunc0_decay(x: np.ndarray, keep: int | np.ndarray) -> np.ndarray:
    """``x · keep / 4096`` rounded toward zero, as Lava's fixed-point decay computes it (``keep`` one
    value, or one per neuron in the reference of a layer that several processes will hold)."""
    p = np.asarray(x, np.int64) * np.asarray(keep, np.int64)
    return np.sign(p) * (np.abs(p) >> DECAY_BITS)


def wrap_current(u: np.ndarray) -> np.ndarray:
    """Lava's one-time wrap of the 24-bit current (``> 2^23`` down, ``≤ −2^23`` up)."""
    top = 1 << (STATE_BITS - 1)
    u = np.where(u > top, u - 2 * top, u)
    return np.where(u <= -top, u + 2 * top, u)


def cuba_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, p: CubaParams) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """One step: new ``u``, new ``v`` (after the reset) and the spikes (bool)."""
    top = 1 << (STATE_BITS - 1)
    u = wrap_current(trunc0_decay(u, DECAY_UNITY - (p.du + DS_OFFSET)) + (np.asarray(a_in, np.int64) << ACT_SHIFT))
    v = trunc0_decay(v, DECAY_UNITY - (p.dv + DM_OFFSET)) + u + p.bias
    v = np.clip(v, -top + 1, top - 1)
    spikes = v > (int(p.vth) << ACT_SHIFT)
    return u, np.where(spikes, 0, v), spikes


def synapse(weights: np.ndarray, weight_exp: int, spikes: np.ndarray) -> np.ndarray:
    """``(W @ s) << weight_exp`` in int64 (a negative exponent shifts right and floors)."""
    w = weights.astype(np.int64) if hasattr(weights, "nnz") else np.asarray(weights, np.int64)  # sparse or dense
    acc = np.asarray(w @ np.asarray(spikes, np.int64))
    return acc << weight_exp if weight_exp >= 0 else acc >> -weight_exp


def run_cuba_layer(weights: np.ndarray, weight_exp: int, p: CubaParams, spikes_in: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """A synapse into a CUBA layer over T steps (``spikes_in``: T × inputs, binary): every step's
    ``a_in``, ``u``, ``v`` and spikes (T × neurons). The synapse delivers step t's spikes at t + 1."""
    steps, n = spikes_in.shape[0], weights.shape[0]
    u = np.zeros(n, np.int64)
    v = np.zeros(n, np.int64)
    out = {k: np.zeros((steps, n), np.int64) for k in ("a_in", "u", "v", "s")}
    pending = np.zeros(n, np.int64)
    for t in range(steps):
        a_in, pending = pending, synapse(weights, weight_exp, spikes_in[t])
        u, v, s = cuba_step(u, v, a_in, p)
        out["a_in"][t], out["u"][t], out["v"][t], out["s"][t] = a_in, u, v, s
    return out
