"""A self-contained HTML report of a ``run`` (images and plots embedded; PNG copies beside it)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from .atomic import atomic_path, write_text_atomic
from .datasets import read_image, read_mask
from .metrics import METRIC_KEYS, METRIC_TITLES

THUMB = 160


def _thumb(img: Image.Image) -> Image.Image:
    img = img.convert("RGB")
    img.thumbnail((THUMB, THUMB))
    canvas = Image.new("RGB", (THUMB, THUMB), "white")
    canvas.paste(img, ((THUMB - img.width) // 2, (THUMB - img.height) // 2))
    return canvas


def saliency_grid(out: Path, files: list[Path], gt: Path | None, limit: int = 12,
                  labels: dict[str, str] | None = None) -> Image.Image:
    """Rows of image | ground truth | float map | integer map (``labels``: a caption per stem)."""
    columns = ["image"] + (["ground truth"] if gt else []) + ["float", "integer (bit-exact sim)"]
    rows = files[:limit]
    row_h = THUMB + 8 + (14 if labels else 0)
    grid = Image.new("RGB", (len(columns) * (THUMB + 8) + 8, 24 + len(rows) * row_h), "white")
    draw = ImageDraw.Draw(grid)
    for j, title in enumerate(columns):
        draw.text((8 + j * (THUMB + 8), 6), title, fill="black")
    for i, path in enumerate(rows):
        top = 24 + i * row_h
        if labels:
            draw.text((8, top), labels.get(path.stem, path.stem), fill="black")
            top += 14
        tiles = [read_image(path)]
        if gt:
            mask = next(iter(sorted(gt.glob(f"{path.stem}.*"))), None)
            tiles.append(Image.fromarray(read_mask(mask)) if mask else Image.new("L", (8, 8)))
        for kind in ("float", "integer"):
            tiles.append(Image.open(out / "maps" / kind / f"{path.stem}.png"))
        for j, tile in enumerate(tiles):
            grid.paste(_thumb(tile), (8 + j * (THUMB + 8), top))
    return grid


def per_image_delta(metrics: dict) -> dict[str, float]:
    """stem → S_integer − S_float, from a run's metrics (empty when they lack per-image values)."""
    f = (metrics.get("float") or {}).get("per_image_smeasure") or {}
    i = (metrics.get("integer") or {}).get("per_image_smeasure") or {}
    return {stem: i[stem] - f[stem] for stem in f if stem in i}


def delta_histogram(delta: dict[str, float]) -> Image.Image:
    """Histogram of the per-image ΔS, the ±0.01 band marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    values = list(delta.values())
    ax.hist(values, bins=max(5, min(40, len(values))), color="#4a6fb5")
    ax.axvspan(-0.01, 0.01, color="#9c9", alpha=0.3, label="|ΔS| ≤ 0.01")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("S-measure, integer − float, per image")
    ax.set_ylabel("images")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue()))


def _per_image_section(out: Path, files: list[Path], gt: Path | None, metrics: dict, copies: Path) -> str:
    delta = per_image_delta(metrics)
    if not delta:
        return ""
    mean_abs = sum(abs(v) for v in delta.values()) / len(delta)
    worst = sorted(delta, key=lambda k: -abs(delta[k]))
    within = sum(abs(v) <= 0.01 for v in delta.values())
    hist = delta_histogram(delta)
    by_stem = {p.stem: p for p in files}
    shown = [by_stem[k] for k in worst[:3] if k in by_stem]
    captions = {k: f"{k}: S integer - S float = {delta[k]:+.4f}" for k in worst[:3]}
    grid = saliency_grid(out, shown, gt, limit=3, labels=captions)
    for name, img in (("per_image_delta_s.png", hist), ("worst_images.png", grid)):
        with atomic_path(copies / name, suffix=".png") as tmp:
            img.save(tmp, format="PNG")
    return f"""<h2>Image by image: float vs integer</h2>
