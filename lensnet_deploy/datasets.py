"""ORSI saliency datasets: folder layouts, image/mask reading, the authors' preprocessing.

Layouts: ORSSD/EORSSD (``{split}-images`` + ``{split}-labels``) and the common
``Image`` + ``GT``. Images and masks pair by file stem, so two files of one
stem in a folder (``a.jpg``, ``a.png``) are refused, as is an entry with an
image suffix that is not a readable file (a broken link): a map would be
lost or an image left out silently. Grayscale, RGBA, palette and 16-bit files
are read; an image must have at least ``MIN_SIDE`` pixels a side and at most
``export.limits.max_image_pixels()`` pixels (PIL's decompression-bomb limit at
the default memory limit); anything else unreadable is one
:class:`DatasetError` line.

Listing folders and checking paths needs no torch (the CLI checks its
arguments before it loads a model).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError
from .normalization import INPUT_MEAN, INPUT_STD, from_pixels

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SHOW = 3
MIN_SIDE = 2  # a saliency map is min-max normalised: one row or column of one pixel holds no map


def list_images(folder: str | os.PathLike[str], what: str = "image") -> list[Path]:
    """Image files of ``folder`` sorted by name; an error if there is none, if two share a
    name stem, or if an entry with an image suffix is not a readable file (a broken link, a
    folder). Hidden files and other suffixes are not images and are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such {what} folder")
    entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    broken = [p for p in entries if not p.is_file()]
    if broken:
        kinds = {p: "broken link" if p.is_symlink() and not p.exists() else "not a file" for p in broken}
        shown = ", ".join(f"{p.name} ({kinds[p]})" for p in broken[:SHOW])
        more = f", … {len(broken) - SHOW} more" if len(broken) > SHOW else ""
        verb = "entry is not a readable file" if len(broken) == 1 else "entries are not readable files"
        raise DatasetError(f"{folder}: {len(broken)} {what} {verb}: {shown}{more}")
    files = entries  # every entry is a regular file now
    if not files:
        raise DatasetError(f"{folder}: no {what} files ({', '.join(IMAGE_SUFFIXES)})")
    by_stem: dict[str, Path] = {}
    for p in files:
        if p.stem in by_stem:
            raise DatasetError(f"{folder}: {by_stem[p.stem].name} and {p.name} share the name stem {p.stem!r} "
                               f"(one map per stem); rename or remove one")
        by_stem[p.stem] = p
    return files


def check_outputs_apart(outputs: Iterable[str | os.PathLike[str] | None],
                        inputs: Iterable[tuple[str, str | os.PathLike[str] | None]]) -> None:
    """Refuse (one :class:`DatasetError`) an output path that is one of the inputs or lies inside
    an input folder, symlinks resolved; ``inputs`` are ``(noun, path)`` pairs ("image folder",
    …) and ``None`` paths are skipped."""
    ins = [(noun, Path(p), Path(p).resolve()) for noun, p in inputs if p is not None]
    for out in outputs:
        if out is None:
            continue
        target = Path(out).resolve()
        for noun, given, src in ins:
            if target == src and src.is_dir():
                raise DatasetError(f"{out}: output folder is the input {noun}; choose another")
            if target == src:
                raise DatasetError(f"{out}: output would overwrite the input {noun}")
            if src.is_dir() and target.is_relative_to(src):
                raise DatasetError(f"{out}: output lies inside the input {noun} {given}; write it elsewhere "
                                   f"(inputs are never overwritten)")


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
    """Open and decode an image after checking its size from the header: PIL's own bomb check
    (an exception, or a warning on stderr) is replaced by the memory limit's, with the size."""
    from .export.limits import max_image_pixels

    limit = max_image_pixels()
    pil_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # checked here, before decoding, against our limit
    try:
        img = Image.open(path)
        if img.width * img.height > limit:
            raise DatasetError(f"{path}: image of {img.width}x{img.height} = {img.width * img.height:,} pixels, "
                               f"beyond the limit of {limit:,} (raise it with --max-memory GIB)")
        img.load()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DatasetError(f"{path}: unreadable image ({err})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit
    if img.width == 0 or img.height == 0:
        raise DatasetError(f"{path}: image has zero size ({img.width}x{img.height})")
    if img.width < MIN_SIDE or img.height < MIN_SIDE:
        raise DatasetError(f"{path}: image of {img.width}x{img.height} pixels; at least {MIN_SIDE}x{MIN_SIDE} "
                           f"needed for a saliency map")
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


def pixels(rgb: Image.Image, size: tuple[int, int] | None) -> torch.Tensor:
    """The authors' resize: bilinear to ``size`` (H, W), as 3×H×W uint8 pixels."""
    import torch

    if size is not None:
        h, w = size
        rgb = rgb.resize((int(w), int(h)), Image.BILINEAR)
    arr = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def normalize(rgb: Image.Image, size: tuple[int, int] | None) -> torch.Tensor:
    """The authors' preprocessing: bilinear resize to ``size`` (H, W), /255, the ImageNet
    mean (rounded to whole pixel levels, ``normalization.py``) and std."""
    return from_pixels(pixels(rgb, size))


def load_pixels(paths: Sequence[str | os.PathLike[str]], size: tuple[int, int]) -> torch.Tensor:
    """Read and resize image files into B×3×H×W uint8 pixels (what the integer model reads)."""
    import torch

    if not paths:
        raise DatasetError("no images to load (a count of 0?)")
    return torch.stack([pixels(read_image(p), size) for p in paths])


def load_images(paths: Sequence[str | os.PathLike[str]], size: tuple[int, int]) -> torch.Tensor:
    """Read and preprocess image files into a B×3×H×W tensor (``from_pixels`` of
    ``load_pixels``: the integer model recovers the pixels exactly)."""
    import torch

    if not paths:
        raise DatasetError("no images to load (a count of 0?)")
    return torch.stack([normalize(read_image(p), size) for p in paths])


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of the ImageNet normalisation, clamped to [0, 1] (for display)."""
    import torch

    mean = torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD).view(1, 3, 1, 1)
    return (images * std + mean).clamp(0, 1)
