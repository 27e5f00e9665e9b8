"""Reliability suite: bad inputs across the commands, through the installed ``lensnet-deploy``.
Each gives one clear error line and a documented exit code (2 bad input, 3 a model too big for
a board), or a correct result; inputs stay untouched and a failed command leaves no output."""

import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import SAMPLES
from PIL import Image

from lensnet_deploy import save_lensnet
from lensnet_deploy.export import write_nir

INSTALLED = Path(sys.executable).with_name("lensnet-deploy")  # the console script pip installed
COMMAND = [str(INSTALLED)] if INSTALLED.exists() else [sys.executable, "-m", "lensnet_deploy"]


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=600)


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


# --- issue 30: bad input that was taken for a bug (exit 1), changed nothing it should, or ran out of memory ---------

MB = 2**20
BOMB_RSS = 500 * MB  # a bomb is refused within this peak memory …
BOMB_CPU = 2.0  # … and these CPU seconds beyond the start-up of Python and torch (measured once, ``startup``)


# A small launcher measures the CLI: a child forked from this (large) test process would report this
# process's pages as its own peak (seen in the full suite: 1863 MB for every bomb), a child of the
# freshly started launcher reports its own.
LAUNCHER = """
import json, os, subprocess, sys, threading
proc = subprocess.Popen(sys.argv[2:])
watchdog = threading.Timer(300, proc.kill)  # a bomb that went off must not hang the suite
watchdog.start()
_, status, usage = os.wait4(proc.pid, 0)
watchdog.cancel()
with open(sys.argv[1], "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime,
               "rss": usage.ru_maxrss * 1024}, f)
"""


def measured(*args) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run the CLI; return its result, its CPU seconds (user + system) and its peak memory (bytes),
    from its own rusage as its launcher's only child."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "usage.json"
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *COMMAND, *map(str, args)],
                              capture_output=True, text=True, timeout=400)
        usage = json.loads(report.read_text())
    done = subprocess.CompletedProcess(proc.args, usage["code"], proc.stdout, proc.stderr)
    return done, usage["cpu"], usage["rss"]


