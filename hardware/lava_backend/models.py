"""fixed_pt ProcessModels (numpy int64) for the processes of :mod:`processes`."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lensnet_deploy.hardware.lava_backend.kernels import apply
from lensnet_deploy.hardware.lava_backend.processes import IntOp1, IntOp2, IntOp3, IntSource

VEC_IN = LavaPyType(PyInPort.VEC_DENSE, np.int64)
VEC_OUT = LavaPyType(PyOutPort.VEC_DENSE, np.int64)


@implements(proc=IntSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntSourceModel(PyLoihiProcessModel):
    out: PyOutPort = VEC_OUT

    def run_spk(self) -> None:
        self.out.send(np.asarray(self.proc_params["data"], dtype=np.int64))


class _OpModel(PyLoihiProcessModel):
    out: PyOutPort = VEC_OUT
    value: np.ndarray = LavaPyType(np.ndarray, np.int64)
    arity = 1

    def run_spk(self) -> None:
        args = [getattr(self, f"in{i}").recv().astype(np.int64) for i in range(self.arity)]
        result = apply(self.proc_params["op"], args)
        self.value = result
        self.out.send(result)


@implements(proc=IntOp1, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntOp1Model(_OpModel):
    in0: PyInPort = VEC_IN
    arity = 1


@implements(proc=IntOp2, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntOp2Model(_OpModel):
    in0: PyInPort = VEC_IN
    in1: PyInPort = VEC_IN
    arity = 2


@implements(proc=IntOp3, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntOp3Model(_OpModel):
    in0: PyInPort = VEC_IN
    in1: PyInPort = VEC_IN
    in2: PyInPort = VEC_IN
    arity = 3
