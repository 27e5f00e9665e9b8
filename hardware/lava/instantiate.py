"""Plan specs → Lava processes and the models they run with (``Loihi2SimCfg``, fixed_pt).

One table, ``classes()``: each spec type with its Lava process class and the CPU model chosen
for it through ``exception_proc_model_map`` (None: the model Lava finds beside the process).
Library processes run our lean models of Lava's bit-accurate arithmetic (``lean_models``),
their messages as wide as the plan's static bound; our processes get one model class per
instance, with the ports that instance has.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InternalError
from ..loihi import plan as S


def classes() -> dict[type[S.Spec], tuple[type, type | None]]:
    """Spec type → (Lava process class, model class or None). Imports Lava."""
    from lava.proc.conv.process import Conv
    from lava.proc.graded.process import GradedVec
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.models import PyLifResetModelBitAcc
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import DelaySparse, Sparse

    from . import lean_models as LM
    from .procs import models as M
    from .procs import processes as P

    return {
        S.ConvSpec: (Conv, LM.FastConvModel),
        S.SparseSpec: (Sparse, LM.LeanSparseModel),
        S.DelaySparseSpec: (DelaySparse, LM.FastDelaySparseModel),
        S.LIFResetSpec: (LIFReset, LM.LeanLIFResetModel),
        S.CubaLIFSpec: (LIFReset, PyLifResetModelBitAcc),  # Lava's own: neurons with state
        S.RingSourceSpec: (RingBuffer, None),
        S.GradedVecSpec: (GradedVec, LM.LeanGradedVecModel),
        S.PixelSourceSpec: (P.PixelSource, None),
        S.WideSpikeSpec: (P.WideSpike, None),
        S.SumPoolSpec: (P.SumPool, M.PySumPoolModel),
        S.AttentionSpec: (P.Attention, M.PyAttentionModel),
        S.SigmoidTableSpec: (P.SigmoidTable, M.PySigmoidTableModel),
        S.GateSpec: (P.Gate, M.PyGateModel),
        S.BilinearSpec: (P.Bilinear, M.PyBilinearModel),
        S.ReadoutSpec: (P.Readout, M.PyReadoutModel),
    }


def instantiate(plan: S.NetworkPlan, buffer: Path | None = None, feeds: dict[str, Any] | None = None
                ) -> tuple[dict[str, Any], dict[Any, type]]:
    """The plan's Lava processes, connected, and the model map for ``Loihi2SimCfg``; the pixel
    source and the readout exchange images and values through the arrays in ``buffer``; a ring
    source sends its ``feeds`` entry (neurons × steps), or cycles its pattern."""
    from . import lean_models as LM
    from .procs import models as M

    table = classes()
    models: dict[Any, type] = {cls: model for cls, model in table.values() if model is not None and
                               cls.__module__.startswith("lava.")}
    procs: dict[str, Any] = {}
    for spec in plan.procs.values():
        cls, model = table[type(spec)]
        params = spec.params()
        if isinstance(spec, S.PixelSourceSpec | S.ReadoutSpec):
            params["buffer"] = str(buffer)
        if isinstance(spec, S.RingSourceSpec):
            params = {"data": np.asarray(spec.pattern if spec.pattern is not None else (feeds or {})[spec.name],
                                         np.int32)}
        if "name" in inspect.signature(cls.__init__).parameters:
            proc = cls(**params, name=spec.name)
        else:
            proc = cls(**params)
        proc.name = spec.name  # GradedVec takes no name: set it afterwards
        if isinstance(spec, S.SparseSpec):  # Lava's Sparse keeps a copy of its matrix: the plan's will do
            proc.weights.init = spec.weights
        if spec.library and model is not None:
            if model.__module__ == LM.__name__ and spec.constant is None:  # messages as wide as the static bound
                models[proc] = LM.narrow_model(model, spec.in_bound)
            else:
                models[proc] = model
        elif model is not None:  # one ProcessModel class per instance, with the ports it has
            models[proc] = M.instance_model(model, cls, [p["port"] for p in params["inputs"]])
        procs[spec.name] = proc
    for link in plan.links:
        src = getattr(procs[link.src], link.src_port)
        if link.via:
            src = _adapt(src, link.via)
        src.connect(getattr(procs[link.dst], link.dst_port))
    return procs, models


def _adapt(port, via: tuple):
    """A Lava virtual port: the source port flattened, reshaped or transposed."""
    how = via[0]
    if how == "flatten":
        return port.flatten()
    if how == "reshape":
        return port.reshape(tuple(via[1]))
    if how == "transpose":
        return port.transpose(list(via[1]))
    raise InternalError(f"unknown port adapter {via!r}")
