"""Salient-object-detection metrics through pysodmetrics, with the keys of DESIGN.md."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image

from .datasets import list_images, pair_files, read_mask
from .errors import DatasetError

METRIC_KEYS = ("smeasure", "mae", "wfmeasure", "max_fmeasure", "mean_fmeasure", "adp_fmeasure",
               "max_emeasure", "mean_emeasure", "adp_emeasure")
METRIC_TITLES = {
    "smeasure": "S-measure", "mae": "MAE", "wfmeasure": "weighted F", "max_fmeasure": "max F",
    "mean_fmeasure": "mean F", "adp_fmeasure": "adaptive F", "max_emeasure": "max E",
    "mean_emeasure": "mean E", "adp_emeasure": "adaptive E",
}


class SODMetrics:
    """Accumulates S-measure, MAE, F-, E- and weighted F-measure over image pairs."""

    def __init__(self) -> None:
        import py_sod_metrics as psm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Fmeasure's "use FmeasureV2" notice
            self._fm = psm.Fmeasure()
        self._wfm = psm.WeightedFmeasure()
        self._sm = psm.Smeasure()
        self._em = psm.Emeasure()
        self._mae = psm.MAE()
        self.count = 0

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one pair: ``pred`` and ``gt`` are H×W uint8 arrays of equal shape."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and mask {gt.shape} differ in shape")
        for m in (self._fm, self._wfm, self._sm, self._em, self._mae):
            m.step(pred=pred, gt=gt)
        self.count += 1

    def per_image_smeasure(self) -> list[float]:
        """The S-measure of every pair, in the order they were added."""
        return [float(v) for v in self._sm.sms]

    def results(self) -> dict[str, float]:
        if self.count == 0:
            raise DatasetError("no image pairs were evaluated")
        fm = self._fm.get_results()["fm"]
        em = self._em.get_results()["em"]
        return {
            "smeasure": float(self._sm.get_results()["sm"]),
            "mae": float(self._mae.get_results()["mae"]),
            "wfmeasure": float(self._wfm.get_results()["wfm"]),
            "max_fmeasure": float(np.max(fm["curve"])),
            "mean_fmeasure": float(np.mean(fm["curve"])),
            "adp_fmeasure": float(fm["adp"]),
            "max_emeasure": float(np.max(em["curve"])),
            "mean_emeasure": float(np.mean(em["curve"])),
            "adp_emeasure": float(em["adp"]),
        }


def fit_to(pred: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinearly resize a uint8 map to ``shape`` (H, W) when it differs."""
    if pred.shape == shape:
        return pred
    img = Image.fromarray(pred, "L").resize((shape[1], shape[0]), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def evaluate_dirs(pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str],
                  progress: Callable[[Iterable], Iterable] | None = None,
                  per_image: bool = False) -> tuple[dict, int, int]:
    """Score every prediction of ``pred_dir`` against the mask of the same stem.

    Returns ``(metrics, pairs, resized)``; predictions of another size than
    their mask are resized bilinearly (``resized`` counts them). ``per_image`` adds
    ``per_image_smeasure``: stem → S-measure (where a mean hides single images).
    """
    pairs = pair_files(list_images(pred_dir, "prediction"), list_images(gt_dir, "mask"),
                       "prediction", "mask")
    metrics = SODMetrics()
    resized = 0
    for pred_path, gt_path in (progress or (lambda x: x))(pairs):
        gt = read_mask(gt_path)
        pred = read_mask(pred_path)
        if pred.shape != gt.shape:
            resized += 1
        metrics.step(fit_to(pred, gt.shape), gt)
    results = metrics.results()
    if per_image:
        results["per_image_smeasure"] = dict(zip((p.stem for p, _ in pairs), metrics.per_image_smeasure()))
    return results, len(pairs), resized


def _plain(value: float, digits: int = 4) -> str:
    """``value`` at ``digits`` decimals; what rounds to zero prints as 0.0000, never -0.0000."""
    text = f"{value:.{digits}f}"
    return text if float(text) != 0 else f"{0:.{digits}f}"


def format_table(rows: dict[str, dict[str, float]], keys: Iterable[str] = METRIC_KEYS) -> str:
    """A plain-text table: one column per row name, one line per metric (4 decimals)."""
    names = list(rows)
    keys = list(keys)
    width = max(len(METRIC_TITLES[k]) for k in keys)
    cols = [max(10, len(n)) for n in names]
    lines = [" " * width + "  " + "  ".join(n.rjust(c) for n, c in zip(names, cols))]
    for k in keys:
        vals = "  ".join(_plain(rows[n][k]).rjust(c) for n, c in zip(names, cols))
        lines.append(METRIC_TITLES[k].ljust(width) + "  " + vals)
    return "\n".join(lines)