@pytest.fixture(scope="module")
def startup() -> float:
    """CPU seconds of starting the CLI with torch and the NIR stack loaded (what every bomb pays first)."""
    code = "import lensnet_deploy.cli, lensnet_deploy.api, lensnet_deploy.export, lensnet_deploy.predict"
    with subprocess.Popen([sys.executable, "-c", code]) as proc:
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def _threshold_file(tmp: Path, kit, name: str, value) -> Path:
    """The kit's integer NIR with one threshold plane rewritten by ``value(plane) -> array``."""
    path = tmp / name
    path.write_bytes((kit[0] / "m.q.nir").read_bytes())
    with h5py.File(path, "r+") as f:
        node = f["node"]["nodes"]["backbone.ConvBlock1_1.0.Conv.spike1.s4"]
        new = value(node["threshold"][()])
        del node["threshold"]
        node.create_dataset("threshold", data=new, compression="gzip")
    return path


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width × height`` grey pixels (a few bytes: readers see the size first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def issue_30(tmp: Path, kit, case: str) -> tuple[list, tuple[str, ...]]:
    """Build the bad input of ``case`` (the issue's measured bugs); return the command and the
    fragments its one error line must hold. Every case must exit 2."""
    base, ckpt, images, gt = kit
    q = base / "m.q.nir"
    # 1. integer thresholds are read whole: every cell, no NaN, no cast
    if case == "threshold-cell-differs":
        def cell(t):
            t = t.copy()
            t[0, 5, 7] = 2**40  # one cell of channel 0: read at [:, 0, 0] only, it changed nothing
            return t

        path = _threshold_file(tmp, kit, "cell.nir", cell)
        return ["simulate", path, "--images", images, "--out", tmp / "o"], \
            ("spike1.s4: threshold", "1099511627776 at [0, 5, 7]", "one value per channel")
    if case == "threshold-nan":
        path = _threshold_file(tmp, kit, "nan.nir", lambda t: np.where(t == t[0, 0, 0], np.nan, t.astype(float)))
        return ["compile", path, "-o", tmp / "b"], ("spike1.s4: threshold", "nan at [0, 0, 0]", "not an integer")
    if case == "threshold-uint64-max":
        path = _threshold_file(tmp, kit, "u64.nir", lambda t: np.full(t.shape, 2**64 - 1, np.uint64))
        return ["simulate", path, "--images", images, "--out", tmp / "o"], \
            ("spike1.s4: threshold", "18446744073709551615", "does not fit int64")
    if case == "threshold-fraction":
        path = _threshold_file(tmp, kit, "half.nir", lambda t: t + 0.5)
        return ["diff", path, "--images", images, "--backends", "fast", "reference"], \
            ("spike1.s4: threshold", ".5 at [0, 0, 0]", "not an integer")
    # 2. no command writes over its inputs or into an input folder (symlinks resolved)
    if case == "evaluate-json-over-a-mask":
        mask = sorted(gt.iterdir())[0]
        return ["evaluate", "--pred", gt, "--gt", gt, "--json", mask], (f"{mask}: output lies inside the input",)
    if case == "export-summary-over-checkpoint":
        return ["export", ckpt, "-o", tmp / "o.nir", "--summary-json", ckpt], \
            (f"{ckpt}: output would overwrite the input checkpoint",)
    if case == "quantize-into-calibration-folder":
        return ["quantize", base / "m.nir", "--calib", images, "-o", images / "q.nir"], ("inside the input",)
    if case == "compile-over-its-graph":
        return ["compile", q, "-o", q], ("output would overwrite the input graph",)
    if case == "predict-into-images-by-symlink":
        (tmp / "link").symlink_to(images)
        return ["predict", ckpt, "--images", images, "--out", tmp / "link" / "maps"], \
            ("output lies inside the input image folder",)
    if case == "simulate-into-images":
        return ["simulate", q, "--images", images, "--out", images / "maps"], ("inside the input image folder",)
    if case == "run-into-masks":
        return ["run", ckpt, "--images", images, "--gt", gt, "-o", gt / "run"], ("inside the input mask folder",)
    if case == "train-into-training-set":
        (tmp / "ORSSD" / "train").mkdir(parents=True)
        return ["train", "--data-root", tmp, "--sets", "ORSSD/train", "--out", tmp / "ORSSD" / "train" / "run"], \
            ("inside the input training set",)
    if case == "zoo-register-from-the-zoo":
        from lensnet_deploy.model_zoo import registry

        zoo = Path(registry.__file__).resolve().parent
        return ["zoo", "register", "x", "--run", zoo, "--command", "c"], ("output folder is the input run folder",)
    # 3. one map per image: two images of one stem, a broken link
    if case == "two-images-one-stem":
        folder = tmp / "stems"
        folder.mkdir()
        Image.new("RGB", (20, 20)).save(folder / "a.png")
        Image.new("RGB", (20, 20)).save(folder / "a.jpg")
        return ["predict", ckpt, "--images", folder, "--out", tmp / "o"], ("a.jpg and a.png share the name stem",)
    if case == "dangling-symlink":
        folder = tmp / "links"
        folder.mkdir()
        Image.new("RGB", (20, 20)).save(folder / "a.png")
        (folder / "b.png").symlink_to(tmp / "gone.png")
        return ["predict", ckpt, "--images", folder, "--out", tmp / "o"], ("b.png (broken link)",)
    # 4. bombs: refused before allocating
    if case == "bomb-nir-compressed-zeros":
        path = tmp / "zeros.nir"
        with h5py.File(path, "w") as f:  # 8 GB of float64 zeros in unwritten gzip chunks: a few kB on disk
            f.create_dataset("version", data="1.0.8")
            f.create_group("node").create_dataset("type", data="NIRGraph")
            f["node"].create_dataset("data", shape=(10**9,), dtype=np.float64, compression="gzip", chunks=(2**20,))
        return ["quantize", path, "--calib", images, "-o", tmp / "q.nir"], ("declare 7.5 GiB", "--max-memory")
    if case == "bomb-conv-weights":
        path = tmp / "conv.nir"
        path.write_bytes((base / "m.nir").read_bytes())
        with h5py.File(path, "r+") as f:
            node = f["node"]["nodes"]["backbone.downsample1_1.encode_conv"]
            del node["weight"]
            node.create_dataset("weight", shape=(100000, 100000, 3, 3), dtype=np.float64, compression="gzip",
                                chunks=(1, 4096, 3, 3))
        return ["quantize", path, "--calib", images, "-o", tmp / "q.nir"], \
            ("encode_conv/weight, 670.6 GiB", "beyond the memory limit")
    if case == "bomb-predict-size":
        return ["predict", ckpt, "--images", images, "--out", tmp / "o", "--size", 100000, 100000], \
            ("predict at 100000x100000", "beyond the memory limit")
    if case == "bomb-export-input-size":
        return ["export", ckpt, "-o", tmp / "o.nir", "--input-size", 100000, 100000], \
            ("export at 100000x100000", "beyond the memory limit")
    if case == "bomb-png-20000-squared":
        folder = tmp / "big"
        folder.mkdir()
        (folder / "big.png").write_bytes(_png_header(20000, 20000))
        return ["predict", ckpt, "--images", folder, "--out", tmp / "o"], \
            ("20000x20000", "beyond the limit of 89,478,485")
    # 5. bad input that crashed or ran anyway
    if case == "one-pixel-image":
        folder = tmp / "dot"
        folder.mkdir()
        Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "dot.png")
        return ["predict", ckpt, "--images", folder, "--out", tmp / "o"], ("dot.png: image of 1x1 pixels",)
    if case == "calib-count-zero":
        return ["quantize", base / "m.nir", "--calib", images, "--calib-count", 0, "-o", tmp / "q.nir"], \
            ("argument --count: must be a positive integer, got '0'",)  # the flag's current name (issue 31)
    if case == "count-zero":
        return ["compile", q, "-o", tmp / "b", "--images", images, "--count", 0], ("argument --count",)
    if case == "batch-size-zero":
        return ["predict", ckpt, "--images", images, "--out", tmp / "o", "--batch-size", 0], ("--batch-size",)
    if case == "batch-size-negative":
        return ["simulate", q, "--images", images, "--out", tmp / "o", "--batch-size", -1], ("got '-1'",)
    if case == "float64-grid-checkpoint":
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        from lensnet_deploy.model_zoo.registry import zoo_checkpoint

        zoo = zoo_checkpoint("lensnet-tiny")
        with safe_open(str(zoo), "pt") as f:
            meta = f.metadata()
        save_file({k: v.double() for k, v in load_file(zoo).items()}, str(tmp / "f64.safetensors"), metadata=meta)
        return ["export", tmp / "f64.safetensors", "-o", tmp / "o.nir"], ("is stored as float64, not int8",)
    # 6. export writes the .nir and its summary or neither, and names the user's path
    if case == "summary-json-write-fails":
        (tmp / "file").write_text("a file where the summary's folder should be")
        return ["export", ckpt, "-o", tmp / "o.nir", "--summary-json", tmp / "file" / "s.json"], \
            (f"{tmp / 'file' / 's.json'}: {tmp / 'file'} is a file, not a folder",)
    raise KeyError(case)


