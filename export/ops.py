"""The float operations of the graph IR: one small dataclass per operation.

Each operation owns its parameters, its operand count and its shape checks,
like NIR's ``nir/ir/*.py``; a graph node (:class:`~.ir.Node`) holds one of
them. Backends dispatch on the type (a dict keyed by the class), so adding
an operation touches one place per backend. The integer forms that
``quantize`` produces live in ``lensnet_deploy.hardware.integer.ops``.

Shapes are (C, H, W) without the batch axis.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import GraphError

Shape = tuple[int, ...]


@dataclass(eq=False)
class Op:
    """Base of every operation: ``arity`` operands (None: one or more), ``kind`` its short name."""

    arity: ClassVar[int | None] = 1
    kind: ClassVar[str] = "op"

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        """Raise :class:`GraphError` when operand or output shapes do not fit the operation."""

    def replace(self, **changes: Any) -> Op:
        return dataclasses.replace(self, **changes)

    def fail(self, node: str, why: str) -> GraphError:
        return GraphError(f"{self.kind} node {node}: {why}")


def conv_output_shape(in_shape: Shape, out_channels: int, kernel: tuple[int, int], stride: tuple[int, int],
                      padding: tuple[int, int]) -> Shape:
    _, h, w = in_shape
    return (out_channels, (h + 2 * padding[0] - kernel[0]) // stride[0] + 1,
            (w + 2 * padding[1] - kernel[1]) // stride[1] + 1)


class SameShape:
    """Mixin: the output has the shape of every operand."""

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        if any(s != shape for s in inputs):
            raise self.fail(node, f"operand shapes {inputs} differ from the output {shape}")  # type: ignore[attr-defined]


class Pooled:
    """Mixin: a global pool, C×H×W → C×1×1."""

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        if shape != (inputs[0][0], 1, 1):
            raise self.fail(node, f"output {shape} is not C×1×1 of {inputs[0]}")  # type: ignore[attr-defined]


class Resized:
    """Mixin: an upsampling by the integer ``factor`` in H and W."""

    factor: int

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        c, h, w = inputs[0]
        if self.factor <= 0 or shape != (c, h * self.factor, w * self.factor):
            raise self.fail(node, f"output {shape} is not {inputs[0]} scaled by {self.factor}")  # type: ignore


@dataclass(eq=False)
class Input(Op):
    """The model input: ImageNet-normalised images."""

    arity: ClassVar[int | None] = 0
    kind: ClassVar[str] = "input"


@dataclass(eq=False)
class Output(Op):
    """A model output (logits), in model order."""

    kind: ClassVar[str] = "output"


@dataclass(eq=False)
class ConvGeometry:
    """Stride, padding and groups shared by the float and the integer convolution."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def check_kernel(self, op: Op, node: str, kernel_shape: tuple[int, ...], inputs: list[Shape],
                     shape: Shape) -> None:
        out_c, per_in, kh, kw = kernel_shape
        if inputs[0][0] != per_in * self.groups or out_c % self.groups:
            raise op.fail(node, f"weight {kernel_shape} with {self.groups} groups does not read {inputs[0][0]} "
                                f"channels")
        want = conv_output_shape(inputs[0], out_c, (kh, kw), self.stride, self.padding)
        if shape != want:
            raise op.fail(node, f"output {shape} differs from the convolution's {want}")


@dataclass(eq=False)
class Conv(ConvGeometry, Op):
    """``y = W ⋆ x + b`` (correlation, PyTorch layout O × I/groups × kh × kw), float64."""

    kind: ClassVar[str] = "conv"
    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1, 1)))
    bias: np.ndarray | None = None

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        self.check_kernel(self, node, np.shape(self.weight), inputs, shape)


@dataclass(eq=False)
class BatchNorm(SameShape, Op):
    kind: ClassVar[str] = "batchnorm"
    mean: np.ndarray = field(default_factory=lambda: np.zeros(1))
    var: np.ndarray = field(default_factory=lambda: np.ones(1))
    eps: float = 1e-5
    weight: np.ndarray = field(default_factory=lambda: np.ones(1))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(1))


@dataclass(eq=False)
class Scale(SameShape, Op):
    """A per-channel scale (transformer layer scale)."""

    kind: ClassVar[str] = "scale"
    scale: np.ndarray = field(default_factory=lambda: np.ones(1))


@dataclass(eq=False)
class Shuffle(SameShape, Op):
    """Channel shuffle: output channel c reads input channel ``perm[c]``."""

    kind: ClassVar[str] = "shuffle"
    perm: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))


@dataclass(eq=False)
class Spike(SameShape, Op):
    """The multi-spike neuron ``out_scale · round(clamp(u, 0, D))``; ``sources`` name the PyTorch calls."""

    kind: ClassVar[str] = "spike"
    D: int = 4
    out_scale: float = 1.0
    sources: list[dict] = field(default_factory=list)


@dataclass(eq=False)
class Add(SameShape, Op):
    """A residual join: the sum of its operands."""

    arity: ClassVar[int | None] = None
    kind: ClassVar[str] = "add"


@dataclass(eq=False)
class AvgPool(Pooled, Op):
    """Global average pooling."""

    kind: ClassVar[str] = "avgpool"


@dataclass(eq=False)
class MaxPool(Pooled, Op):
    """Global max pooling (of spike counts after ``commute_spike``; the same op in integer graphs)."""

    kind: ClassVar[str] = "maxpool"


@dataclass(eq=False)
class Upsample(Resized, Op):
    """Nearest upsampling ×``factor`` (of spike counts; the same op in integer graphs)."""

    kind: ClassVar[str] = "upsample"
    factor: int = 2


@dataclass(eq=False)
class Attention(Op):
    """Linear attention ``scale · q (kᵀ v)`` per head over the H·W tokens."""

    arity: ClassVar[int | None] = 3
    kind: ClassVar[str] = "attention"
    heads: int = 1
    scale: float = 1.0

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        q, k, v = inputs
        if q != k or q[1:] != v[1:] or self.heads <= 0 or q[0] % self.heads or v[0] % self.heads or shape != v:
            raise self.fail(node, f"shapes do not fit q, k (C×H×W), v (Cv×H×W) with {self.heads} heads: "
                                  f"{inputs} → {shape}")


@dataclass(eq=False)
class Sigmoid(SameShape, Op):
    kind: ClassVar[str] = "sigmoid"


class Gating:
    """Mixin: a C×1×1 gate times a C×H×W input."""

    def check(self, node: str, inputs: list[Shape], shape: Shape) -> None:
        g, x = inputs
        if g != (x[0], 1, 1) or shape != x:
            raise self.fail(node, f"needs a C×1×1 gate and a C×H×W input, got {inputs} → {shape}")  # type: ignore


@dataclass(eq=False)
class Gate(Gating, Op):
    """``g · x · scale`` with a per-channel gate g (C×1×1)."""

    arity: ClassVar[int | None] = 2
    kind: ClassVar[str] = "gate"
    scale: float = 1.0


@dataclass(eq=False)
class Bilinear(Resized, Op):
    """Bilinear resize ×``factor`` (align_corners False): the heads' logits to the input size."""

    kind: ClassVar[str] = "bilinear"
    factor: int = 2
