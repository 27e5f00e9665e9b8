"""The integer NIR dialect: integer IR graphs ↔ NIR files (``lower`` and ``raise``).

An integer graph is a float lensnet NIR graph (export/convention.py) with
integers in it: the model input is centred pixels, ``Conv2d`` weights are
``mantissa << lensnet.weight_exp`` as int64 (so ``y = W x + b`` stays the NIR
meaning) with ``lensnet.shift`` per channel, spike planes carry integer
thresholds, average pooling is a ``SumPool2d`` (role ``average_as_sum``) and
three extension ops compute what has no standard form:

=================  ===========================  ==========================================
op                 operands                     semantics (docs/integer_semantics.md)
=================  ===========================  ==========================================
sigmoid_table      z (C×1×1)                    12-bit table ``lensnet.lut`` (C × span) at
                                                ``clamp(z >> z_shift, z_lo, z_hi) − z_lo``
gate_fixed         g (C×1×1), x (C×H×W)         ``(g · x · mult + 2^(r−1)) >> r``
bilinear_int       x (C×H×W)                    exact ``(2f)²`` × bilinear (integer taps)
=================  ===========================  ==========================================

The attention extension keeps its float name with ``scale = 1`` and the real
value of one integer step in ``unit``. The graph metadata ``lensnet.integer``
holds the semantics version and widths.

Reading (``from_int_nir``) goes through one validator, :mod:`.validate`: every
integer parameter is read whole and must hold integers (NaN, fractions and
values beyond int64 are refused, not cast), a spike plane's thresholds must be
one value per channel over all its cells, and the finished graph's parameters
must fit the widths it records (``validate.check_integer_graph``).
"""

from __future__ import annotations

import json
from typing import Any

import nir
import numpy as np

from ...errors import GraphError
from ...export import convention as C
from ...export import ops as O
from ...export.from_nir import Dialect, from_nir
from ...export.ir import Graph, Node
from ...export.to_nir import FLOAT_LOWERING, Lowering, to_nir
from . import ops as I
from . import validate as V

WEIGHT_EXP_KEY, SHIFT_KEY = "lensnet.weight_exp", "lensnet.shift"  # Conv2d: weight = mantissa << exp
LUT_KEY, REAL_SCALE_KEY = "lensnet.lut", "lensnet.real_scale"


def _lower_conv(low: Lowering, n: Node) -> None:
    op: I.IntConv = n.op  # type: ignore[assignment]
    low.conv2d(n, op.weight, np.asarray(op.b_int, np.int64), op.groups, op.stride, op.padding,
               {WEIGHT_EXP_KEY: op.exp, SHIFT_KEY: np.asarray(op.shift, np.int64)})


def _lower_spike(low: Lowering, n: Node) -> None:
    op: I.IntSpike = n.op  # type: ignore[assignment]
    planes = [np.broadcast_to(op.theta[:, k].reshape(-1, 1, 1), n.shape) for k in range(op.D)]
    low.spike_planes(n, op.D, planes, op.sources)


def _lower_sigmoid(low: Lowering, n: Node) -> None:
    op: I.SigmoidTable = n.op  # type: ignore[assignment]
    low.ext(n, "sigmoid_table", arrays={LUT_KEY: op.lut}, z_shift=op.z_shift.tolist(), z_lo=op.z_lo.tolist(),
            z_hi=op.z_hi.tolist())


def _lower_output(low: Lowering, n: Node) -> None:
    out = nir.Output(output_type={"output": np.array(n.shape)})
    out.metadata = {REAL_SCALE_KEY: n.op.real_scale}  # type: ignore[attr-defined]
    low.put(n.name, out)
    low.connect(n.inputs[0], n.name)


INTEGER_LOWERING = {
    O.Input: FLOAT_LOWERING[O.Input],
    O.Add: FLOAT_LOWERING[O.Add],
    O.MaxPool: FLOAT_LOWERING[O.MaxPool],
    O.Upsample: FLOAT_LOWERING[O.Upsample],
    I.IntConv: _lower_conv,
    I.IntSpike: _lower_spike,
    I.SumPool: lambda low, n: low.pooled(n, "average_as_sum"),
    I.IntAttention: lambda low, n: low.ext(n, "attention", heads=n.op.heads, scale=1.0, unit=float(n.op.unit)),
    I.SigmoidTable: _lower_sigmoid,
    I.IntGate: lambda low, n: low.ext(n, "gate_fixed", mult=n.op.mult.tolist(), r=n.op.r),
    I.IntBilinear: lambda low, n: low.ext(n, "bilinear_int", factor=n.op.factor),
    I.IntOutput: _lower_output,
}


