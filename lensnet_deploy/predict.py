"""Float inference writing saliency PNGs the authors' way.

p1 logits → bilinear resize to the image's own size (align_corners False) →
sigmoid → min-max to [0, 1] → ×255 truncated to uint8 → PNG named by stem.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .atomic import write_bytes_atomic
from .datasets import check_outputs_apart, list_images, normalize, read_image
from .errors import DatasetError
from .model_zoo import check_input_size
from .provenance import Hashes


def saliency_map(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """One 1×H×W (or H×W) logit map → H'×W' uint8 saliency at ``size`` (H', W')."""
    x = logits.reshape(1, 1, *logits.shape[-2:]).float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    s = torch.sigmoid(x).reshape(x.shape[-2:]).cpu().numpy()  # H'×W' even where a side is 1
    s = (s - s.min()) / (s.max() - s.min() + 1e-8)
    return (s * 255).astype(np.uint8)


def write_png(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a uint8 H×W array as a grayscale PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(array, "L").save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def check_output_dir(out_dir: str | os.PathLike[str], *inputs: str | os.PathLike[str]) -> Path:
    """Refuse an output folder that is one of the input folders or lies inside one (symlinks
    resolved: never write into inputs); create it."""
    out = Path(out_dir)
    check_outputs_apart([out], [("folder", src) for src in inputs])
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"{out}: cannot create output folder ({err.strerror})") from None
    if not os.access(out, os.W_OK):
        raise DatasetError(f"{out}: output folder is not writable")
    return out


def batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


MANIFEST = ".lensnet-maps.json"
MANIFEST_FORMAT = 2


def _pending(files: Sequence[Path], out: Path, key: str | None, hashes: Hashes | None = None) -> list[Path]:
    """With a ``key`` (the model's digest): the files whose map is not yet in ``out`` from the
    same model and the same image content (a rerun resumes; a changed image is simulated again).

    The manifest ``out/.lensnet-maps.json`` holds, per map, the model key and the sha256 of its
    source image. It is written before any map: a map whose entry changes is removed first, so
    a map present on disk was always made by its entry (an interrupted run never leaves a stale
    map behind a new entry)."""
    if key is None:
        return list(files)
    hashes = Hashes() if hashes is None else hashes
    manifest = out / MANIFEST
    try:
        data = json.loads(manifest.read_text())
        entries = dict(data["maps"]) if data.get("format") == MANIFEST_FORMAT else {}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        entries = {}
    pending: list[Path] = []
    changed = False
    for path in files:
        name = f"{path.stem}.png"
        want = {"model": key, "image": hashes(path)}
        if entries.get(name) == want:
            if not (out / name).exists():
                pending.append(path)
            continue
        pending.append(path)
        (out / name).unlink(missing_ok=True)  # from another model or image: never reused
        entries[name] = want
        changed = True
    if changed or not manifest.exists():
        write_bytes_atomic(manifest, json.dumps({"format": MANIFEST_FORMAT, "maps": entries}, indent=0,
                                                sort_keys=True).encode())
    return pending


def write_maps(files: Sequence[Path], size: tuple[int, int], out: Path,
               logits_of: Callable[[torch.Tensor], torch.Tensor] | None, batch_size: int = 8,
               progress: Callable[[Iterable, int], Iterable] | None = None, *,
               run_batches: Callable[[list[Callable[[], torch.Tensor]]], Iterable[tuple[int, torch.Tensor]]]
               | None = None, key: str | None = None, hashes: Hashes | None = None) -> list[Path]:
    """The one image-folder loop: read ``files`` in batches, normalise them at ``size``, take the
    p1 logits from ``logits_of`` (or from ``run_batches``, which gets every batch's loader and
    yields ``(batch index, logits)`` in any order: a cluster) and write each image's saliency
    map as ``out/<stem>.png`` at the image's own size. ``key``: see ``_pending``; ``hashes``: the
    run's file hashes (``provenance.Hashes``), so that no image is read twice for its sha256."""
    groups = list(batches(_pending(files, out, key, hashes), max(1, batch_size)))
    sizes: dict[Path, tuple[int, int]] = {}

    def loader(group: Sequence[Path]) -> Callable[[], torch.Tensor]:
        def load() -> torch.Tensor:
            rgbs = [read_image(p) for p in group]
            sizes.update((p, (img.height, img.width)) for p, img in zip(group, rgbs))
            return torch.stack([normalize(img, size) for img in rgbs])
        return load

    def sequential() -> Iterator[tuple[int, torch.Tensor]]:
        assert logits_of is not None
        for index, group in enumerate(groups):
            x = loader(group)()
            with torch.no_grad():
                yield index, logits_of(x)

    results = sequential() if run_batches is None else run_batches([loader(g) for g in groups])
    done = ([(p, lg) for p, lg in zip(groups[i], logits)] for i, logits in results)
    written: list[Path] = []
    total = sum(len(g) for g in groups)
    for pairs in progress(done, total) if progress else done:
        for path, lg in pairs:
            target = out / f"{path.stem}.png"
            write_png(saliency_map(lg.float(), sizes.pop(path)), target)
            written.append(target)
    return written


def predict_dir(model: torch.nn.Module, images_dir: str | os.PathLike[str],
                out_dir: str | os.PathLike[str], size: tuple[int, int] | None = None,
                batch_size: int = 4,
                progress: Callable[[Iterable, int], Iterable] | None = None) -> list[Path]:
    """Predict every image of ``images_dir`` at ``size`` and write ``out_dir/<stem>.png``."""
    size = tuple(size or model.input_size)  # type: ignore[assignment]
    check_input_size(size)
    files = list_images(images_dir)
    out = check_output_dir(out_dir, images_dir)
    model.eval()
    return write_maps(files, size, out, lambda x: model(x)[0], batch_size, progress)
