"""The HTML report of `run`, written from a hand-made run folder (no pipeline): file names on every
row (CJK included), the "differs most" view holds only its rows, no negative zero, a bounded
resources summary linking the whole table, the energy text wrapped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lensnet_deploy.report import GRID_LIMIT, signed, worst_count, write_report

CJK = "图像.jpg"


def _run_folder(tmp_path: Path, n: int) -> tuple[Path, list[Path], Path, dict, dict[str, float]]:
    """A run's outputs for ``n`` images (one named 图像.jpg, one with markup in its name): images,
    masks, float and integer maps, a build of 800 resource lines, metrics whose MAE differs by 1e-8."""
    images, gt, out = tmp_path / "images", tmp_path / "gt", tmp_path / "out"
    for d in (images, gt, out / "maps" / "float", out / "maps" / "integer", out / "build"):
        d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [CJK, "a&b <x>.jpg"] + [f"{i:04d}.jpg" for i in range(n - 2)]
    files = []
    for name in names:
        path = images / name
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
        stem = path.stem
        Image.fromarray(((rng.random((48, 64)) > 0.5) * 255).astype(np.uint8)).save(gt / f"{stem}.png")
        for kind in ("float", "integer"):
            Image.fromarray(rng.integers(0, 255, (48, 64), dtype=np.uint8)).save(out / "maps" / kind / f"{stem}.png")
        files.append(path)
    files.sort()
    delta = {p.stem: float(d) for p, d in zip(files, np.linspace(-0.02, 0.011, n))}
    delta[files[-1].stem] = -0.0  # a negative zero must not print as -0.0000
    s_float = {k: 0.8 for k in delta}
    metrics = {kind: {"smeasure": 0.8, "mae": 0.01, "wfmeasure": 0.7, "max_fmeasure": 0.7, "mean_fmeasure": 0.7,
                      "adp_fmeasure": 0.7, "max_emeasure": 0.9, "mean_emeasure": 0.9, "adp_emeasure": 0.9,
                      "per_image_smeasure": dict(s_float)} for kind in ("float", "integer")}
    metrics["integer"]["mae"] = 0.01 - 1e-8  # a difference that rounds to -0.0000
    metrics["integer"]["per_image_smeasure"] = {k: 0.8 + delta[k] for k in delta}
    delta = {k: metrics["integer"]["per_image_smeasure"][k] - 0.8 for k in delta}
    layers = [{"name": f"backbone.layer{i}", "kind": "LIFReset" if i % 2 else "GradedVec", "neurons": 8192 * (i % 7),
               "synapses": 10_000 * i, "shared_weights": 100 * i, "stored": 100 * i, "fan_in": 1, "cores": i % 7 + 1,
               "placement": "neuro-core", "ops": 0} for i in range(780)]
    layers += [{"name": f"attn{i}", "kind": "Attention", "neurons": 0, "synapses": 0, "shared_weights": 0,
                "stored": 0, "fan_in": 0, "cores": 0, "placement": "embedded", "ops": 1000} for i in range(20)]
    (out / "build" / "resources.json").write_text(json.dumps(layers))
    (out / "build" / "resources.txt").write_text("\n".join(f"{r['name']} {r['cores']}" for r in layers) + "\n")
    (out / "build" / "energy.txt").write_text("paper convention: E = 0.4 mJ per image\nsources: " + "x" * 900 + "\n")
    build = {"target": "loihi2", "board": "hala-point", "chips": 36, "cores": 4505, "lower_bound_chips": 36,
             "neurons": 36_726_806, "synapses": 6_270_466_417, "shared_weights": 33_696_487,
             "conv_weights": "shared", "stored_synapses": 33_784_127}
    summary = {"checkpoint": "lensnet-tiny", "input_size": [256, 256], "images": n, "metrics": metrics,
               "build": build}
    return out, files, gt, summary, delta


def _section(page: str, start: str, end: str) -> str:
    return page[page.index(start):page.index(end)]


@pytest.mark.parametrize("n", [3, 12])
def test_report_names_every_row_and_shows_only_the_worst_rows_there(tmp_path, n):
    out, files, gt, summary, delta = _run_folder(tmp_path, n)
    page = write_report(out, files, gt, summary).read_text(encoding="utf-8")
    grid = _section(page, 'id="maps"', "<h2>Hardware")
    names = re.findall(r'<span class="file">([^<]*)</span>', grid)
    assert names == [p.name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for p in files[:GRID_LIMIT]]
    assert CJK in names and "a&amp;b &lt;x&gt;.jpg" in names  # HTML text, escaped: any script renders
    worst = _section(page, 'id="worst"', 'id="maps"')
    shown = re.findall(r'<span class="file">([^<]*)</span>', worst)
    ranked = sorted(files, key=lambda p: -abs(delta[p.stem]))
    assert len(shown) == worst_count(n) == (1 if n == 3 else 3) < n
    assert shown == [p.name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                     for p in ranked[:len(shown)]]
    for p in files:  # each row's ΔS beside its name
        assert f"ΔS {signed(delta[p.stem])}" in grid
    assert (out / "report" / "worst_images.png").exists() and (out / "report" / "saliency_grid.png").exists()


def test_report_never_prints_a_negative_zero_and_gives_mae_five_decimals(tmp_path):
    out, files, gt, summary, _ = _run_folder(tmp_path, 12)
    page = write_report(out, files, gt, summary).read_text(encoding="utf-8")
    assert not re.search(r"[-+−]0\.0+(?!\d*[1-9])\b", page), re.findall(r".{40}[-+−]0\.0000.{10}", page)
    assert "<td>MAE</td><td>0.01000</td><td>0.01000</td><td>0.00000</td>" in page
    assert signed(-0.0) == signed(-4e-5) == signed(4e-5) == "0.0000" and signed(-0.00051) == "-0.0005"


def test_report_resources_are_a_bounded_summary_linking_the_whole_table(tmp_path):
    out, files, gt, summary, _ = _run_folder(tmp_path, 3)
    page = write_report(out, files, gt, summary).read_text(encoding="utf-8")
    section = page[page.index("<h2>Resources and placement"):page.index("</body>")]
    assert len(section.splitlines()) <= 25 and len(section) < 6000  # the table file has 800 lines
    assert '<a href="report/resources.txt">' in section and "800 lines" in section
    assert (out / "report" / "resources.txt").read_text() == (out / "build" / "resources.txt").read_text()
    assert "780 processes on neuro-cores" in section and "20 on the embedded cores (20,000 operations" in section
    assert section.count("<tr>") == 1 + 10  # header and the ten largest processes
    # the energy text wraps instead of running off the page sideways
    assert '<pre class="wrap">' in page and "white-space: pre-wrap" in page
    assert "stored synapses (Conv kernels per core)" in page and "33,784,127" in page


def test_delta_histogram_counts_are_whole_numbers():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lensnet_deploy.report import delta_histogram

    before = plt.subplots  # capture the axes the function draws on
    drawn = []

    def spy(*args, **kwargs):
        fig, ax = before(*args, **kwargs)
        drawn.append(ax)
        return fig, ax

    plt.subplots = spy
    try:
        img = delta_histogram({"a": -0.0047, "b": 0.0027, "c": -0.0004})
    finally:
        plt.subplots = before
    assert img.width > 500
    ax = drawn[0]
    ticks = ax.get_yticks()
    assert all(float(t).is_integer() for t in ticks) and max(ticks) >= 1
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "0.000" in labels and not any(lab in ("-0.000", "+0.000") for lab in labels)