def to_int_nir(graph: Graph) -> nir.NIRGraph:
    """The NIR graph of an integer IR graph."""
    if graph.integer is None:
        raise GraphError("to_int_nir needs an integer graph: run quantize first")
    return to_nir(graph, INTEGER_LOWERING, {C.INTEGER_KEY: json.dumps(graph.integer)})


INTEGER_EXTENSIONS: dict[str, C.Extension] = {
    "attention": C.Extension(3, lambda a, n: I.IntAttention(heads=int(a["heads"]), unit=float(a["unit"]))),
    "upsample_nearest": C.FLOAT_EXTENSIONS["upsample_nearest"],
    "global_maxpool": C.FLOAT_EXTENSIONS["global_maxpool"],
    "sigmoid_table": C.Extension(1, lambda a, n: I.SigmoidTable(
        z_shift=V.integers("z_shift", a["z_shift"]), z_lo=V.integers("z_lo", a["z_lo"]),
        z_hi=V.integers("z_hi", a["z_hi"]), lut=V.integers(LUT_KEY, n.metadata[LUT_KEY]))),
    "gate_fixed": C.Extension(2, lambda a, n: I.IntGate(mult=V.integers("mult", a["mult"]), r=V.integer("r", a["r"]))),
    "bilinear_int": C.Extension(1, lambda a, n: I.IntBilinear(factor=V.integer("factor", a["factor"]))),
}


class IntegerDialect(Dialect):
    """Reads integer lensnet NIR files into integer IR graphs."""

    def __init__(self) -> None:
        super().__init__("integer", dict(INTEGER_EXTENSIONS))

    def accepts(self, graph: nir.NIRGraph) -> None:
        if C.INTEGER_KEY not in (graph.metadata or {}):
            raise GraphError("this step needs an integer graph: run quantize first")

    def graph_meta(self, graph: nir.NIRGraph) -> dict[str, Any]:
        raw = graph.metadata[C.INTEGER_KEY]
        info = json.loads(raw.decode() if isinstance(raw, bytes | np.bytes_) else str(raw))
        if not isinstance(info, dict):
            raise C.NIRConventionError(f"metadata {C.INTEGER_KEY} must be a JSON object")
        return {"integer": info}

    def conv(self, name: str, node: nir.Conv2d, weight: np.ndarray, geometry: dict[str, Any]) -> O.Op:
        meta = node.metadata or {}
        if WEIGHT_EXP_KEY not in meta or SHIFT_KEY not in meta:
            raise C.NIRConventionError(f"node {name}: an integer Conv2d needs {WEIGHT_EXP_KEY} and {SHIFT_KEY}")
        exp = V.integer(f"node {name}: {WEIGHT_EXP_KEY}", meta[WEIGHT_EXP_KEY])
        if not 0 <= exp <= V.MAX_SHIFT:
            raise GraphError(f"node {name}: {WEIGHT_EXP_KEY} {exp} outside 0..{V.MAX_SHIFT}")
        w_int = V.integers(f"node {name}: weight", weight)
        rest = (w_int & ((1 << exp) - 1)) != 0
        if rest.any():
            i = tuple(int(k) for k in np.argwhere(rest)[0])
            raise GraphError(f"node {name}: weight {int(w_int[i])} at {list(i)} is not a multiple of 2^{exp} "
                             f"({WEIGHT_EXP_KEY})")
        return I.IntConv(w_int=w_int >> exp, b_int=V.integers(f"node {name}: bias", node.bias), exp=exp,
                         shift=V.integers(f"node {name}: {SHIFT_KEY}", meta[SHIFT_KEY]), **geometry)

    def spike(self, name: str, D: int, sources: list, planes: list[nir.Threshold]) -> O.Op:
        theta = [V.channel_thresholds(f"node {name}.s{k + 1}: threshold", p.threshold) for k, p in enumerate(planes)]
        if len({t.shape for t in theta}) != 1:
            raise GraphError(f"node {name}: its {D} threshold planes have different channel counts")
        return I.IntSpike(D=D, theta=np.stack(theta, 1), sources=sources)

    def sum_pool(self, name: str, node: nir.NIRNode) -> O.Op:
        return I.SumPool()

    def output(self, name: str, node: nir.Output) -> O.Op:
        meta = node.metadata or {}
        if REAL_SCALE_KEY not in meta:
            raise C.NIRConventionError(f"node {name}: an integer output needs {REAL_SCALE_KEY}")
        return I.IntOutput(real_scale=np.asarray(meta[REAL_SCALE_KEY], np.float64))


INTEGER = IntegerDialect()


def from_int_nir(graph: nir.NIRGraph) -> Graph:
    """The integer IR of a NIR graph written by ``quantize``, every parameter checked
    (:mod:`.validate`): a file that breaks a rule is one ``GraphError`` naming the node, the
    parameter and the value."""
    ir = from_nir(graph, INTEGER)
    V.check_integer_graph(ir)
    return ir
