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
- ``LeanLIFResetModel``, ``LeanSparseModel``, ``LeanGradedVecModel``: the same arithmetic as
  Lava's bit-accurate models, without their per-neuron copies. Our LIF neurons reset every step
  (``reset_interval = 1``), a ``GradedVec`` holds nothing between steps and a synapse's output
  is a function of its input, so these models keep no per-neuron state arrays (Lava allocates
  ``u``, ``v``, ``bias_*`` and ``a_buff`` per neuron), read biases through their compact
  broadcast views and the weights without copying them, and send binary spikes as int8.

Every model here is a function of its input per step (or, for ``DelaySparse``, of its input
``d`` steps ago): when a step's input equals the previous step's, the previous output is sent
again instead of recomputed (``_Unchanged``). In a pipeline that carries one image, almost
every process sees the same idle input on almost every step, so a step costs a comparison.
Equal to Lava's own models and to the int64 reference (tests).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.graded.process import GradedVec
from lava.proc.lif.process import LIFReset
from lava.proc.sparse.models import PyDelaySparseModelBitAcc
from lava.proc.sparse.process import DelaySparse, Sparse
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights
from scipy.sparse import csr_matrix

from ...errors import GraphError
from ..target.chips import load_target

# Lava's bit-accurate models compute Loihi 2's formats: the widths come from its target file
_LOIHI2 = load_target("loihi2")
STATE_MAX = _LOIHI2.state_max
ACT_SHIFT = _LOIHI2.act_shift
MAX_DELAY = _LOIHI2.max_delay
PARENT_PID = os.getpid()  # this module is imported before Lava starts its actors
# A Var these models never read per neuron: Lava's builder hands over its init as it is (a scalar, or
# the plan's compact view) instead of allocating a per-neuron array of it
AS_GIVEN = LavaPyType(int, np.int32)
SPIKES = LavaPyType(PyOutPort.VEC_DENSE, np.int8, precision=1)  # binary spikes: one byte, not Lava's int32
# in-ports of synapses: binary spikes arrive as int8 (one source per port), graded ones promote to int32
SYNAPSE_IN = LavaPyType(PyInPort.VEC_DENSE, np.int8, precision=1)
GRADED_IN = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
GRADED_OUT = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


class _Unchanged:
    """The previous step's input, to tell whether this step's is the same (then so is the output)."""

    def __init__(self) -> None:
        self.last: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> bool:
        if self.last is not None and self.last.shape == x.shape and np.array_equal(self.last, x):
            return True
        self.last = x
        return False


def compact(a) -> np.ndarray:
    """A broadcast view (stride 0) cut to length 1 along its repeated axes: same values under
    numpy broadcasting, no per-neuron memory."""
    a = np.asarray(a)
    return a[tuple(slice(0, 1) if st == 0 and n > 1 else slice(None) for st, n in zip(a.strides, a.shape))]


def prepared_weights(w, proc_params: dict):
    """Lava's bit-accurate preparation (clip to 8 bits, truncate to ``num_weight_bits`` by sign
    mode) applied to the stored values; the matrix itself when that changes nothing (no copy)."""
    sign_mode = proc_params.get("sign_mode") or determine_sign_mode(w)
    data = truncate_weights(clip_weights(w.data, sign_mode, num_bits=8), sign_mode,
                            proc_params.get("num_weight_bits", 8))
    if np.array_equal(data, w.data):
        return w
    return csr_matrix((data.astype(np.int32), w.indices, w.indptr), shape=w.shape)


def width(bound: int):
    """The narrowest integer type of messages bounded by ``bound`` in magnitude (0: unknown)."""
    for dtype in (np.int8, np.int16):
        if 0 < bound <= np.iinfo(dtype).max:
            return dtype
    return np.int32


def fitted(values: np.ndarray, port, owner: object = None) -> np.ndarray:
    """``values`` in the port's message type; a value outside it (a static bound that did not
    hold) is an error, never a silent wrap."""
    dtype = port._d_type
    if values.size and dtype != np.int32:
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise OverflowError(f"{type(owner).__name__}: a message outside {np.dtype(dtype).name}, "
                                "the width its static bound chose")
    return np.asarray(values, dtype)


