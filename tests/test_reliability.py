"""Reliability suite: bad inputs across the commands. Each gives one clear error line and a
documented exit code (2 bad input, 3 resource limit), or a correct result; inputs stay untouched."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import SAMPLES
from PIL import Image

from lensnet_deploy import save_lensnet
from lensnet_deploy.export import write_nir


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lensnet_deploy", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def kit(tmp_path_factory, micro_model):
    """A micro checkpoint, its float and integer NIR files, a small image folder with masks."""
    base = tmp_path_factory.mktemp("kit")
    ckpt = save_lensnet(micro_model, base / "micro.safetensors", "lensnet-micro")
    assert cli("export", ckpt, "-o", base / "m.nir").returncode == 0
    assert cli("quantize", base / "m.nir", "--calib", SAMPLES / "Image", "--calib-count", "2",
               "-o", base / "m.q.nir").returncode == 0
    images, gt = base / "Image", base / "GT"
    images.mkdir()
    gt.mkdir()
    for src in sorted((SAMPLES / "Image").iterdir())[:2]:
        (images / src.name).write_bytes(src.read_bytes())
        (gt / f"{src.stem}.png").write_bytes((SAMPLES / "GT" / f"{src.stem}.png").read_bytes())
    return base, ckpt, images, gt


def bad(tmp: Path, kit, case: str) -> tuple[list, tuple[str, ...], int]:
    """Build the bad input for ``case``; return the command, expected fragments and exit code."""
    base, ckpt, images, gt = kit
    if case == "nir-truncated":
        data = (base / "m.nir").read_bytes()
        (tmp / "cut.nir").write_bytes(data[: len(data) // 4])
        return ["quantize", tmp / "cut.nir", "--calib", images, "-o", tmp / "o.nir"], ("cut.nir",), 2
    if case == "nir-corrupt":
        (tmp / "x.nir").write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
        return ["simulate", tmp / "x.nir", "--images", images, "--out", tmp / "o"], ("x.nir",), 2
    if case == "nir-unknown-extension":
        path = tmp / "ext.nir"
        path.write_bytes((base / "m.q.nir").read_bytes())
        with h5py.File(path, "r+") as f:
            meta = f["node"]["nodes"]["backbone.block3.0.attn.product"]["metadata"]
            info = json.loads(meta["lensnet.ext"][()].decode())
            info["op"] = "softmax"
            del meta["lensnet.ext"]
            meta.create_dataset("lensnet.ext", data=json.dumps(info), dtype=h5py.string_dtype())
        return ["simulate", path, "--images", images, "--out", tmp / "o"], ("unknown extension op 'softmax'",), 2
    if case == "nan-weights":
        from safetensors.torch import load_file, save_file

        state = load_file(ckpt)
        state["out_head1.bias"] = torch.tensor([float("nan")])
        save_file(state, str(tmp / "nan.safetensors"), metadata={"lensnet_variant": "lensnet-micro"})
        return ["export", tmp / "nan.safetensors", "--variant", "lensnet-micro", "-o", tmp / "o.nir"], \
            ("holds NaN or Inf",), 2
    if case == "inf-weights-nir":
        from lensnet_deploy.export import read_nir

        graph = read_nir(base / "m.nir")
        node = graph.nodes["backbone.downsample1_1.encode_conv"]
        node.weight = node.weight.copy()
        node.weight[0, 0, 0, 0] = np.inf
        write_nir(graph, tmp / "inf.nir")
        return ["quantize", tmp / "inf.nir", "--calib", images, "-o", tmp / "o.nir"], ("not finite",), 2
    if case == "threshold-overflow":
        path = tmp / "thr.nir"
        path.write_bytes((base / "m.q.nir").read_bytes())
        with h5py.File(path, "r+") as f:
            node = f["node"]["nodes"]["backbone.ConvBlock1_1.0.Conv.spike1.s4"]
            big = np.full(node["threshold"].shape, 2**40, dtype=np.int64)
            del node["threshold"]
            node.create_dataset("threshold", data=big)
        return ["simulate", path, "--images", images, "--out", tmp / "o"], ("overflows 24 bits",), 2
    if case == "image-mode-cmyk":
        folder = tmp / "cmyk"
        folder.mkdir()
        Image.new("CMYK", (40, 30), (10, 200, 30, 0)).save(folder / "a.jpg")
        return ["predict", ckpt, "--images", folder, "--out", tmp / "o"], (), 0
    if case == "zero-size-image":
        folder = tmp / "zero"
        folder.mkdir()
        (folder / "z.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x00\x00\x00\x00\x00\x08\x02")
        return ["predict", ckpt, "--images", folder, "--out", tmp / "o"], ("z.png",), 2
    if case == "mask-size-mismatch":
        masks = tmp / "GT"
        masks.mkdir()
        for p in gt.iterdir():
            Image.open(p).resize((7, 5)).save(masks / p.name)
        return ["evaluate", "--pred", gt, "--gt", masks], (), 0  # predictions are resized to their mask
    if case == "mask-missing":
        masks = tmp / "GT"
        masks.mkdir()
        first = sorted(gt.iterdir())[0]
        (masks / first.name).write_bytes(first.read_bytes())
        return ["run", ckpt, "--images", images, "--gt", masks, "-o", tmp / "o"], ("with no mask",), 2
    if case == "output-is-a-file":
        (tmp / "file").write_text("not a folder")
        return ["predict", ckpt, "--images", images, "--out", tmp / "file"], ("is not a folder",), 2
    if case == "output-inside-a-file":
        (tmp / "file").write_text("not a folder")
        return ["simulate", base / "m.q.nir", "--images", images, "--out", tmp / "file" / "sub"], ("file",), 2
    if case == "output-overwrites-input":
        return ["run", ckpt, "--images", images, "--gt", gt, "-o", images], ("output folder is the input",), 2
    if case == "board-too-small":
        return ["compile", base / "m.q.nir", "--board", "oheo-gulch", "-o", tmp / "b"], \
            ("but oheo-gulch has 128", "smallest board that holds it: kapoho-point",
             "largest input that fits oheo-gulch"), 3
    if case == "unknown-target":
        return ["compile", base / "m.q.nir", "--target", "truenorth", "-o", tmp / "b"], ("unknown target",), 2
    if case == "float-graph-to-compile":
        return ["compile", base / "m.nir", "-o", tmp / "b"], ("needs an integer graph",), 2
    if case == "integer-graph-to-quantize":
        return ["quantize", base / "m.q.nir", "--calib", images, "-o", tmp / "o.nir"], ("already quantized",), 2
    if case == "checkpoint-is-a-folder":
        return ["export", tmp, "-o", tmp / "o.nir"], ("is a directory",), 2
    if case == "unknown-zoo-name":
        return ["predict", "lensnet-huge", "--images", images, "--out", tmp / "o"], \
            ("no such checkpoint file or zoo",), 2
    if case == "unknown-variant":
        return ["predict", ckpt, "--variant", "lensnet-xl", "--images", images, "--out", tmp / "o"], \
            ("unknown LENS-Net variant",), 2
    if case == "empty-calibration-folder":
        (tmp / "empty").mkdir()
        return ["quantize", base / "m.nir", "--calib", tmp / "empty", "-o", tmp / "o.nir"], ("no image files",), 2
    if case == "missing-nir":
        return ["simulate", tmp / "none.nir", "--images", images, "--out", tmp / "o"], ("no such NIR file",), 2
    raise KeyError(case)


CASES = ["nir-truncated", "nir-corrupt", "nir-unknown-extension", "nan-weights", "inf-weights-nir",
         "threshold-overflow", "image-mode-cmyk", "zero-size-image", "mask-size-mismatch", "mask-missing",
         "output-is-a-file", "output-inside-a-file", "output-overwrites-input", "board-too-small", "unknown-target",
         "float-graph-to-compile", "integer-graph-to-quantize", "checkpoint-is-a-folder", "unknown-zoo-name",
         "unknown-variant", "empty-calibration-folder", "missing-nir"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(tmp_path, kit, case):
    before = digest(kit[0])
    command, fragments, code = bad(tmp_path, kit, case)
    proc = cli(*command)
    if code == 0:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == code, proc.stdout + proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "error:" in lines[0], proc.stderr
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
    assert digest(kit[0]) == before  # no input was changed or overwritten


def _output_device_full() -> None:
    """In the child: any file grows to at most 64 kB, then write() fails with EFBIG (Python ignores
    SIGXFSZ), which is what a full disk looks like to the writer."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (65_536, 65_536))


