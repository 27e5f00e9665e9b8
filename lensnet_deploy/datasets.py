"""ORSI saliency datasets: folder layouts, image/mask reading, the authors' preprocessing.

Layouts: ORSSD/EORSSD (``{split}-images`` + ``{split}-labels``) and the common
``Image`` + ``GT``. Images and masks pair by file stem. Grayscale, RGBA,
palette and 16-bit files are read; anything else unreadable is one
:class:`DatasetError` line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError
from .normalization import INPUT_MEAN, INPUT_STD

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SHOW = 3


def list_images(folder: str | os.PathLike[str], what: str = "image") -> list[Path]:
    """Image files of ``folder`` sorted by name; an error if there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such {what} folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{folder}: no {what} files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def resolve_layout(root: str | os.PathLike[str], split: str = "test") -> tuple[Path, Path]:
    """``(images_dir, masks_dir)`` of a dataset root in either supported layout."""
    root = Path(root)
    candidates = [(root / f"{split}-images", root / f"{split}-labels"), (root / "Image", root / "GT"),
                  (root / split / "Image", root / split / "GT")]
    for images, masks in candidates:
        if images.is_dir() and masks.is_dir():
            return images, masks
    raise DatasetError(f"{root}: no dataset layout found (expected {split}-images/{split}-labels "
                       f"or Image/GT folders)")


def _names(paths: Sequence[Path]) -> str:
    shown = ", ".join(p.name for p in paths[:SHOW])
    return shown + (f", … {len(paths) - SHOW} more" if len(paths) > SHOW else "")


def pair_files(images: Sequence[Path], masks: Sequence[Path], left: str = "image",
               right: str = "mask") -> list[tuple[Path, Path]]:
    """Pair two file lists by stem; any file without its partner is an error."""
    by_stem = {p.stem: p for p in masks}
    if len(by_stem) != len(masks):
        raise DatasetError(f"two {right} files share a name stem in {masks[0].parent}")
    lonely_left = [p for p in images if p.stem not in by_stem]
    stems = {p.stem for p in images}
    lonely_right = [p for p in masks if p.stem not in stems]
    problems = []
    if lonely_left:
        problems.append(f"{len(lonely_left)} {left}(s) with no {right} ({_names(lonely_left)})")
    if lonely_right:
        problems.append(f"{len(lonely_right)} {right}(s) with no {left} ({_names(lonely_right)})")
    if problems:
        raise DatasetError(f"{images[0].parent} vs {masks[0].parent}: " + "; ".join(problems))
    return [(p, by_stem[p.stem]) for p in images]


def pair_dataset(images_dir: str | os.PathLike[str], masks_dir: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    return pair_files(list_images(images_dir), list_images(masks_dir, "mask"))


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DatasetError(f"{path}: unreadable image ({err})") from None
    if img.width == 0 or img.height == 0:
        raise DatasetError(f"{path}: image has zero size ({img.width}x{img.height})")
    return img


def _wide_to_uint8(img: Image.Image) -> np.ndarray:
    """16-bit, 32-bit integer or float single-channel data scaled to 0..255."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        arr = arr / 65535.0 * 255.0
    elif img.mode == "F" and arr.size and float(arr.max()) <= 1.0:
        arr = arr * 255.0
    elif arr.size and float(arr.max()) > 255.0:
        arr = arr / 65535.0 * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def to_gray_uint8(img: Image.Image) -> np.ndarray:
    """Any PIL mode to an H×W uint8 array (palette by colour, alpha ignored)."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return _wide_to_uint8(img)
    return np.asarray(img.convert("L"), dtype=np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB (grayscale replicated, alpha dropped, 16-bit scaled)."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return Image.fromarray(_wide_to_uint8(img), "L").convert("RGB")
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """An image file as 8-bit RGB."""
    return to_rgb(_open(Path(path)))


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask or saliency map file as an H×W uint8 array."""
    return to_gray_uint8(_open(Path(path)))


def normalize(rgb: Image.Image, size: tuple[int, int] | None) -> torch.Tensor:
    """The authors' preprocessing: bilinear resize to ``size`` (H, W), /255, the ImageNet
    mean (rounded to whole pixel levels, ``normalization.py``) and std."""
    if size is not None:
        h, w = size
        rgb = rgb.resize((int(w), int(h)), Image.BILINEAR)
    arr = np.asarray(rgb, dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(INPUT_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(INPUT_STD, dtype=torch.float32).view(3, 1, 1)
    return t.sub(mean).div(std)


def load_images(paths: Sequence[str | os.PathLike[str]], size: tuple[int, int]) -> torch.Tensor:
    """Read and preprocess image files into a B×3×H×W tensor."""
    return torch.stack([normalize(read_image(p), size) for p in paths])


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of the ImageNet normalisation, clamped to [0, 1] (for display)."""
    mean = torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD).view(1, 3, 1, 1)
    return (images * std + mean).clamp(0, 1)