_NARROW: dict = {}


def narrow_model(model: type, bound: int) -> type:
    """``model`` with messages as narrow as ``bound`` allows: a synapse's ``a_out``, a neuron's
    ``a_in`` (and a graded neuron's ``s_out``). One class per (model, width), shared."""
    dtype = width(bound)
    key = (model, dtype)
    if key not in _NARROW:
        ports = {}
        if hasattr(model, "a_out"):
            ports["a_out"] = LavaPyType(PyOutPort.VEC_DENSE, dtype, precision=24)
        else:
            ports["a_in"] = LavaPyType(PyInPort.VEC_DENSE, dtype, precision=24)
            if model.s_out.d_type != np.int8:  # graded spikes (binary ones are int8 already)
                ports["s_out"] = LavaPyType(PyOutPort.VEC_DENSE, dtype, precision=24)
        _NARROW[key] = type(f"{model.__name__}{np.dtype(dtype).name.capitalize()}", (model,), ports)
    return _NARROW[key]


def shift(acc: np.ndarray, exp: int) -> np.ndarray:
    return np.left_shift(acc, exp) if exp > 0 else np.right_shift(acc, -exp)


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
    s_in: PyInPort = SYNAPSE_IN
    a_out: PyOutPort = GRADED_OUT
    a_buf: np.ndarray = AS_GIVEN
    weight: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=8)  # 2·W mixed-sign mantissas
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
        self.unchanged = _Unchanged()
        self.weight = None  # the model keeps only the deduplicated float64 kernel

    def run_spk(self) -> None:
        if not hasattr(self, "kernel"):
            self._prepare()
            self.a_buf = np.zeros(self.a_out.shape, self.a_out._d_type)
        self.a_out.send(self.a_buf)
        s = np.asarray(self.s_in.recv())
        if self.unchanged(s):
            return
        x = (s != 0) if self.binary else s
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0))).double()  # C, H, W
        if self.d_in > 1:
            x = x.reshape(x.shape[0] // self.d_in, self.d_in, *x.shape[1:]).sum(dim=1)
        y = F.conv2d(x[None], self.kernel, stride=self.stride, padding=self.padding, groups=self.g)[0]
        acc = y.round().to(torch.int64).numpy()
        if self.d_out > 1:
            acc = np.repeat(acc.reshape(self.g, -1, *acc.shape[1:]), self.d_out, axis=1).reshape(-1, *acc.shape[1:])
        acc = acc << self.exp if self.exp >= 0 else acc >> -self.exp
        self.a_buf = fitted(np.clip(acc, -STATE_MAX - 1, STATE_MAX).transpose(2, 1, 0), self.a_out, self)


@implements(proc=DelaySparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class FastDelaySparseModel(PyDelaySparseModelBitAcc):
    s_in: PyInPort = SYNAPSE_IN
    a_out: PyOutPort = GRADED_OUT
    a_buff: np.ndarray = AS_GIVEN  # Lava's model allocates rows × (max_delay + 1)
    delays: int = AS_GIVEN  # one delay (an int) or a matrix of one value

    def run_spk(self) -> None:
        if not self.weights_set:
            self.weight_exp = self.proc_params.get("weight_exp", 0)
            self.weights = prepared_weights(self.weights, self.proc_params)
            delays = np.unique(self.delays.data) if hasattr(self.delays, "data") else np.unique(self.delays)
            if len(delays) > 1 or delays.max(initial=0) > MAX_DELAY:
                raise GraphError(f"FastDelaySparseModel needs one delay ≤ {MAX_DELAY} for every synapse, got {delays}")
            self.delays = None
            idle = np.zeros(self.weights.shape[0], self.a_out._d_type)
            self.fifo = [idle] * (int(delays.max(initial=0)) + 1)  # an unchanged input appends the same array
            self.unchanged = _Unchanged()
            self.weights_set = True
        self.a_out.send(self.fifo[0])
        s_in = self.s_in.recv()
        if self.unchanged(s_in):
            self.fifo = self.fifo[1:] + [self.fifo[-1]]
            return
        if self.num_message_bits.item() == 0:
            s_in = s_in != 0
        acc = self.weights.dot(s_in.astype(np.int32) if s_in.dtype == bool else s_in)
        self.fifo = self.fifo[1:] + [fitted(shift(acc, self.weight_exp), self.a_out, self)]


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class LeanSparseModel(PyLoihiProcessModel):
    """Lava's ``PySparseModelBitAcc`` (output one step later, ``weight_exp`` shift of the sum)."""

    s_in: PyInPort = SYNAPSE_IN
    a_out: PyOutPort = GRADED_OUT
    a_buff: np.ndarray = AS_GIVEN
    weights: csr_matrix = LavaPyType(csr_matrix, np.int32, precision=8)  # the process's matrix, not a copy
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, int, precision=5)

    def run_spk(self) -> None:
        if not hasattr(self, "out"):
            self.weights = prepared_weights(self.weights, self.proc_params)
            self.exp = int(self.proc_params.get("weight_exp", 0))
            self.binary = self.num_message_bits.item() == 0
            self.out = np.zeros(self.weights.shape[0], self.a_out._d_type)
            self.unchanged = _Unchanged()
        self.a_out.send(self.out)
        s = self.s_in.recv()
        if self.unchanged(s):
            return
        x = (s != 0).astype(np.int32) if self.binary else s.astype(np.int32, copy=False)
        self.out = fitted(shift(self.weights.dot(x), self.exp), self.a_out, self)


@implements(proc=LIFReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class LeanLIFResetModel(PyLoihiProcessModel):
    """Lava's ``PyLifResetModelBitAcc`` with ``reset_interval = 1``: u and v start each step at 0,
    so u = wrap24(a_in << 6), v = clip(u + bias_mant << bias_exp), spike where v > vth << 6."""

    a_in: PyInPort = GRADED_IN
    s_out: PyOutPort = SPIKES
    u: np.ndarray = AS_GIVEN
    v: np.ndarray = AS_GIVEN
    bias_mant: np.ndarray = AS_GIVEN
    bias_exp: np.ndarray = AS_GIVEN
    du: int = LavaPyType(int, np.uint16, precision=12)
    dv: int = LavaPyType(int, np.uint16, precision=12)
    vth: int = LavaPyType(int, np.int32, precision=17)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        if proc_params["reset_interval"] != 1:
            raise GraphError("LeanLIFResetModel models neurons that reset every step (reset_interval = 1)")
        self.unchanged = _Unchanged()
        self.spikes: np.ndarray | None = None

    def run_spk(self) -> None:
        a = self.a_in.recv()
        if not self.unchanged(a) or self.spikes is None:
            mant, exp = compact(self.bias_mant).astype(np.int32), compact(self.bias_exp)
            bias = np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))
            u = np.left_shift(np.asarray(a, np.int32), ACT_SHIFT)
            top = STATE_MAX + 1  # the current wraps like Lava's 24-bit u
            u = np.where(u > top, u - 2 * top, np.where(u <= -top, u + 2 * top, u))
            v = np.clip(u + bias, -STATE_MAX, STATE_MAX)
            self.spikes = (v > np.left_shift(np.int32(self.vth), 6)).astype(np.int8)
        self.s_out.send(self.spikes)


@implements(proc=GradedVec, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class LeanGradedVecModel(PyLoihiProcessModel):
    """Lava's ``PyGradedVecModelFixed``: v = a_in (v is cleared every step), sent where |v| > vth."""

    a_in: PyInPort = GRADED_IN
    s_out: PyOutPort = GRADED_OUT
    v: np.ndarray = AS_GIVEN
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        a = np.asarray(self.a_in.recv(), np.int32)
        if not hasattr(self, "unchanged"):
            self.unchanged, self.out = _Unchanged(), None
        if not self.unchanged(a) or self.out is None:
            self.out = fitted(a * (np.abs(a) > self.vth), self.s_out, self)
        self.s_out.send(self.out)
