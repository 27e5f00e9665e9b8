"""The input normalisation every model and tool shares, in one place.

Float models read ``(p/255 − mean)/std`` of uint8 pixels ``p``; integer models read the
centred pixels ``p − PIXEL_OFFSET`` (docs/integer_semantics.md). The mean is the authors'
ImageNet mean rounded to whole pixel levels (``PIXEL_OFFSET / 255``, at most 0.5/255 from
it), so that the value a convolution pads with (0 after normalising) is the same pixel in
both models: with the unrounded mean the integer model padded with a pixel 0.3–0.5 levels
off, and those border sums were where float and integer first parted (docs/qat.md).

Users bring tensors normalised either way: the authors' (torchvision's)
``Normalize(IMAGENET_MEAN, IMAGENET_STD)`` on ``ToTensor()``, this project's rounded mean
(``datasets.load_images``), or uint8 pixels. :func:`to_pixels` finds the uint8 pixels any of
them holds, exactly, or refuses the tensor (a :class:`DatasetError`): the integer model then
reads those pixels and the float graph their :func:`from_pixels`, so both models see one image
with one padding pixel whichever way it was normalised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DatasetError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the authors' (torchvision's) mean, before rounding
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_MAX = 255
PIXEL_OFFSET = tuple(int(round(PIXEL_MAX * m)) for m in IMAGENET_MEAN)  # (124, 116, 104)
INPUT_MEAN = tuple(o / PIXEL_MAX for o in PIXEL_OFFSET)  # what every model subtracts
INPUT_STD = IMAGENET_STD
# the largest |p − offset| over the three channels (152): the integer input's bound
PIXEL_MAGNITUDE = max(max(o, PIXEL_MAX - o) for o in PIXEL_OFFSET)

# name -> (mean, std): the normalisations a float tensor may carry, tried in this order
NORMALISATIONS = {"lensnet-deploy": (INPUT_MEAN, INPUT_STD), "torchvision": (IMAGENET_MEAN, IMAGENET_STD)}
# how far (in pixel levels) an inverted value may sit from a whole pixel: float32 rounding is
# ~1e-4 and float16's ~0.06, while the other normalisation leaves 0.28-0.47 levels (its mean
# differs by 0.325, 0.28 and 0.47 levels per channel), so no tensor fits both
PIXEL_TOLERANCE = 0.1


def _describe_shape(images: Any) -> str:
    shape = tuple(getattr(images, "shape", ()))
    return "×".join(map(str, shape)) if shape else type(images).__name__


def channels_first(images: Any) -> torch.Tensor:
    """``images`` as a B×3×H×W tensor: uint8 pixels may also come B×H×W×3 (numpy or PIL order;
    a B×3×H×3 tensor is read channels first); numpy arrays become tensors."""
    import numpy as np
    import torch

    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise DatasetError(f"images must be a tensor (B×3×H×W), not {type(images).__name__}")
    shape = tuple(images.shape)
    if images.dtype == torch.uint8 and len(shape) == 4 and shape[1] != 3 and shape[3] == 3:
        images = images.permute(0, 3, 1, 2)
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        layouts = "B×3×H×W (ImageNet-normalised floats or uint8 pixels) or B×H×W×3 (uint8 pixels)"
        raise DatasetError(f"images of shape {_describe_shape(images)}: expected {layouts}")
    return images


def _fit(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, float]:
    """Invert one normalisation on a 3×H×W image: its nearest pixels and how far (in pixel
    levels) the farthest value sits from a whole pixel in 0..255 (inf for NaN/Inf)."""
    import torch

    m = torch.tensor(mean, dtype=torch.float64).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(3, 1, 1)
    p = (image.double() * s + m) * PIXEL_MAX
    r = p.round()
    if not bool(torch.isfinite(p).all()):
        return r, float("inf")
    off = float((p - r.clamp(0, PIXEL_MAX)).abs().max())  # beyond 0..255 counts as far off
    return r, off


def to_pixels(images: Any, strict: bool = True) -> torch.Tensor:
    """The uint8 pixels (B×3×H×W) that ``images`` hold.

    uint8 tensors (B×3×H×W or B×H×W×3) are the pixels. A float tensor is read image by image
    as ``(p/255 − mean)/std`` with either mean of ``NORMALISATIONS`` (torchvision's or this
    project's rounded one): the first whose inverse lands within ``PIXEL_TOLERANCE`` of whole
    pixels 0..255 at every value gives them, exactly. A tensor that neither reaches (resized
    or augmented after normalising, another mean or scale, pixel/255 without Normalize) is a
    :class:`DatasetError`, so no number is computed from a guess. ``strict=False`` (the
    simulators' own input, which tests also feed with noise) takes the nearest pixels under
    this project's normalisation instead, clamped to 0..255."""
    import torch

    images = channels_first(images)
    if images.dtype == torch.uint8:
        return images.contiguous()
    if not images.is_floating_point():
        raise DatasetError(f"images of type {str(images.dtype).removeprefix('torch.')}: give uint8 pixels or "
                           f"ImageNet-normalised floats")
    out = torch.empty(images.shape, dtype=torch.uint8)
    for i, image in enumerate(images.detach().cpu()):
        worst = float("inf")
        for mean, std in NORMALISATIONS.values():
            pixels, off = _fit(image, mean, std)
            worst = min(worst, off)
            if off <= PIXEL_TOLERANCE:
                break
        else:
            if strict:
                raise DatasetError(_unreachable(image, i, worst))
            pixels = _fit(image, INPUT_MEAN, INPUT_STD)[0].clamp(0, PIXEL_MAX)
        out[i] = pixels.to(torch.uint8)
    return out


def _unreachable(image: torch.Tensor, index: int, off: float) -> str:
    """One line saying why image ``index`` holds no uint8 pixels, and what to pass instead."""
    import torch

    lo, hi = float(image.min()), float(image.max())
    if not bool(torch.isfinite(image).all()):
        why = "holds NaN or Inf values"
    elif lo >= 0 and hi <= 1 and float((image.double() * PIXEL_MAX - (image.double() * PIXEL_MAX).round()).abs()
                                       .max()) <= PIXEL_TOLERANCE:
        why = "holds pixel/255 in 0..1 (ToTensor without Normalize?)"
    else:
        why = (f"is not uint8 pixels under either ImageNet normalisation (the nearest is {off:.2f} pixel levels "
               f"off; values {lo:.3f}..{hi:.3f})")
    return (f"image {index + 1} {why}: the integer model reads whole pixels, so give uint8 pixels (B×3×H×W or "
            f"B×H×W×3) or (pixel/255 − mean)/std with std {IMAGENET_STD} and mean {IMAGENET_MEAN} (torchvision's) "
            f"or {PIXEL_OFFSET}/255 (lensnet-deploy's), with nothing resized or changed after it")


def from_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (B×3×H×W or 3×H×W) as the float models read them: ``(p/255 − mean)/std``
    in float32 with this project's rounded mean, the very numbers ``datasets.load_images``
    gives (so that a float model pads with the integer model's pixel ``PIXEL_OFFSET``)."""
    import torch

    shape = (3, 1, 1) if pixels.dim() == 3 else (1, 3, 1, 1)
    mean = torch.tensor(INPUT_MEAN, dtype=torch.float32).view(shape)
    std = torch.tensor(INPUT_STD, dtype=torch.float32).view(shape)
    return pixels.float().div(PIXEL_MAX).sub(mean).div(std)


def float_input(images: Any) -> torch.Tensor:
    """What a float model reads for ``images`` given either way (:func:`to_pixels`): the same
    pixels normalised this project's way; a tensor from ``load_images`` comes back bit for bit."""
    return from_pixels(to_pixels(images))
