"""The integer operations of the graph IR (docs/integer_semantics.md), one dataclass each.

``quantize`` turns the float operations of ``export.ops`` into these; the
integer graph keeps the shared ones (``Input`` of centred pixels, ``Add``,
``MaxPool`` and ``Upsample`` of spike counts), whose integer meaning is the
float one. Every array is int64 unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ...export.ops import Attention, ConvGeometry, Gating, Op, Pooled, Resized, SameShape, Shape

_ZERO = np.zeros(1, dtype=np.int64)


def _int(a: np.ndarray | list) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


@dataclass(eq=False)
class IntConv(ConvGeometry, Op):
    """``acc[c] = (Σ w_int·x) << exp + b_int[c]`` in units of 2^−shift[c] of the membrane it feeds."""

    kind: ClassVar[str] = "conv"
    w_int: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1, 1), np.int64))
    b_int: np.ndarray = field(default_factory=lambda: _ZERO.copy())
    exp: int = 0
    shift: np.ndarray = field(default_factory=lambda: _ZERO.copy())

    def __post_init__(self) -> None:
        self.w_int, self.b_int, self.shift = _int(self.w_int), _int(self.b_int), _int(self.shift)
        self.exp = int(self.exp)

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        self.check_kernel(self, node, self.w_int.shape, inputs, shape)
        if self.b_int.shape != (shape[0],) or self.exp < 0:
            raise self.fail(node, f"bias of shape {self.b_int.shape} or exponent {self.exp} does not fit {shape}")

    @property
    def weight(self) -> np.ndarray:
        """The effective integer weight ``w_int << exp``."""
        return self.w_int << self.exp


@dataclass(eq=False)
class IntSpike(SameShape, Op):
    """The multi-spike neuron: ``count[c] = #{k : m[c] > theta[c, k]}`` (C × D thresholds)."""

    kind: ClassVar[str] = "spike"
    D: int = 4
    theta: np.ndarray = field(default_factory=lambda: np.zeros((1, 4), np.int64))
    sources: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.theta = _int(self.theta)

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        super().check(node, inputs, shape)
        if self.theta.shape != (shape[0], self.D):
            raise self.fail(node, f"thresholds of shape {self.theta.shape} do not fit {shape[0]} channels × D "
                                  f"= {self.D}")


@dataclass(eq=False)
class SumPool(Pooled, Op):
    """Global average pooling as the integer sum over H·W (the 1/(H·W) lives in the next thresholds)."""

    kind: ClassVar[str] = "sumpool"


@dataclass(eq=False)
class IntAttention(Op):
    """Per head ``KV = kᵀ v`` then ``Y = q · KV`` on spike counts; ``unit`` is Y's real value per step."""

    arity: ClassVar[int | None] = 3
    kind: ClassVar[str] = "attention"
    heads: int = 1
    unit: float = 1.0

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        Attention(heads=self.heads).check(node, inputs, shape)


@dataclass(eq=False)
class SigmoidTable(SameShape, Op):
    """``g = lut[c, clamp(z >> z_shift[c], z_lo[c], z_hi[c]) − z_lo[c]]``: a 12-bit sigmoid table."""

    kind: ClassVar[str] = "sigmoid"
    z_shift: np.ndarray = field(default_factory=lambda: _ZERO.copy())
    z_lo: np.ndarray = field(default_factory=lambda: _ZERO.copy())
    z_hi: np.ndarray = field(default_factory=lambda: _ZERO.copy())
    lut: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.int64))

    def __post_init__(self) -> None:
        self.z_shift, self.z_lo, self.z_hi, self.lut = (_int(a) for a in (self.z_shift, self.z_lo, self.z_hi,
                                                                           self.lut))


@dataclass(eq=False)
class IntGate(Gating, Op):
    """``(g · x · mult[c] + 2^(r−1)) >> r``: a gate value times spike counts, rounded half up."""

    arity: ClassVar[int | None] = 2
    kind: ClassVar[str] = "gate"
    mult: np.ndarray = field(default_factory=lambda: _ZERO.copy())
    r: int = 16

    def __post_init__(self) -> None:
        self.mult, self.r = _int(self.mult), int(self.r)


@dataclass(eq=False)
class IntBilinear(Resized, Op):
    """Exactly ``(2·factor)²`` times the bilinear resize ×factor (integer taps, border clamped)."""

    kind: ClassVar[str] = "bilinear"
    factor: int = 2


@dataclass(eq=False)
class IntOutput(Op):
    """A model output: raw integers; ``real_scale[c]`` turns them into logits."""

    kind: ClassVar[str] = "output"
    real_scale: np.ndarray = field(default_factory=lambda: np.ones(1))

    def __post_init__(self) -> None:
        self.real_scale = np.asarray(self.real_scale, dtype=np.float64)