THRESHOLDS = ["threshold-cell-differs", "threshold-nan", "threshold-uint64-max", "threshold-fraction"]
WRITERS = ["evaluate-json-over-a-mask", "export-summary-over-checkpoint", "quantize-into-calibration-folder",
           "compile-over-its-graph", "predict-into-images-by-symlink", "simulate-into-images", "run-into-masks",
           "train-into-training-set", "zoo-register-from-the-zoo"]
LISTING = ["two-images-one-stem", "dangling-symlink"]
BOMBS = ["bomb-nir-compressed-zeros", "bomb-conv-weights", "bomb-predict-size", "bomb-export-input-size",
         "bomb-png-20000-squared"]
CRASHES = ["one-pixel-image", "calib-count-zero", "count-zero", "batch-size-zero", "batch-size-negative",
           "float64-grid-checkpoint"]
ISSUE_30 = THRESHOLDS + WRITERS + LISTING + BOMBS + CRASHES + ["summary-json-write-fails"]


def tree(folder: Path) -> dict[str, str]:
    """Every file (by content) and folder under ``folder``, links as links."""
    found = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            found[rel] = f"link to {os.readlink(p)}"
        elif p.is_dir():
            found[rel] = "folder"
        else:
            found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize("case", ISSUE_30)
def test_issue_30_bad_input_exits_2_not_1(tmp_path, kit, startup, case):
    """Each of the issue's measured bugs: exit 2 (never 1), one stderr line naming the problem, no
    input changed, nothing written; a bomb costs under 500 MB and 2 s of CPU beyond start-up."""
    command, fragments = issue_30(tmp_path, kit, case)
    before, kit_before = tree(tmp_path), tree(kit[0])
    proc, cpu, rss = measured(*command)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"lensnet-deploy {command[0]}: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert tree(tmp_path) == before and tree(kit[0]) == kit_before  # inputs as they were, no output left
    if case in BOMBS:
        assert rss < BOMB_RSS, f"{rss / MB:.0f} MB"
        assert cpu < startup + BOMB_CPU, f"{cpu:.2f} s of CPU (start-up {startup:.2f} s)"


def test_max_memory_moves_the_limit(tmp_path, kit):
    """--max-memory moves the limit (here down: the kit's integer file declares ~39 MiB)."""
    proc = cli("simulate", kit[0] / "m.q.nir", "--images", kit[2], "--out", tmp_path / "o", "--max-memory", "0.01")
    assert proc.returncode == 2 and "beyond the memory limit of 10.2 MiB" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_the_limit_from_the_environment(monkeypatch):
    from lensnet_deploy.cli import MEMORY_ENV
    from lensnet_deploy.export import limits

    assert MEMORY_ENV == limits.ENV  # the CLI sets what the library reads
    monkeypatch.delenv(limits.ENV, raising=False)
    assert limits.max_memory() == 4 * 2**30 and limits.max_image_pixels() == 89_478_485  # PIL's own default
    monkeypatch.setenv(limits.ENV, "8")
    assert limits.max_image_pixels() == 2 * 89_478_485
    limits.check_memory(8 * 2**30, "fits")
    with pytest.raises(limits.LimitError, match="^x needs 8.0 GiB, beyond the memory limit of 8.0 GiB"):
        limits.check_memory(8 * 2**30 + 1, "x needs")
    for bad in ("abc", "0", "-1", "inf", "nan"):
        monkeypatch.setenv(limits.ENV, bad)
        with pytest.raises(limits.LimitError, match="must be a positive number of GiB"):
            limits.max_memory()


