"""A self-contained HTML report of a ``run``: images embedded; PNG copies and the full resources
table beside it in ``OUT/report/``.

Names (file names, process names) are HTML text, so the browser's fonts render any script; the
PNG copies draw them with a CJK-capable font when one is installed (apt's fonts-noto-cjk), else
DejaVu Sans. The resources section is a summary; the per-process table is a linked file.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path, write_text_atomic
from .datasets import read_image, read_mask
from .metrics import METRIC_KEYS, METRIC_TITLES

THUMB = 160
GRID_LIMIT = 12  # rows of the saliency grid
WORST_MAX = 3  # rows of the "differs most" view: a quarter of the images, at least 1, at most 3
TOP_PROCESSES = 10  # largest neuro-core processes listed in the resources summary
LABEL_H = 18  # height of a name line in the PNG copies
# fonts for the PNG copies, CJK coverage first (fonts-noto-cjk, WenQuanYi, Droid fallback)
FONT_FILES = ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansCJKjp-Regular.otf",
              "wqy-microhei.ttc", "wqy-zenhei.ttc", "DroidSansFallbackFull.ttf")
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
CSS_FONTS = ('"Noto Sans", "DejaVu Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", '
             '"WenQuanYi Micro Hei", "Droid Sans Fallback", sans-serif')


@functools.lru_cache(maxsize=4)
def label_font(size: int = 13) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font for names drawn into PNGs: the first CJK-capable one installed, else matplotlib's
    DejaVu Sans, else Pillow's own (a missing glyph then draws as a box, nothing fails)."""
    for folder in FONT_DIRS:
        root = Path(folder).expanduser()
        if not root.is_dir():
            continue
        for name in FONT_FILES:
            found = next(root.rglob(name), None)
            if found is not None:
                try:
                    return ImageFont.truetype(str(found), size)
                except OSError:
                    continue
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def signed(value: float, digits: int = 4) -> str:
    """``value`` with its sign at ``digits`` decimals; what rounds to zero prints unsigned
    (0.0000, never "-0.0000" or "+0.0000")."""
    text = f"{value:+.{digits}f}"
    return text if float(text) != 0 else f"{0:.{digits}f}"


METRIC_DIGITS = {"mae": 5}  # MAE values are near 0.01: 4 decimals would leave one or two digits


