"""The input normalisation every model and tool shares, in one place.

Float models read ``(p/255 − mean)/std`` of uint8 pixels ``p``; integer models read the
centred pixels ``p − PIXEL_OFFSET`` (docs/integer_semantics.md). The mean is the authors'
ImageNet mean rounded to whole pixel levels (``PIXEL_OFFSET / 255``, at most 0.5/255 from
it), so that the value a convolution pads with (0 after normalising) is the same pixel in
both models: with the unrounded mean the integer model padded with a pixel 0.3–0.5 levels
off, and those border sums were where float and integer first parted (docs/qat.md).
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the authors' (torchvision's) mean, before rounding
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_MAX = 255
PIXEL_OFFSET = tuple(int(round(PIXEL_MAX * m)) for m in IMAGENET_MEAN)  # (124, 116, 104)
INPUT_MEAN = tuple(o / PIXEL_MAX for o in PIXEL_OFFSET)  # what every model subtracts
INPUT_STD = IMAGENET_STD
# the largest |p − offset| over the three channels (152): the integer input's bound
PIXEL_MAGNITUDE = max(max(o, PIXEL_MAX - o) for o in PIXEL_OFFSET)