<p>S-measure per image, integer − float: mean |ΔS| {mean_abs:.4f}, worst {delta[worst[0]]:+.4f}
({html.escape(worst[0])}); {within} of {len(delta)} images within ±0.01.</p>
<img alt="per-image delta S histogram" src="data:image/png;base64,{_png_b64(hist)}">
<h3>The images where the integer model differs most</h3>
<img alt="worst images" src="data:image/png;base64,{_png_b64(grid)}">
"""


def _png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _file_b64(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode() if path.exists() else None


def write_report(out: Path, files: list[Path], gt: Path | None, summary: dict) -> Path:
    grid = saliency_grid(out, files, gt)
    copies = out / "report"
    copies.mkdir(exist_ok=True)
    with atomic_path(copies / "saliency_grid.png", suffix=".png") as tmp:
        grid.save(tmp, format="PNG")
    build = out / "build"
    firing = _file_b64(build / "firing_rates.png")
    if firing:
        (copies / "firing_rates.png").write_bytes((build / "firing_rates.png").read_bytes())
    export = json.loads((out / "export-summary.json").read_text()) if (out / "export-summary.json").exists() else {}
    metrics = summary.get("metrics") or {}
    rows = ""
    if metrics:
        for k in METRIC_KEYS:
            f, i = metrics["float"][k], metrics["integer"][k]  # per-image values are not rows
            rows += f"<tr><td>{METRIC_TITLES[k]}</td><td>{f:.4f}</td><td>{i:.4f}</td><td>{i - f:+.4f}</td></tr>"
    b = summary["build"]
    energy = (build / "energy.txt").read_text() if (build / "energy.txt").exists() else "(no energy report)"
    resources = (build / "resources.txt").read_text() if (build / "resources.txt").exists() else ""
    h, w = summary["input_size"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lensnet-deploy report</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }} h1 {{ font-size: 22px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }} td, th {{ border: 1px solid #bbb; padding: 4px 10px; }}
th {{ background: #eef; }} pre {{ background: #f6f6f6; padding: 10px; font-size: 12px; overflow-x: auto; }}
img {{ max-width: 100%; }} .figures {{ display: flex; gap: 24px; flex-wrap: wrap; }}
</style></head><body>
<h1>lensnet-deploy: {html.escape(summary['checkpoint'])} at {h}×{w}, {summary['images']} images</h1>
<p>checkpoint → NIR (float64, exact) → integer NIR (int8 weights, 24-bit state) →
{html.escape(b['target'])} build on {html.escape(b['board'])} → bit-exact integer simulation.</p>
<h2>Saliency quality: float vs integer</h2>
<table><tr><th>metric</th><th>float</th><th>integer</th><th>Δ</th></tr>
{rows or '<tr><td>no masks given</td></tr>'}</table>
{_per_image_section(out, files, gt, metrics, copies)}
<h2>Saliency maps</h2>
<img alt="saliency grid" src="data:image/png;base64,{_png_b64(grid)}">
<h2>Hardware</h2>
<table>
<tr><th>neurons</th><td>{b['neurons']:,}</td><th>synapses (no sharing)</th><td>{b['synapses']:,}</td></tr>
<tr><th>unique weights</th><td>{b['shared_weights']:,}</td><th>neuro-cores</th><td>{b['cores']:,}</td></tr>
<tr><th>chips</th><td>{b['chips']} (lower bound {b['lower_bound_chips']})</td><th>board</th>
<td>{html.escape(b['board'])}</td></tr>
<tr><th>synaptic ops in standard NIR</th><td>{100 * export.get('standard_synop_share', 0):.2f} %</td>
<th>parameters</th><td>{export.get('parameters', 0):,}</td></tr>
</table>
<h2>Energy per image</h2><pre>{html.escape(energy)}</pre>
<h2>Firing rates</h2>
<div class="figures">{f'<img alt="firing rates" src="data:image/png;base64,{firing}">' if firing else ''}</div>
<h2>Resources and placement per layer</h2><pre>{html.escape(resources)}</pre>
</body></html>
"""
    path = out / "report.html"
    write_text_atomic(path, page)
    return path
