"""Training data: ORSI pairs decoded once into a uint8 cache, augmented per step.

Augmentation for aerial images (no canonical "up"): horizontal/vertical flips,
90° rotations and random crops ("geometric"); "full" adds multi-scale crops
(objects seen from 0.45× to 1.5× their test-time size, with a mild aspect
change) and colour jitter (brightness, contrast, saturation, gamma), because
remote-sensing images vary in ground resolution and illumination. Every random choice comes from a generator
seeded by (seed, epoch, step), so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .atomic import atomic_path
from .datasets import pair_dataset, read_image, read_mask, resolve_layout
from .errors import DatasetError
from .normalization import INPUT_MEAN, INPUT_STD

CROP_MARGIN = 1.125  # cache side / input side: room for random crops
CROP_MARGINS = {"geometric": CROP_MARGIN, "full": 1.5}  # "full" keeps detail for zoomed-in crops


def collect_pairs(data_root: str | os.PathLike[str], sets: Sequence[str]) -> list[tuple[Path, Path]]:
    """Pairs of ``sets`` given as ``NAME/split`` (e.g. ``ORSSD/train``) under ``data_root``."""
    pairs: list[tuple[Path, Path]] = []
    for entry in sets:
        name, _, split = entry.partition("/")
        images, masks = resolve_layout(Path(data_root) / name, split or "train")
        pairs += pair_dataset(images, masks)
    return pairs


def split_holdout(pairs: Sequence[tuple[Path, Path]], count: int, seed: int) -> tuple[list, list]:
    """A fixed, seeded hold-out of ``count`` pairs for validation; the rest trains."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    hold = sorted(order[:count].tolist())
    held = set(hold)
    return [pairs[i] for i in range(len(pairs)) if i not in held], [pairs[i] for i in hold]


class PairCache:
    """Images (N×S×S×3) and masks (N×S×S) as uint8 at side ``S``, cached on disk."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], side: int, cache_dir: str | os.PathLike[str] | None,
                 progress=None) -> None:
        self.side = side
        key = hashlib.sha256(("|".join(f"{a}:{b}" for a, b in pairs) + f"@{side}").encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"pairs-{side}-{key}.npz" if cache_dir else None
        if path is not None and path.exists():
            data = np.load(path)
            self.images, self.masks = data["images"], data["masks"]
            return
        images = np.empty((len(pairs), side, side, 3), np.uint8)
        masks = np.empty((len(pairs), side, side), np.uint8)
        items = progress(pairs, desc=f"decode {side}px", unit="img") if progress else pairs
        for i, (img_path, mask_path) in enumerate(items):
            img = read_image(img_path)
            mask = read_mask(mask_path)
            if mask.shape != (img.height, img.width):
                raise DatasetError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                                   f"its image {img.width}x{img.height}")
            images[i] = np.asarray(img.resize((side, side), Image.BILINEAR))
            masks[i] = np.asarray(Image.fromarray(mask).resize((side, side), Image.BILINEAR))
        self.images, self.masks = images, masks
        if path is not None:
            with atomic_path(path, suffix=".npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, images=images, masks=masks)

    def __len__(self) -> int:
        return len(self.images)


def to_tensors(images: np.ndarray, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NHWC images and NHW masks → normalised B×3×H×W and B×1×H×W in [0, 1]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    mean = torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD).view(1, 3, 1, 1)
    y = torch.from_numpy(masks).unsqueeze(1).float().div(255)
    return (x - mean) / std, y


def colour_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and gamma of one uint8 HWC image, each ±25 % or so."""
    x = img.astype(np.float32) / 255
    x = x * rng.uniform(0.75, 1.25)
    x = (x - x.mean()) * rng.uniform(0.75, 1.25) + x.mean()
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = grey[..., None] + (x - grey[..., None]) * rng.uniform(0.7, 1.3)
    x = np.clip(x, 0, 1) ** rng.uniform(0.8, 1.25)
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def _crop_box(side: int, mode: str, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop of a ``side``² cached image."""
    if mode == "geometric":
        h = w = int(rng.integers(int(0.6 * side), side + 1))
    else:
        scale = rng.uniform(0.3, 1.0)
        aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
        h = min(side, max(8, int(round(side * scale * np.sqrt(aspect)))))
        w = min(side, max(8, int(round(side * scale / np.sqrt(aspect)))))
    top = int(rng.integers(0, side - h + 1))
    left = int(rng.integers(0, side - w + 1))
    return top, left, h, w


def augment_batch(images: np.ndarray, masks: np.ndarray, size: int,
                  rng: np.random.Generator, mode: str = "geometric") -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop resized to ``size``, flips, 90° rotations (and for "full", colour)."""
    xs, ys = [], []
    side = images.shape[1]
    for img, mask in zip(images, masks):
        top, left, h, w = _crop_box(side, mode, rng)
        img = img[top:top + h, left:left + w]
        if mode == "full" and rng.random() < 0.8:
            img = colour_jitter(img, rng)
        x, y = to_tensors(img[None], mask[None, top:top + h, left:left + w])
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        y = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if rng.random() < 0.5:
            x, y = x.flip(3), y.flip(3)
        if rng.random() < 0.5:
            x, y = x.flip(2), y.flip(2)
        k = int(rng.integers(0, 4))
        x, y = torch.rot90(x, k, (2, 3)), torch.rot90(y, k, (2, 3))
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys).clamp(0, 1)


def plain_batch(images: np.ndarray, masks: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation: the whole cached image resized to ``size``, no augmentation."""
    x, y = to_tensors(images, masks)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        y = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x, y
