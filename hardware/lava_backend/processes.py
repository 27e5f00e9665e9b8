"""Lava Processes for the integer LENS-Net graph: a source, a sink, and operations with 1–3 inputs.

Every operation process keeps its latest output in the Var ``value`` so that
spike counts and logits can be read back after a run.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class IntSource(AbstractProcess):
    """Sends the same integer tensor (the centred pixels) every step."""

    def __init__(self, *, data: np.ndarray, name: str | None = None) -> None:
        super().__init__(data=data, name=name)
        self.out = OutPort(shape=data.shape)


class _IntOp(AbstractProcess):
    def __init__(self, *, in_shapes: list[tuple], out_shape: tuple, op: object, name: str | None = None) -> None:
        super().__init__(in_shapes=in_shapes, out_shape=out_shape, op=op, name=name)
        for i, shape in enumerate(in_shapes):
            setattr(self, f"in{i}", InPort(shape=shape))
        self.out = OutPort(shape=out_shape)
        self.value = Var(shape=out_shape, init=np.zeros(out_shape, dtype=np.int64))


class IntOp1(_IntOp):
    """One-input integer operation (convolution, spike, join, pooling, upsampling, sigmoid table, bilinear)."""


class IntOp2(_IntOp):
    """Two-input integer operation (the gate)."""


class IntOp3(_IntOp):
    """Three-input integer operation (the attention product)."""