# --- the integer validator, in process: every parameter of every integer operation ------------------------------

@pytest.fixture(scope="module")
def int_ir(kit):
    from lensnet_deploy.export import read_nir
    from lensnet_deploy.hardware.integer.int_nir import from_int_nir

    return from_int_nir(read_nir(kit[0] / "m.q.nir"))


def _first(ir, kind):
    return next(n for n in ir if isinstance(n.op, kind))


def _broken(ir, kind, **changes):
    """A copy of ``ir`` with the first ``kind`` node's op parameters changed."""
    import dataclasses

    g = ir.copy()
    n = _first(g, kind)
    n.op = dataclasses.replace(n.op, **changes)
    return g, n.name


def _edits():
    from lensnet_deploy.hardware.integer import ops as I

    def gate_mult(op):
        return {"mult": op.mult * 2**20}

    return {
        "weight beyond int8": (I.IntConv, lambda op: {"w_int": op.w_int + 200}, "outside -127..127 (int8)"),
        "exponent beyond Loihi's": (I.IntConv, lambda op: {"exp": 9}, "weight exponent 9 outside 0..8"),
        "bias beyond 24 bits": (I.IntConv, lambda op: {"b_int": op.b_int + 2**23}, "(24-bit state)"),
        "shift per channel": (I.IntConv, lambda op: {"shift": op.shift[:2]}, "one per channel"),  # 1: layer-wide
        "thresholds decrease": (I.IntSpike, lambda op: {"theta": op.theta[:, ::-1].copy()},
                                "thresholds may not decrease"),
        "table index beyond its table": (I.SigmoidTable, lambda op: {"z_hi": op.z_hi + op.lut.shape[1]},
                                         "does not index a table"),
        "table entry beyond 12 bits": (I.SigmoidTable, lambda op: {"lut": op.lut + 4097}, "sigmoid table entry"),
        "negative table shift": (I.SigmoidTable, lambda op: {"z_shift": op.z_shift - 100}, "z_shift -"),
        "gate beyond the state": (I.IntGate, gate_mult, "beyond the 24-bit state"),
        "gate rounding shift": (I.IntGate, lambda op: {"r": 0}, "rounding shift r 0"),
        "output scale": (I.IntOutput, lambda op: {"real_scale": op.real_scale * np.nan}, "real scale nan"),
    }


@pytest.mark.parametrize("edit", list(_edits()))
def test_the_validator_refuses_each_parameter_out_of_its_width(int_ir, edit):
    from lensnet_deploy.errors import GraphError
    from lensnet_deploy.hardware.integer.validate import check_integer_graph

    kind, change, says = _edits()[edit]
    graph, name = _broken(int_ir, kind, **change(_first(int_ir, kind).op))
    with pytest.raises(GraphError) as err:
        check_integer_graph(graph)
    assert str(err.value).startswith(f"node {name}: ") and says in str(err.value), str(err.value)


def test_the_validator_reads_arrays_as_the_file_holds_them():
    from lensnet_deploy.errors import GraphError
    from lensnet_deploy.hardware.integer.validate import channel_thresholds, integers

    assert integers("w", np.array([[1.0, -2.0]])).dtype == np.int64
    assert integers("mult", [2**62, 3]).tolist() == [2**62, 3]
    for bad, says in [(np.array([1.0, np.inf]), "inf at [1]"), (np.array([0.25]), "0.25 at [0]"),
                      ([2**64], "does not fit int64"), (np.array([2.0**70]), "does not fit int64"),
                      (["7"], "'7' at [0] is not a number"), (np.array([True]), "not integers"),
                      (np.array([1 + 2j]), "not integers")]:
        with pytest.raises(GraphError, match="^x: ") as err:
            integers("x", bad)
        assert says in str(err.value), str(err.value)
    assert channel_thresholds("t", np.broadcast_to(np.array([3, 4]).reshape(2, 1, 1), (2, 3, 3))).tolist() == [3, 4]
    with pytest.raises(GraphError, match="one value per channel"):
        channel_thresholds("t", np.array([[[1, 1], [1, 2]]]))
