"""Our CPU models of Lava library processes, chosen through ``exception_proc_model_map``.

- ``FastConvModel`` (``lava.proc.conv.process.Conv``): Lava's own fixed_pt model ignores
  ``weight_exp`` (lava-nc issue 803) and loops in scipy; ours applies ``weight_exp`` as the
  chip does (a shift of the accumulated sum, like Lava's bit-accurate Dense/Sparse) and
  convolves in float64 (exact below 2^53), summing spike planes first and computing repeated
  output rows once when the kernel repeats along them. Equal to Lava's own model where that
  one is right (``weight_exp = 0``) and to the int64 reference everywhere (tests).
- ``FastDelaySparseModel`` (``lava.proc.sparse.process.DelaySparse`` with one delay for all
  synapses): Lava's model rebuilds a stacked delay matrix every step; ours keeps the weights
  as Lava prepares them and a FIFO of the delay. Equal to Lava's own model (tests).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.sparse.models import PyDelaySparseModelBitAcc
from lava.proc.sparse.process import DelaySparse
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

STATE_MAX = 2**23 - 1
PARENT_PID = os.getpid()  # this module is imported before Lava starts its actors


def _repeat_factor(w: np.ndarray, axis: int) -> int:
    """The largest d > 1 such that ``w`` is d-fold repeated along ``axis`` in consecutive blocks."""
    n = w.shape[axis]
    for d in range(min(n, 16), 1, -1):
        if n % d:
            continue
        v = np.moveaxis(w, axis, 0).reshape(n // d, d, *np.delete(np.array(w.shape), axis))
        if (v == v[:, :1]).all():
            return d
    return 1


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class FastConvModel(PyConvModelFixed):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)  # Lava's int8 Var stores 160 as −96

    def _prepare(self) -> None:
        if os.getpid() != PARENT_PID:
            # a forked child must not enter the OpenMP pool the parent started (it would hang there);
            # with one thread torch runs every kernel inline
            torch.set_num_threads(1)
        w = np.asarray(self.weight, np.int64)[:, ::-1, ::-1, :].transpose(0, 3, 2, 1)  # O, I/g, kh, kw
        g = int(np.asarray(self.groups).reshape(-1)[0])
        self.binary = int(np.asarray(self.num_message_bits).reshape(-1)[0]) == 0
        per_out = w.shape[0] // g
        # planes: input channels repeat d_in times within a group, output rows d_out times
        self.d_in = _repeat_factor(w, 1) if self.binary else 1
        rows = w.reshape(g, per_out, *w.shape[1:])
        self.d_out = _repeat_factor(rows, 1)
        w = w[:, :: self.d_in][:: self.d_out]
        self.kernel = torch.from_numpy(w.copy(order="C")).double()
        self.g = g
        self.stride = tuple(int(v) for v in np.asarray(self.stride).reshape(-1)[::-1])
        self.padding = tuple(int(v) for v in np.asarray(self.padding).reshape(-1)[::-1])
        self.exp = int(np.asarray(self.weight_exp).reshape(-1)[0])

    def run_spk(self) -> None:
        if not hasattr(self, "kernel"):
            self._prepare()
            self.a_buf = np.zeros(self.a_out.shape, np.int32)
        self.a_out.send(self.a_buf)
        s = np.asarray(self.s_in.recv())
        x = (s != 0) if self.binary else s
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0))).double()  # C, H, W
        if self.d_in > 1:
            x = x.reshape(x.shape[0] // self.d_in, self.d_in, *x.shape[1:]).sum(dim=1)
        y = F.conv2d(x[None], self.kernel, stride=self.stride, padding=self.padding, groups=self.g)[0]
        acc = y.round().to(torch.int64).numpy()
        if self.d_out > 1:
            acc = np.repeat(acc.reshape(self.g, -1, *acc.shape[1:]), self.d_out, axis=1).reshape(-1, *acc.shape[1:])
        acc = acc << self.exp if self.exp >= 0 else acc >> -self.exp
        self.a_buf = np.clip(acc, -STATE_MAX - 1, STATE_MAX).transpose(2, 1, 0).astype(np.int32)


@implements(proc=DelaySparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class FastDelaySparseModel(PyDelaySparseModelBitAcc):
    def run_spk(self) -> None:
        if not self.weights_set:
            self.weight_exp = self.proc_params.get("weight_exp", 0)
            sign_mode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
            w = clip_weights(self.weights, sign_mode, num_bits=8)
            self.weights = truncate_weights(w, sign_mode, self.proc_params.get("num_weight_bits", 8))
            delays = np.unique(self.delays.data) if hasattr(self.delays, "data") else np.unique(self.delays)
            if len(delays) > 1 or delays.max(initial=0) > 63:
                raise ValueError(f"FastDelaySparseModel needs one delay ≤ 63 for every synapse, got {delays}")
            self.fifo = [np.zeros(self.weights.shape[0], np.int32) for _ in range(int(delays.max(initial=0)) + 1)]
            self.weights_set = True
        self.a_out.send(self.fifo[0])
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool)
        acc = self.weights.dot(s_in.astype(np.int64) if s_in.dtype == bool else s_in)
        acc = np.left_shift(acc, self.weight_exp) if self.weight_exp > 0 else np.right_shift(acc, -self.weight_exp)
        self.fifo = self.fifo[1:] + [np.asarray(acc, np.int32)]
