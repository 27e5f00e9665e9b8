"""Lava Processes of ours, one per operation, each with typed Vars: what no neuro-core computes.

Operands arrive as the parts the network plan made of them: ports ``in<operand>_<part>``,
each part with its channels and, for spike planes, its planes per channel (``inputs``).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


def _input_ports(proc: AbstractProcess, inputs: list[dict]) -> None:
    for spec in inputs:
        setattr(proc, spec["port"], InPort(shape=tuple(spec["shape"])))


class _Own(AbstractProcess):
    """Common base: operands as parts, one out-port ``s_out`` of the node's shape."""

    def __init__(self, *, shape: tuple, inputs: list[dict], name: str | None = None, **params) -> None:
        super().__init__(shape=tuple(shape), inputs=inputs, name=name, **params)
        _input_ports(self, inputs)
        self.s_out = OutPort(shape=tuple(shape))


class SumPool(_Own):
    """Embedded core: ``S[c] = Σ_HW (x[c] + bias[c])`` in 64-bit words (global average pooling)."""

    def __init__(self, *, shape: tuple, in_shape: tuple, inputs: list[dict], name: str | None = None) -> None:
        super().__init__(shape=shape, inputs=inputs, name=name, in_shape=tuple(in_shape))


class WideSpike(AbstractProcess):
    """Embedded core: the multi-spike neuron on a 64-bit value, ``count = #{k : x > theta[c, k]}``."""

    def __init__(self, *, shape: tuple, theta: np.ndarray, name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), name=name)
        self.a_in = InPort(shape=tuple(shape))
        self.s_out = OutPort(shape=tuple(shape))
        self.theta = Var(shape=theta.shape, init=np.asarray(theta, np.int64))


class Attention(_Own):
    """Embedded core: per head ``KV = kᵀ v`` over tokens, then ``Y = q · KV``, on spike counts (int64)."""

    def __init__(self, *, shape: tuple, heads: int, inputs: list[dict], name: str | None = None) -> None:
        super().__init__(shape=shape, inputs=inputs, name=name)
        self.heads = Var(shape=(1,), init=int(heads))


class SigmoidTable(_Own):
    """Embedded core: ``g = lut[c, clamp((z + bias) >> z_shift, z_lo, z_hi) − z_lo]``."""

    def __init__(self, *, shape: tuple, z_shift: np.ndarray, z_lo: np.ndarray, z_hi: np.ndarray, lut: np.ndarray,
                 inputs: list[dict], name: str | None = None) -> None:
        super().__init__(shape=shape, inputs=inputs, name=name)
        self.z_shift = Var(shape=z_shift.shape, init=np.asarray(z_shift, np.int64))
        self.z_lo = Var(shape=z_lo.shape, init=np.asarray(z_lo, np.int64))
        self.z_hi = Var(shape=z_hi.shape, init=np.asarray(z_hi, np.int64))
        self.lut = Var(shape=lut.shape, init=np.asarray(lut, np.int64))


class Gate(_Own):
    """Embedded core: ``(g · count · mult[c] + 2^(r−1)) >> r``, a gate value times spike counts."""

    def __init__(self, *, shape: tuple, mult: np.ndarray, r: int, inputs: list[dict], name: str | None = None) -> None:
        super().__init__(shape=shape, inputs=inputs, name=name)
        self.mult = Var(shape=mult.shape, init=np.asarray(mult, np.int64))
        self.r = Var(shape=(1,), init=int(r))


class Bilinear(_Own):
    """Host: exactly ``(2·factor)²`` × the bilinear resize ×factor of the head's logits (int64)."""

    def __init__(self, *, shape: tuple, factor: int, inputs: list[dict], name: str | None = None) -> None:
        super().__init__(shape=shape, inputs=inputs, name=name)
        self.factor = Var(shape=(1,), init=int(factor))


class PixelSource(AbstractProcess):
    """Host: sends image ``t − base`` of a shared buffer at step ``t`` (zeros outside the batch)."""

    def __init__(self, *, shape: tuple, buffer: str, name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), buffer=buffer, name=name)
        self.s_out = OutPort(shape=tuple(shape))


class Readout(AbstractProcess):
    """Host: records every observed part's value of image ``t − base − offset`` into a shared buffer."""

    def __init__(self, *, inputs: list[dict], buffer: str, name: str | None = None) -> None:
        super().__init__(inputs=inputs, buffer=buffer, name=name)
        _input_ports(self, inputs)


class SpikeRecorder(AbstractProcess):
    """Host: writes what arrives at ``s_in`` at step t into row t − 1 of the shared array
    ``<buffer>/<array>.npy`` (the host's readout of a layer's spikes; Lava's ``Monitor`` hands its
    record back one number per message)."""

    def __init__(self, *, shape: tuple, buffer: str, array: str, name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), buffer=buffer, array=array, name=name)
        self.s_in = InPort(shape=tuple(shape))


class VarRecorder(AbstractProcess):
    """Host: reads a neuron Var (a non-spiking layer's ``v``) through a reference port after every
    step and writes it into row t − 1 of ``<buffer>/<array>.npy``."""

    def __init__(self, *, shape: tuple, buffer: str, array: str, name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), buffer=buffer, array=array, name=name)
        self.ref = RefPort(shape=tuple(shape))
