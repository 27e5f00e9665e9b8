"""fixed_pt ProcessModels (numpy int64) of our processes: the Lava backend's implementation of
the embedded and host operations of docs/integer_semantics.md."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lensnet_deploy.hardware.lava.buffers import open_array
from lensnet_deploy.hardware.lava.procs.processes import (
    Attention,
    Bilinear,
    Gate,
    PixelSource,
    Readout,
    SigmoidTable,
    SpikeRecorder,
    SumPool,
    VarRecorder,
    WideSpike,
)

IN64 = LavaPyType(PyInPort.VEC_DENSE, np.int64)
OUT64 = LavaPyType(PyOutPort.VEC_DENSE, np.int64)
OUT32 = LavaPyType(PyOutPort.VEC_DENSE, np.int32)


class _OwnModel(PyLoihiProcessModel):
    """Reads every part of every operand into whole int64 tensors (planes summed to counts,
    relays' biases added)."""

    s_out: PyOutPort = OUT64

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.inputs = proc_params["inputs"]
        self.shape = tuple(proc_params["shape"])

    def operands(self) -> list[np.ndarray]:
        found: dict[int, np.ndarray] = {}
        for spec in self.inputs:
            data = np.asarray(getattr(self, spec["port"]).recv(), dtype=np.int64)
            channels = np.asarray(spec["channels"])
            if spec["planes"]:
                data = data.reshape(len(channels), spec["planes"], *data.shape[1:]).sum(axis=1)
            data = data + np.asarray(spec["bias"], np.int64).reshape(-1, *([1] * (data.ndim - 1)))
            j = spec["operand"]
            if j not in found:
                found[j] = np.zeros((int(channels.max()) + 1, *data.shape[1:]), np.int64)
            if found[j].shape[0] <= channels.max():
                grown = np.zeros((int(channels.max()) + 1, *data.shape[1:]), np.int64)
                grown[: found[j].shape[0]] = found[j]
                found[j] = grown
            found[j][channels] = data
        return [found[j] for j in sorted(found)]


def fixed_pt(proc: type):
    """Lava's three decorators of a CPU ProcessModel of ``proc`` (LoihiProtocol, CPU, fixed_pt)."""

    def decorate(cls: type) -> type:
        return tag("fixed_pt")(requires(CPU)(implements(proc=proc, protocol=LoihiProtocol)(cls)))

    return decorate


def instance_model(model: type, proc_class: type, ports: list[str]) -> type:
    """A model class for one process instance: Lava maps ports to typed model attributes by name,
    and our processes have as many in-ports as their operands have parts."""
    attrs = {port: IN64 for port in ports}
    attrs["implements_process"] = proc_class  # what @implements sets (it refuses a subclass of a model)
    return type(f"{model.__name__}_{len(ports)}", (model,), attrs)


@fixed_pt(SumPool)
class PySumPoolModel(_OwnModel):
    def run_spk(self) -> None:
        (x,) = self.operands()
        self.s_out.send(x.sum(axis=(1, 2), keepdims=True))


@fixed_pt(WideSpike)
class PyWideSpikeModel(PyLoihiProcessModel):
    a_in: PyInPort = IN64
    s_out: PyOutPort = OUT32
    theta: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        x = np.asarray(self.a_in.recv(), np.int64)
        count = np.zeros(x.shape, np.int64)
        for k in range(self.theta.shape[1]):
            count += x > self.theta[:, k].reshape(-1, *([1] * (x.ndim - 1)))
        self.s_out.send(count)


@fixed_pt(Attention)
class PyAttentionModel(_OwnModel):
    heads: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        q, k, v = self.operands()
        heads = int(np.asarray(self.heads).reshape(-1)[0])
        cq, h, w = q.shape
        cv = v.shape[0]
        qh = q.reshape(heads, cq // heads, h * w)
        kh = k.reshape(heads, cq // heads, h * w)
        vh = v.reshape(heads, cv // heads, h * w)
        kv = kh @ vh.transpose(0, 2, 1)  # heads, dq, dv
        y = kv.transpose(0, 2, 1) @ qh  # heads, dv, N
        self.s_out.send(y.reshape(cv, h, w))


@fixed_pt(SigmoidTable)
class PySigmoidTableModel(_OwnModel):
    s_out: PyOutPort = OUT32
    z_shift: np.ndarray = LavaPyType(np.ndarray, np.int64)
    z_lo: np.ndarray = LavaPyType(np.ndarray, np.int64)
    z_hi: np.ndarray = LavaPyType(np.ndarray, np.int64)
    lut: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        (z,) = self.operands()
        idx = np.clip(z[:, 0, 0] >> self.z_shift, self.z_lo, self.z_hi) - self.z_lo
        g = self.lut[np.arange(len(idx)), idx]
        self.s_out.send(g.reshape(-1, 1, 1))


@fixed_pt(Gate)
class PyGateModel(_OwnModel):
    s_out: PyOutPort = OUT32
    mult: np.ndarray = LavaPyType(np.ndarray, np.int64)
    r: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        g, x = self.operands()
        r = int(np.asarray(self.r).reshape(-1)[0])
        self.s_out.send((g * x * self.mult.reshape(-1, 1, 1) + (1 << (r - 1))) >> r)


def bilinear_taps(size: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output index along an axis: the two source indices and their integer weights (sum 2f)."""
    out = np.arange(size * f)
    num = 2 * out + 1 - f  # source coordinate × 2f
    lo = np.floor_divide(num, 2 * f)
    frac = num - lo * 2 * f
    neg = num < 0  # before the first pixel: all weight on pixel 0
    w_hi = np.where(neg, 0, frac)
    lo_c = np.where(neg, 0, np.clip(lo, 0, size - 1))
    hi_c = np.clip(lo + 1, 0, size - 1)
    return lo_c, hi_c, 2 * f - w_hi, w_hi


@fixed_pt(Bilinear)
class PyBilinearModel(_OwnModel):
    factor: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        (x,) = self.operands()
        f = int(np.asarray(self.factor).reshape(-1)[0])
        _, h, w = x.shape
        lo, hi, wl, wh = bilinear_taps(h, f)
        rows = x[:, lo, :] * wl[None, :, None] + x[:, hi, :] * wh[None, :, None]
        lo, hi, wl, wh = bilinear_taps(w, f)
        self.s_out.send(rows[:, :, lo] * wl + rows[:, :, hi] * wh)


@fixed_pt(PixelSource)
class PyPixelSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = OUT32

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.folder = proc_params["buffer"]
        self.zeros = np.zeros(proc_params["shape"], np.int32)
        self.images = self.control = None

    def run_spk(self) -> None:
        if self.control is None:
            self.control = open_array(self.folder, "control", "r")
            self.images = open_array(self.folder, "images", "r")
        base, count = (int(v) for v in self.control[:2])
        i = self.time_step - base
        self.s_out.send(np.asarray(self.images[i]) if 0 <= i < count else self.zeros)


@fixed_pt(Readout)
class PyReadoutModel(PyLoihiProcessModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.folder = proc_params["buffer"]
        self.inputs = proc_params["inputs"]
        self.outs = self.control = None

    def run_spk(self) -> None:
        if self.control is None:
            self.control = open_array(self.folder, "control")
            self.outs = [open_array(self.folder, f"out{k}") for k in range(len(self.inputs))]
        base, count = (int(v) for v in self.control[:2])
        self.control[2] = self.time_step  # progress, for the runner's watchdog and progress bar
        for k, spec in enumerate(self.inputs):
            data = getattr(self, spec["port"]).recv()
            i = self.time_step - base - spec["offset"]
            if not 0 <= i < count:
                continue
            value = np.asarray(data, np.int64)
            if spec["planes"]:
                value = value.reshape(len(spec["channels"]), spec["planes"], *value.shape[1:]).sum(axis=1)
            elif spec["bias"] is not None:
                value = value + np.asarray(spec["bias"], np.int64).reshape(-1, *([1] * (value.ndim - 1)))
            self.outs[k][i] = value


class _RecorderModel(PyLoihiProcessModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.folder, self.array = proc_params["buffer"], proc_params["array"]
        self.rows: np.ndarray | None = None

    def write(self, value: np.ndarray) -> None:
        if self.rows is None:
            self.rows = open_array(self.folder, self.array)
        self.rows[self.time_step - 1] = np.asarray(value).reshape(-1)


@fixed_pt(SpikeRecorder)
class PySpikeRecorderModel(_RecorderModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self) -> None:
        self.write(self.s_in.recv())


@fixed_pt(VarRecorder)
class PyVarRecorderModel(_RecorderModel):
    ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32, precision=24)

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:  # after the neurons' step: their v of this step
        self.write(self.ref.read())