@pytest.mark.parametrize("command", ["export", "quantize"])
def test_full_output_device(tmp_path, kit, command):
    base = kit[0]
    before = digest(base)
    target = tmp_path / "out.nir"
    target.write_text("an earlier result")
    args = {"export": ["export", base / "micro.safetensors", "-o", target],
            "quantize": ["quantize", base / "m.nir", "--calib", kit[2], "-o", target]}[command]
    proc = subprocess.run([sys.executable, "-m", "lensnet_deploy", *map(str, args)], capture_output=True, text=True,
                          timeout=600, preexec_fn=_output_device_full)
    assert proc.returncode == 2, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line == f"lensnet-deploy {command}: error: {target}: File too large"
    assert target.read_text() == "an earlier result"  # the earlier file survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nir"]  # and no partial file is left
    assert digest(base) == before


@pytest.mark.parametrize("where", ["right after creation", "inside the write"])
def test_ctrl_c_during_an_atomic_write_leaves_nothing(tmp_path, monkeypatch, where):
    """A Ctrl-C that lands while a temporary file is being set up or written (the interrupted-run
    test once caught `.export-summary.json.*.tmp` left behind) removes it; the target keeps its
    old contents."""
    import os

    from lensnet_deploy import atomic

    target = tmp_path / "summary.json"
    target.write_text("old")
    real_close = os.close

    def interrupted_close(fd):
        real_close(fd)
        raise KeyboardInterrupt

    if where == "right after creation":
        monkeypatch.setattr(atomic.os, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"] and target.read_text() == "old"
