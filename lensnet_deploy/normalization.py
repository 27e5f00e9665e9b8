"""The input normalisation every model and tool shares (the authors' ImageNet mean/std), in one place.

Float models read ``(p/255 − mean)/std`` of uint8 pixels ``p``; integer models
read the centred pixels ``p − PIXEL_OFFSET`` (docs/integer_semantics.md).
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_MAX = 255
PIXEL_OFFSET = tuple(int(round(PIXEL_MAX * m)) for m in IMAGENET_MEAN)  # (124, 116, 103)
# the largest |p − offset| over the three channels (152): the integer input's bound
PIXEL_MAGNITUDE = max(max(o, PIXEL_MAX - o) for o in PIXEL_OFFSET)
