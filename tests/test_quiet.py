"""Quiet by default (issue 31): no third-party warning reaches the user's terminal, each one
filtered at its source (``lensnet_deploy.quiet``), while our own output and unknown warnings
still show; the commands' feedback (exit 4 for deploy, the worst image by name, compile's
summary first)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import SAMPLES

from lensnet_deploy import quiet, save_lensnet

INSTALLED = Path(sys.executable).with_name("lensnet-deploy")
COMMAND = [str(INSTALLED)] if INSTALLED.exists() else [sys.executable, "-m", "lensnet_deploy"]


def run_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=900)


def test_the_filters_name_single_messages(caplog):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet.install()
        warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated, use …", FutureWarning, "copyreg.py",
                               105, module="copyreg")
        lava = "lava.magma.compiler.compiler_graphs"
        warnings.warn_explicit("Cannot import module '<module 'models'>' when searching ProcessModels for Process "
                               "'X'.", UserWarning, "compiler_graphs.py", 1, module=lava)
        warnings.warn_explicit("something else is deprecated", FutureWarning, "copyreg.py", 105, module="copyreg")
        warnings.warn_explicit("Cannot import module 'x'", UserWarning, "ours.py", 1, module="lensnet_deploy.ours")
    assert [str(w.message) for w in seen] == ["something else is deprecated", "Cannot import module 'x'"]
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            logger.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
            logger.warning("another exporter warning")
        assert [r.getMessage() for r in caplog.records] == ["another exporter warning"]
    finally:
        logger.filters = [f for f in logger.filters if not isinstance(f, quiet._DropRecords)]


@pytest.fixture(scope="module")
def micro(tmp_path_factory, micro_model) -> Path:
    """A micro checkpoint, its 32² float and integer graphs, and two images."""
    base = tmp_path_factory.mktemp("quiet")
    save_lensnet(micro_model, base / "micro.safetensors", "lensnet-micro")
    (base / "images").mkdir()
    for src in sorted((SAMPLES / "Image").iterdir())[:2]:
        shutil.copy(src, base / "images" / src.name)
    proc = run_cli("export", base / "micro.safetensors", "--size", 32, "-o", base / "m.nir")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = run_cli("quantize", base / "m.nir", "--calib", SAMPLES / "Image", "--count", 3, "--gt", SAMPLES / "GT",
                   "-o", base / "m.q.nir")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    (base / "quantize.txt").write_text(proc.stdout)
    return base


@pytest.mark.parametrize("format_flag", [[], ["--format", "onnx"]], ids=["extension", "format"])
def test_export_to_onnx_writes_onnx_and_nothing_on_stderr(micro, tmp_path, format_flag):
    import onnx

    out = tmp_path / "m.onnx"
    proc = run_cli("export", micro / "micro.safetensors", "--size", 32, "-o", out, *format_flag)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # torch's torchvision lines and pytree FutureWarning filtered at their source
    assert "(ONNX, input 32x32)" in proc.stdout
    model = onnx.load(out)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] and out.read_bytes()[:2] == b"\x08\x0a"  # ir_version field


def test_simulate_with_lava_prints_nothing_on_stderr(micro, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    first = sorted((micro / "images").iterdir())[0]
    shutil.copy(first, folder / first.name)
    proc = run_cli("simulate", micro / "m.q.nir", "--images", folder, "-o", tmp_path / "maps", "--backend", "lava")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""
    assert "wrote 1 saliency maps from the integer model (lava backend)" in proc.stdout


def test_quantize_names_the_worst_image_by_its_file_name(micro):
    text = (micro / "quantize.txt").read_text()
    line = next(line for line in text.splitlines() if line.startswith("image by image"))
    names = {p.name for p in (SAMPLES / "Image").iterdir()}
    worst = line.split("(", 1)[1].split(")", 1)[0]
    assert worst in names, line


def test_compile_prints_its_summary_and_deploy_is_unavailable_not_bad_input(micro, tmp_path):
    build = tmp_path / "build"
    proc = run_cli("compile", micro / "m.q.nir", "-o", build, "--images", micro / "images", "--count", 2)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("total: ") and lines[1].startswith("network: ") and len(lines) <= 8, proc.stdout
    assert lines[-1] == f"wrote build to {build}; every process's neurons, synapses, cores and work: " \
                        f"{build / 'resources.txt'}"
    assert len((build / "resources.txt").read_text().splitlines()) > 100  # the full table, in the build
    proc = run_cli("deploy", build)
    assert proc.returncode == 4, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "lava-loihi extension is not installed" in lines[0], proc.stderr
