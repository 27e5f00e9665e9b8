"""The whole pipeline (`run`): artifacts, resumption, the HTML report, bad input."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAMPLES

from lensnet_deploy import DatasetError, save_lensnet
from lensnet_deploy.pipeline import run_pipeline
from lensnet_deploy.report import signed


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, micro_model):
    base = tmp_path_factory.mktemp("run")
    ckpt = save_lensnet(micro_model, base / "micro.safetensors", "lensnet-micro")
    images, gt = base / "Image", base / "GT"
    images.mkdir()
    gt.mkdir()
    for src in sorted((SAMPLES / "Image").iterdir())[:3]:
        (images / src.name).write_bytes(src.read_bytes())
        mask = SAMPLES / "GT" / f"{src.stem}.png"
        (gt / mask.name).write_bytes(mask.read_bytes())
    log: list[str] = []
    summary = run_pipeline(str(ckpt), images, gt, base / "out", board="kapoho-point", log=log.append)
    return base, ckpt, images, gt, summary, log


def test_run_writes_every_artifact_and_the_report(small_run):
    base, _, _, _, summary, log = small_run
    out = base / "out"
    for name in ("model.nir", "model.q.nir", "build/build.json", "build/energy.json", "build/firing_rates.png",
                 "metrics.json", "summary.json", "report.html", "report/saliency_grid.png"):
        assert (out / name).exists(), name
    assert [line.split("]")[0] for line in log[:-1]] == ["[run "] * 7
    assert all(line.endswith(": no earlier output") for line in log[:-1])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"float", "integer"} and 0 <= metrics["integer"]["mae"] <= 1
    page = (out / "report.html").read_text()
    # firing rates, the per-image ΔS histogram; the grid's 3 rows and the one row that differs most, each
    # under its file name (photo as JPEG, mask and maps as PNG)
    assert 'alt="firing rates"' in page and 'alt="per-image delta S histogram"' in page
    assert page.count('<span class="file">') == 3 + 1 and page.count("data:image/jpeg;base64,") == 3 + 1
    assert "S-measure" in page and "kapoho-point" in page
    assert summary["build"]["chips"] == 3 and summary["images"] == 3
    # image by image: the mean of the per-image S-measures is the table's S-measure
    per = {k: metrics[k]["per_image_smeasure"] for k in ("float", "integer")}
    assert sorted(per["float"]) == sorted(p.stem for p in (base / "Image").iterdir())
    for kind in per:
        assert sum(per[kind].values()) / 3 == pytest.approx(metrics[kind]["smeasure"], abs=1e-12)
    delta = {k: per["integer"][k] - per["float"][k] for k in per["float"]}
    worst = max(delta, key=lambda k: abs(delta[k]))
    mean_abs = sum(abs(v) for v in delta.values()) / 3
    name = next(p.name for p in (base / "Image").iterdir() if p.stem == worst)
    assert f"mean |ΔS| {mean_abs:.4f}, worst {signed(delta[worst])}\n({name})" in page
    assert (out / "report" / "per_image_delta_s.png").exists() and (out / "report" / "worst_images.png").exists()


def test_a_second_run_skips_what_its_record_matches_and_redoes_what_is_missing(small_run, tmp_path, monkeypatch):
    from lensnet_deploy import provenance

    base, ckpt, images, gt, _, _ = small_run
    out = tmp_path / "out"
    shutil.copytree(base / "out", out)  # the records hold contents, not times or paths: a copy is up to date
    hashed: list[str] = []
    sha = provenance.file_sha256
    monkeypatch.setattr(provenance, "file_sha256", lambda path: hashed.append(str(path)) or sha(path))
    log: list[str] = []
    run_pipeline(str(ckpt), images, gt, out, board="kapoho-point", log=log.append)
    assert all(line.startswith("[skip]") for line in log[:-1]) and len(log) == 8, log
    assert len(hashed) == len(set(hashed)) and str(ckpt) in hashed  # each file read once
    monkeypatch.undo()
    future = time.time() + 5
    os.utime(out / "model.q.nir", (future, future))  # a newer time with the same content changes nothing
    stem = sorted(images.iterdir())[0].stem
    (out / "maps" / "float" / f"{stem}.png").unlink()
    log.clear()
    run_pipeline(str(ckpt), images, gt, out, board="kapoho-point", log=log.append)
    assert [line[:6] for line in log[:5]] == ["[skip]", "[skip]", "[run ]", "[skip]", "[skip]"], log
    assert log[2] == "[run ] float maps: 1 output missing"
    assert (out / "maps" / "float" / f"{stem}.png").exists() and (out / "report.html").exists()


def test_run_refuses_bad_inputs(small_run, tmp_path):
    base, ckpt, images, gt, _, _ = small_run
    with pytest.raises(DatasetError, match="output folder is the input folder"):
        run_pipeline(str(ckpt), images, gt, images)
    lonely = tmp_path / "GT"
    lonely.mkdir()
    (lonely / "nothing.png").write_bytes((gt / sorted(os.listdir(gt))[0]).read_bytes())
    with pytest.raises(DatasetError, match="with no mask"):
        run_pipeline(str(ckpt), images, lonely, tmp_path / "out")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(small_run):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed")
    base = small_run[0]
    script = Path(__file__).resolve().parents[1] / "scripts" / "check_report.py"
    proc = subprocess.run([sys.executable, str(script), str(base / "out" / "report.html")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("rendered")


def test_a_run_interrupted_and_rerun_finishes(tmp_path, small_run):
    """Ctrl-C while quantizing: exit 130 with one line, no partial artifact; the rerun skips the export."""
    import signal
    import subprocess
    import sys

    _, ckpt, images, gt, _, _ = small_run
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lensnet_deploy", "run", str(ckpt), "--images", str(images), "--gt", str(gt),
               "-o", str(out), "--board", "kapoho-point"]
    # A shell without job control starts background jobs with SIGINT ignored, and a child inherits that:
    # give the run Ctrl-C's default meaning, as in a terminal.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    # the export's record is written after its outputs: from then on the run is quantizing
    while not (out / ".provenance" / "export.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert [x for x in err.splitlines() if x.strip()][-1] == "lensnet-deploy run: interrupted"
    assert not (out / "report.html").exists()
    assert not [p.name for p in out.rglob(".*") if p.is_file()]  # no temporary file left behind
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "[skip] export" in rerun.stdout + rerun.stderr
    assert json.loads((out / "metrics.json").read_text())["integer"]["smeasure"] > 0
    assert (out / "report.html").stat().st_size > 10_000


def test_a_ctrl_c_that_python_swallows_still_stops_the_run(small_run, tmp_path):
    """Python ignores a KeyboardInterrupt raised inside a weakref callback ("Exception ignored in …");
    the handler records it, and the run stops at its next step boundary (seen once on CI)."""
    import gc
    import signal
    import weakref

    from lensnet_deploy import interrupt

    _, ckpt, images, gt, _, _ = small_run

    class Thing:
        pass

    thing = Thing()
    weakref.finalize(thing, interrupt._on_sigint, signal.SIGINT, None)
    del thing
    gc.collect()  # the finalizer's KeyboardInterrupt is printed and dropped, not raised here
    try:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(str(ckpt), images, gt, tmp_path / "out", board="kapoho-point", log=lambda s: None)
        assert not (tmp_path / "out" / "model.nir").exists()
    finally:
        interrupt._INTERRUPTED.clear()


# ---- provenance through the installed command line: what reruns, and why ----

EXE = shutil.which("lensnet-deploy") or str(Path(sys.executable).with_name("lensnet-deploy"))


def _cli(cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def _steps(stdout: str) -> dict[str, str]:
    """step → "run" or "skip", from ``[run ] compile (loihi2, auto): why`` lines."""
    steps = {}
    for line in stdout.splitlines():
        if line.startswith(("[run ]", "[skip]")):
            steps[line[7:].split(":")[0].split(" (")[0]] = line[1:5].strip()
    return steps


def _copy_run(small_run, where):
    base, ckpt, images, gt, _, _ = small_run
    shutil.copytree(images, where / "Image")
    shutil.copytree(gt, where / "GT")
    shutil.copytree(base / "out", where / "out")  # the records hold contents, not paths or times
    return ckpt, where / "Image", where / "GT", where / "out"


def test_another_board_recompiles_and_reports_only_and_a_board_too_small_leaves_no_report(small_run, tmp_path):
    ckpt, images, gt, out = _copy_run(small_run, tmp_path)
    args = ("run", ckpt, "--images", images, "--gt", gt, "-o", out, "--board")
    run = _cli(tmp_path, *args, "hala-point")
    assert run.returncode == 0, run.stderr[-2000:]
    assert _steps(run.stdout) == {"export": "skip", "quantize": "skip", "float maps": "skip",
                                  "integer simulation": "skip", "compile": "run", "evaluate": "skip",
                                  "report": "run"}, run.stdout
    assert "[run ] compile (loihi2, hala-point): board changed kapoho-point → hala-point" in run.stdout
    assert "[run ] report: board changed kapoho-point → hala-point" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["board"] == "hala-point" and summary["build"]["board"] == "hala-point"
    assert "build on hala-point" in (out / "report.html").read_text()

    small = _cli(tmp_path, *args, "oheo-gulch")  # lensnet-micro at 64² needs 3 chips; Oheo Gulch has one
    assert small.returncode == 3, small.stdout + small.stderr
    assert small.stderr.startswith("lensnet-deploy run: error:") and len(small.stderr.splitlines()) == 1
    assert "[run ] compile (loihi2, oheo-gulch): board changed hala-point → oheo-gulch" in small.stdout
    # nothing left that claims a build: no build folder, no summary, no report
    assert not [p for p in ("build", "summary.json", "report.html", "report") if (out / p).exists()]


def test_a_changed_image_redoes_its_maps_and_what_depends_on_them(small_run, tmp_path):
    ckpt, images, gt, out = _copy_run(small_run, tmp_path)
    first, second, third = sorted(images.iterdir())
    maps = out / "maps" / "integer"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in maps.glob("*.png")}
    first.write_bytes(second.read_bytes())
    run = _cli(tmp_path, "run", ckpt, "--images", images, "--gt", gt, "-o", out, "--board", "kapoho-point")
    assert run.returncode == 0, run.stderr[-2000:]
    # compile too: the build's energy per image is measured on the (first 8) images
    assert _steps(run.stdout) == {"export": "skip", "quantize": "skip", "float maps": "run",
                                  "integer simulation": "run", "compile": "run", "evaluate": "run",
                                  "report": "run"}, run.stdout
    for step in ("float maps", "integer simulation (fast)", "compile (loihi2, kapoho-point)"):
        assert f"[run ] {step}: 1 image changed" in run.stdout
    assert "[run ] evaluate: 1 float map changed; 1 integer map changed" in run.stdout
    # the changed image's map is that of its new content; the others were not rewritten
    assert (maps / f"{first.stem}.png").read_bytes() != before[f"{first.stem}.png"][0]
    assert (maps / f"{first.stem}.png").read_bytes() == (maps / f"{second.stem}.png").read_bytes()
    for p in (second, third):
        assert (maps / f"{p.stem}.png").stat().st_mtime_ns == before[f"{p.stem}.png"][1]
    old, new = (json.loads((where / "metrics.json").read_text())["integer"]["per_image_smeasure"]
                for where in (small_run[0] / "out", out))
    assert new[first.stem] != old[first.stem] and new[third.stem] == old[third.stem]


def test_simulate_redoes_only_the_map_of_a_changed_image(small_run, tmp_path):
    base = small_run[0]
    images = tmp_path / "Image"
    shutil.copytree(small_run[2], images)
    graph, sim = base / "out" / "model.q.nir", tmp_path / "sim"
    assert "wrote 3 saliency maps" in _cli(tmp_path, "simulate", graph, "--images", images, "--out", sim).stdout
    first, second, third = sorted(images.iterdir())
    written = {p.name: p.stat().st_mtime_ns for p in sim.glob("*.png")}
    first.write_bytes(second.read_bytes())
    again = _cli(tmp_path, "simulate", graph, "--images", images, "--out", sim)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "wrote 1 saliency maps" in again.stdout
    assert "; 2 already there from the same model and image content, reused" in again.stdout
    assert (sim / f"{first.stem}.png").read_bytes() == (sim / f"{second.stem}.png").read_bytes()
    for p in (second, third):
        assert (sim / f"{p.stem}.png").stat().st_mtime_ns == written[f"{p.stem}.png"]