def _thumb(img: Image.Image) -> Image.Image:
    img = img.convert("RGB")
    img.thumbnail((THUMB, THUMB))
    canvas = Image.new("RGB", (THUMB, THUMB), "white")
    canvas.paste(img, ((THUMB - img.width) // 2, (THUMB - img.height) // 2))
    return canvas


def _tiles(out: Path, path: Path, gt: Path | None) -> list[Image.Image]:
    """Thumbnails of one row: image, ground truth (with ``gt``), float map, integer map."""
    tiles = [read_image(path)]
    if gt:
        mask = next(iter(sorted(gt.glob(f"{path.stem}.*"))), None)
        tiles.append(Image.fromarray(read_mask(mask)) if mask else Image.new("L", (8, 8)))
    for kind in ("float", "integer"):
        tiles.append(Image.open(out / "maps" / kind / f"{path.stem}.png"))
    return [_thumb(t) for t in tiles]


def _columns(gt: Path | None) -> list[str]:
    return ["image"] + (["ground truth"] if gt else []) + ["float", "integer (bit-exact sim)"]


def saliency_grid(out: Path, files: list[Path], gt: Path | None, limit: int = GRID_LIMIT,
                  labels: dict[str, str] | None = None) -> Image.Image:
    """The PNG copy of the grid: rows of image | ground truth | float map | integer map, each row
    under its file name (``labels``: a caption per stem instead)."""
    columns = _columns(gt)
    rows = files[:limit]
    font = label_font()
    row_h = THUMB + 8 + LABEL_H
    grid = Image.new("RGB", (len(columns) * (THUMB + 8) + 8, 26 + len(rows) * row_h), "white")
    draw = ImageDraw.Draw(grid)
    for j, title in enumerate(columns):
        draw.text((8 + j * (THUMB + 8), 6), title, fill="black", font=font)
    for i, path in enumerate(rows):
        top = 26 + i * row_h
        draw.text((8, top), (labels or {}).get(path.stem, path.name), fill="black", font=font)
        for j, tile in enumerate(_tiles(out, path, gt)):
            grid.paste(tile, (8 + j * (THUMB + 8), top + LABEL_H))
    return grid


def per_image_delta(metrics: dict) -> dict[str, float]:
    """stem → S_integer − S_float, from a run's metrics (empty when they lack per-image values)."""
    f = (metrics.get("float") or {}).get("per_image_smeasure") or {}
    i = (metrics.get("integer") or {}).get("per_image_smeasure") or {}
    return {stem: i[stem] - f[stem] for stem in f if stem in i}


def worst_count(n: int) -> int:
    """Rows of the "differs most" view for ``n`` images: a view of the few, not the grid again."""
    return min(WORST_MAX, max(1, n // 4)) if n else 0


def delta_histogram(delta: dict[str, float]) -> Image.Image:
    """Histogram of the per-image ΔS on symmetric bins around 0 (integer image counts), the ±0.01
    band marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

    values = np.asarray(list(delta.values()), dtype=float)
    lim = max(0.0125, float(np.abs(values).max(initial=0)) * 1.1)
    bins = np.linspace(-lim, lim, 2 * max(5, min(20, len(values))) + 1)
    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    counts, _, _ = ax.hist(values, bins=bins, color="#4a6fb5")
    ax.axvspan(-0.01, 0.01, color="#9c9", alpha=0.3, label="|ΔS| ≤ 0.01")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlim(-lim, lim)
    ticks = [t for t in MaxNLocator(nbins=6, symmetric=True).tick_values(-lim, lim) if -lim <= t <= lim]
    step = ticks[1] - ticks[0]
    decimals = next(d for d in range(2, 8) if all(abs(round(t, d) - t) < step * 1e-6 for t in ticks))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: signed(x, decimals)))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    ax.set_ylim(0, max(1.0, float(counts.max(initial=0))) * 1.2)
    ax.set_xlabel("ΔS = S-measure integer − float, per image")
    ax.set_ylabel("images")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue()))


def _img_tag(img: Image.Image, alt: str, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    mime = "jpeg" if fmt == "JPEG" else "png"
    return (f'<img alt="{html.escape(alt)}" width="{img.width}" height="{img.height}" '
            f'src="data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode()}">')


def grid_table(out: Path, rows: Iterable[Path], gt: Path | None, delta: dict[str, float], css: str) -> str:
    """The grid as an HTML table: one row per image, its file name as text beside the thumbnails
    (the photo as JPEG, the masks and maps as PNG)."""
    columns = _columns(gt)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["file", *columns])
    body = []
    for path in rows:
        cells = [_img_tag(tile, f"{path.name}: {title}", "JPEG" if j == 0 else "PNG")
                 for j, (tile, title) in enumerate(zip(_tiles(out, path, gt), columns))]
        ds = f'<br><span class="ds">ΔS {signed(delta[path.stem])}</span>' if path.stem in delta else ""
        body.append(f'<tr><th scope="row" class="name"><span class="file">{html.escape(path.name)}</span>{ds}</th>'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="{css}"><tr>{head}</tr>\n' + "\n".join(body) + "\n</table>"


def _per_image_section(out: Path, files: list[Path], gt: Path | None, delta: dict[str, float], copies: Path) -> str:
    if not delta:
        return ""
    mean_abs = sum(abs(v) for v in delta.values()) / len(delta)
    ranked = sorted(delta, key=lambda k: -abs(delta[k]))
    within = sum(abs(v) <= 0.01 for v in delta.values())
    hist = delta_histogram(delta)
    by_stem = {p.stem: p for p in files}
    shown = [by_stem[k] for k in ranked[:worst_count(len(delta))] if k in by_stem]
    grid = saliency_grid(out, shown, gt, limit=len(shown),
                         labels={p.stem: f"{p.name}: ΔS {signed(delta[p.stem])}" for p in shown})
    for name, img in (("per_image_delta_s.png", hist), ("worst_images.png", grid)):
        with atomic_path(copies / name, suffix=".png") as tmp:
            img.save(tmp, format="PNG")
    worst = by_stem[ranked[0]].name if ranked[0] in by_stem else ranked[0]
    rows = "the image" if len(shown) == 1 else f"the {len(shown)} images"
    return f"""<h2>Image by image: float vs integer</h2>
<p>S-measure per image, integer − float: mean |ΔS| {mean_abs:.4f}, worst {signed(delta[ranked[0]])}
({html.escape(worst)}); {within} of {len(delta)} images within ±0.01.</p>
{_img_tag(hist, "per-image delta S histogram")}
<h3 id="worst">Where the integer model differs most: {rows} of largest |ΔS|</h3>
<section class="worst">
{grid_table(out, shown, gt, delta, "grid worst")}
</section>
"""


def _metrics_rows(metrics: dict) -> str:
    rows = ""
    for k in METRIC_KEYS if metrics else ():
        f, i = metrics["float"][k], metrics["integer"][k]  # per-image values are not rows
        d = METRIC_DIGITS.get(k, 4)
        rows += f"<tr><td>{METRIC_TITLES[k]}</td><td>{f:.{d}f}</td><td>{i:.{d}f}</td><td>{signed(i - f, d)}</td></tr>"
    return rows or '<tr><td colspan="4">no masks given</td></tr>'


def _hardware_table(b: dict, export: dict) -> str:
    shared = b.get("conv_weights") == "shared"
    stored = b.get("stored_synapses", b["shared_weights"] if shared else b["synapses"])
    model = "Conv kernels per core" if shared else "one per source–destination pair"
    return f"""<table>
<tr><th>neurons</th><td>{b['neurons']:,}</td><th>synapses (one per source–destination pair)</th>
<td>{b['synapses']:,}</td></tr>
<tr><th>unique weights</th><td>{b['shared_weights']:,}</td><th>stored synapses ({model})</th><td>{stored:,}</td></tr>
<tr><th>neuro-cores</th><td>{b['cores']:,}</td><th>chips</th>
<td>{b['chips']} (lower bound {b['lower_bound_chips']})</td></tr>
<tr><th>board</th><td>{html.escape(b['board'])}</td><th>synaptic ops in standard NIR</th>
<td>{100 * export.get('standard_synop_share', 0):.2f} %</td></tr>
<tr><th>parameters</th><td>{export.get('parameters', 0):,}</td><th>target</th><td>{html.escape(b['target'])}</td></tr>
</table>"""


def resources_section(build: Path, copies: Path, b: dict) -> str:
    """A summary of the per-process resources (classes, the largest processes, what runs off the
    neuro-cores) and a link to the whole table, copied to ``report/resources.txt``."""
    table = build / "resources.txt"
    link = ""
    if table.exists():
        shutil.copyfile(table, copies / "resources.txt")
        lines = len(table.read_text().splitlines())
        link = (f'<p>The whole table, every process with its neurons, synapses, stored synapses and cores: '
                f'<a href="report/resources.txt">report/resources.txt</a> ({lines:,} lines; also '
                f'<code>build/resources.json</code>).</p>')
    path = build / "resources.json"
    if not path.exists():
        return f"<h2>Resources and placement</h2>\n{link}"
    rows = json.loads(path.read_text())
    neuro = [r for r in rows if r.get("placement") == "neuro-core"]
    off = [r for r in rows if r.get("placement") != "neuro-core"]
    kinds = ", ".join(f"{n} {html.escape(k)}" for k, n in Counter(r["kind"] for r in neuro).most_common())
    where = Counter(r["placement"] for r in off)
    ops = {p: sum(r.get("ops", 0) for r in off if r["placement"] == p) for p in where}
    off_text = "; ".join(f"{n} on the {html.escape(p)} cores ({ops[p]:,} operations per image)" if p == "embedded"
                         else f"{n} on the {html.escape(p)} ({ops[p]:,} operations per image)"
                         for p, n in where.most_common())
    top = sorted(neuro, key=lambda r: -r["cores"])[:TOP_PROCESSES]
    body = "\n".join(
        f"<tr><td class=\"proc\">{html.escape(r['name'])}</td><td>{html.escape(r['kind'])}</td>"
        f"<td>{r['neurons']:,}</td><td>{r['synapses']:,}</td><td>{r.get('stored', r['synapses']):,}</td>"
        f"<td>{r['cores']:,}</td></tr>" for r in top)
    share = sum(r["cores"] for r in top) / max(1, sum(r["cores"] for r in neuro))
    return f"""<h2>Resources and placement</h2>
<p>{len(neuro):,} processes on neuro-cores ({kinds}) take {b['cores']:,} neuro-cores on {b['chips']} chips
(lower bound {b['lower_bound_chips']}) of {html.escape(b['board'])}; {len(off)} processes run elsewhere
({off_text or 'none'}).</p>
<p>The {len(top)} largest processes ({100 * share:.0f} % of the cores):</p>
<table class="num"><tr><th>process</th><th>class</th><th>neurons</th><th>synapses</th><th>stored</th><th>cores</th></tr>
{body}
</table>
{link}"""


def _file_b64(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode() if path.exists() else None


def write_report(out: Path, files: list[Path], gt: Path | None, summary: dict) -> Path:
    copies = out / "report"
    copies.mkdir(exist_ok=True)
    with atomic_path(copies / "saliency_grid.png", suffix=".png") as tmp:
        saliency_grid(out, files, gt).save(tmp, format="PNG")
    build = out / "build"
    firing = _file_b64(build / "firing_rates.png")
    if firing:
        (copies / "firing_rates.png").write_bytes((build / "firing_rates.png").read_bytes())
    export = json.loads((out / "export-summary.json").read_text()) if (out / "export-summary.json").exists() else {}
    metrics = summary.get("metrics") or {}
    delta = per_image_delta(metrics)
    b = summary["build"]
    energy = (build / "energy.txt").read_text() if (build / "energy.txt").exists() else "(no energy report)"
    h, w = summary["input_size"]
    shown = files[:GRID_LIMIT]
    more = f"<p>The first {len(shown)} of {len(files)} images.</p>" if len(files) > len(shown) else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lensnet-deploy report</title>
<style>
body {{ font-family: {CSS_FONTS}; margin: 24px; color: #222; max-width: 1200px; }} h1 {{ font-size: 22px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }} td, th {{ border: 1px solid #bbb; padding: 4px 10px; }}
th {{ background: #eef; }} pre {{ background: #f6f6f6; padding: 10px; font-size: 12px; }}
pre.wrap {{ white-space: pre-wrap; overflow-wrap: anywhere; }}
img {{ max-width: 100%; height: auto; }} .figures {{ display: flex; gap: 24px; flex-wrap: wrap; }}
table.grid td {{ padding: 2px; border: none; }} table.grid th {{ border: none; background: none; text-align: left; }}
table.grid th.name {{ width: 170px; max-width: 170px; overflow-wrap: anywhere; font-weight: normal;
  vertical-align: middle; }}
table.grid .file {{ font-weight: bold; }} table.grid .ds, table.num td {{ font-variant-numeric: tabular-nums; }}
table.num td {{ text-align: right; }} table.num td.proc {{ text-align: left; overflow-wrap: anywhere; }}
</style></head><body>
<h1>lensnet-deploy: {html.escape(summary['checkpoint'])} at {h}×{w}, {summary['images']} images</h1>
<p>checkpoint → NIR (float64, exact) → integer NIR (int8 weights, 24-bit state) →
{html.escape(b['target'])} build on {html.escape(b['board'])} → bit-exact integer simulation.</p>
<h2>Saliency quality: float vs integer</h2>
<table><tr><th>metric</th><th>float</th><th>integer</th><th>Δ</th></tr>
{_metrics_rows(metrics)}</table>
{_per_image_section(out, files, gt, delta, copies)}
<h2 id="maps">Saliency maps</h2>
{more}{grid_table(out, shown, gt, delta, "grid all")}
<h2>Hardware</h2>
{_hardware_table(b, export)}
<h2>Energy per image</h2><pre class="wrap">{html.escape(energy)}</pre>
<h2>Firing rates</h2>
<div class="figures">{f'<img alt="firing rates" src="data:image/png;base64,{firing}">' if firing else ''}</div>
{resources_section(build, copies, b)}
</body></html>
"""
    path = out / "report.html"
    write_text_atomic(path, page)
    return path
