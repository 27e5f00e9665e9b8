"""The command line: predict and evaluate end to end, and one clear line per bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATASETS, SAMPLES, SHARED, needs_shared
from PIL import Image

from lensnet_deploy import save_lensnet

PAPER_MAPS = SHARED / "reference" / "lensnet-paper-maps" / "ORSSD-T4"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lensnet_deploy", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "error:" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def micro_ckpt(tmp_path_factory, micro_model) -> Path:
    return save_lensnet(micro_model, tmp_path_factory.mktemp("ckpt") / "micro.safetensors", "lensnet-micro")


def test_predict_then_evaluate_on_the_bundled_samples(tmp_path, micro_ckpt):
    out = tmp_path / "maps"
    proc = cli("predict", micro_ckpt, "--images", SAMPLES / "Image", "--out", out, "--batch-size", "5")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 12 saliency maps (64x64 input)" in proc.stdout
    for src in sorted((SAMPLES / "Image").iterdir()):
        pred = Image.open(out / f"{src.stem}.png")
        assert pred.mode == "L" and pred.size == Image.open(src).size
        arr = np.asarray(pred)
        assert arr.min() == 0 and arr.max() >= 254
    proc = cli("evaluate", "--pred", out, "--gt", SAMPLES / "GT", "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["pairs"] == 12
    assert {"smeasure", "mae", "wfmeasure", "max_fmeasure", "mean_fmeasure", "adp_fmeasure",
            "max_emeasure", "mean_emeasure", "adp_emeasure"} <= set(data)
    assert f"{data['smeasure']:.4f}" in proc.stdout
    assert 0.0 <= data["mae"] <= 1.0


@needs_shared(PAPER_MAPS)
@needs_shared(DATASETS)
def test_evaluate_paper_maps_prints_the_headline(tmp_path):
    proc = cli("evaluate", "--pred", PAPER_MAPS, "--gt", DATASETS / "ORSSD" / "test-labels",
               "--json", tmp_path / "paper.json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("S-measure") and line.endswith("0.9279") for line in lines)
    assert any(line.startswith("MAE") and line.endswith("0.0110") for line in lines)
    data = json.loads((tmp_path / "paper.json").read_text())
    assert round(data["smeasure"], 4) == 0.9279 and round(data["mae"], 4) == 0.0110


def test_missing_checkpoint(tmp_path):
    one_line_error(cli("predict", tmp_path / "nope.pth", "--images", SAMPLES / "Image", "--out", tmp_path / "o"),
                   "nope.pth", "no such checkpoint file")


def test_truncated_checkpoint(tmp_path, micro_ckpt):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(micro_ckpt.read_bytes()[:5000])
    one_line_error(cli("predict", bad, "--images", SAMPLES / "Image", "--out", tmp_path / "o"),
                   "cut.safetensors", "truncated or corrupt")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"\x80\x04 definitely not pickle" * 10)
    one_line_error(cli("predict", bad, "--images", SAMPLES / "Image", "--out", tmp_path / "o"),
                   "junk.pth", "not a readable PyTorch checkpoint")


def test_checkpoint_of_another_architecture(tmp_path):
    import torch

    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, other)
    one_line_error(cli("predict", other, "--images", SAMPLES / "Image", "--out", tmp_path / "o"),
                   "does not match LENS-Net", "810 missing keys", "2 unexpected keys")


def test_size_not_multiple_of_16(tmp_path, micro_ckpt):
    one_line_error(cli("predict", micro_ckpt, "--images", SAMPLES / "Image", "--out", tmp_path / "o",
                       "--size", "100", "100"), "100x100", "multiples of 16")


def test_empty_image_folder(tmp_path, micro_ckpt):
    (tmp_path / "empty").mkdir()
    one_line_error(cli("predict", micro_ckpt, "--images", tmp_path / "empty", "--out", tmp_path / "o"),
                   "empty", "no image files")


def test_unreadable_image(tmp_path, micro_ckpt):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(b"garbage, not a jpeg")
    one_line_error(cli("predict", micro_ckpt, "--images", folder, "--out", tmp_path / "o"),
                   "0001.jpg", "unreadable image")


def test_image_mask_name_mismatch(tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    for f in sorted((SAMPLES / "GT").iterdir())[:3]:
        (pred / f.name).write_bytes(f.read_bytes())
    Image.new("L", (8, 8)).save(pred / "9999.png")
    one_line_error(cli("evaluate", "--pred", pred, "--gt", SAMPLES / "GT"),
                   "1 prediction(s) with no mask (9999.png)", "9 mask(s) with no prediction")


def test_output_folder_must_not_be_the_input(tmp_path, micro_ckpt):
    folder = tmp_path / "imgs"
    folder.mkdir()
    src = sorted((SAMPLES / "Image").iterdir())[0]
    (folder / src.name).write_bytes(src.read_bytes())
    before = (folder / src.name).read_bytes()
    one_line_error(cli("predict", micro_ckpt, "--images", folder, "--out", folder), "output folder is the input")
    assert (folder / src.name).read_bytes() == before


def test_export_nir_and_onnx(tmp_path, micro_ckpt):
    import nir

    out = tmp_path / "micro.nir"
    proc = cli("export", micro_ckpt, "-o", out, "--summary-json", tmp_path / "s.json")
    assert proc.returncode == 0, proc.stderr
    assert "input 64x64" in proc.stdout and "of synaptic operations" in proc.stdout
    assert "attention ×2" in proc.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["standard_synop_share"] > 0.9 and summary["spike_layers"] == 79
    assert len(nir.read(out).nodes) == sum(summary["nodes_by_type"].values())
    proc = cli("export", micro_ckpt, "-o", tmp_path / "micro.onnx", "--format", "onnx")
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime vs PyTorch max |Δ|" in proc.stdout
    assert float(proc.stdout.rsplit("=", 1)[1]) <= 1e-4


def test_export_snap_gives_a_float_graph_the_integer_model_follows(tmp_path, micro_ckpt):
    """``export --snap`` (the user's own checkpoint onto the grid): quantized on the bundled real
    images, its spike counts equal the float graph's almost everywhere, unlike a plain export."""
    from lensnet_deploy.api import quantize_with_report
    from lensnet_deploy.datasets import list_images, load_images
    from lensnet_deploy.export import read_nir

    x = load_images(list_images(SAMPLES / "Image")[:2], (32, 32))
    agreement = {}
    for flag in ("", "--snap"):
        out = tmp_path / f"micro{flag}.nir"
        proc = cli("export", micro_ckpt, "-o", out, "--input-size", "32", "32", *([flag] if flag else []))
        assert proc.returncode == 0, proc.stderr
        assert ("integer model's twin" in proc.stdout) == bool(flag)
        _, report = quantize_with_report(read_nir(out), x)
        agreement[flag] = float(np.mean(list(report.spike_agreement.values())))
    assert agreement[""] < 0.995 and agreement["--snap"] > 0.9999, agreement
    assert micro_ckpt.exists()  # the user's checkpoint is untouched


def test_export_refuses_to_overwrite_its_input(tmp_path, micro_ckpt):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(micro_ckpt.read_bytes())
    one_line_error(cli("export", ckpt, "-o", ckpt), "would overwrite the input checkpoint")
    assert ckpt.read_bytes() == micro_ckpt.read_bytes()


def test_export_bad_size(tmp_path, micro_ckpt):
    one_line_error(cli("export", micro_ckpt, "-o", tmp_path / "x.nir", "--input-size", "60", "64"),
                   "60x64", "multiples of 16")
    assert not (tmp_path / "x.nir").exists()


def test_quantize_and_simulate_commands(tmp_path, micro_ckpt):
    float_nir, int_nir = tmp_path / "m.nir", tmp_path / "m.q.nir"
    assert cli("export", micro_ckpt, "-o", float_nir).returncode == 0
    proc = cli("quantize", float_nir, "--calib", SAMPLES / "Image", "--calib-count", "4", "-o", int_nir)
    assert proc.returncode == 0, proc.stderr
    assert "calibrated on 4 images" in proc.stdout and "spike counts equal to the float model" in proc.stdout
    assert "0 weights clipped to int8" in proc.stdout and "float vs integer" not in proc.stdout
    proc = cli("quantize", float_nir, "--calib", SAMPLES / "Image", "--calib-count", "3", "--gt", SAMPLES / "GT",
               "-o", tmp_path / "m2.q.nir")
    assert proc.returncode == 0, proc.stderr
    assert "float vs integer on the 3 calibration images" in proc.stdout and "Δ (int − float)" in proc.stdout
    (tmp_path / "no-masks").mkdir()  # (an output may not lie inside an input folder: the masks' is apart)
    one_line_error(cli("quantize", float_nir, "--calib", SAMPLES / "Image", "--gt", tmp_path / "no-masks",
                       "-o", tmp_path / "x.nir"), "no mask files")
    proc = cli("simulate", int_nir, "--images", SAMPLES / "Image", "--out", tmp_path / "maps")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "maps").glob("*.png"))) == 12
    one_line_error(cli("quantize", float_nir, "--calib", SAMPLES / "Image", "-o", float_nir), "overwrite the input")
    one_line_error(cli("simulate", float_nir, "--images", SAMPLES / "Image", "--out", tmp_path / "x"),
                   "needs an integer graph")
    (tmp_path / "junk.nir").write_bytes(b"junk")
    one_line_error(cli("quantize", tmp_path / "junk.nir", "--calib", SAMPLES / "Image", "-o", tmp_path / "o.nir"),
                   "junk.nir", "not HDF5")


def test_compile_command_and_board_error(tmp_path, micro_ckpt):
    float_nir, int_nir = tmp_path / "m.nir", tmp_path / "m.q.nir"
    assert cli("export", micro_ckpt, "-o", float_nir).returncode == 0
    assert cli("quantize", float_nir, "--calib", SAMPLES / "Image", "--calib-count", "2", "-o", int_nir).returncode == 0
    proc = cli("compile", int_nir, "--board", "kapoho-point", "-o", tmp_path / "build", "--images", SAMPLES / "Image",
               "--count", "2")
    assert proc.returncode == 0, proc.stderr
    assert "neuro-cores on 3 loihi2 chips" in proc.stdout and "paper convention" in proc.stdout
    assert "neuro-core share of synaptic operations 99.77 %" in proc.stdout
    assert (tmp_path / "build" / "energy.json").exists()
    proc = cli("compile", int_nir, "--board", "nowhere", "-o", tmp_path / "b2")
    one_line_error(proc, "unknown board 'nowhere'")


def test_diff_command(tmp_path, micro_ckpt):
    float_nir, int_nir = tmp_path / "m.nir", tmp_path / "m.q.nir"
    assert cli("export", micro_ckpt, "-o", float_nir, "--input-size", "32", "32").returncode == 0
    assert cli("quantize", float_nir, "--calib", SAMPLES / "Image", "--calib-count", "2", "-o", int_nir).returncode == 0
    proc = cli("diff", int_nir, "--images", SAMPLES / "Image", "--backends", "fast", "reference")
    assert proc.returncode == 0, proc.stderr
    assert "fast and reference equal on all" in proc.stdout
    proc = cli("diff", int_nir, "--images", SAMPLES / "Image", "--backends", "fast", "lava")
    assert proc.returncode == 0, proc.stderr
    assert "fast and lava equal on all 137 layers both hold" in proc.stdout  # every spike layer among them
