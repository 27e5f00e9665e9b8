"""Checkpoints as the authors' code loads them (issue 31): strict by default, profiling counters
dropped with a note, ``strict=False`` / ``--non-strict`` loading what their inference.py loads
(every ignored or missing key listed), a shape mismatch always refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lensnet_deploy import CheckpointError, load_lensnet
from lensnet_deploy.checkpoint import is_profiling_counter

INSTALLED = Path(sys.executable).with_name("lensnet-deploy")  # the console script pip installed
DROPPED = ["out_head1.weight", "out_head1.bias"]  # a whole layer missing from the file


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(INSTALLED), *map(str, args)], capture_output=True, text=True, timeout=600)


def _with_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` as thop's ``profile`` leaves a model: float64 ``total_ops``/``total_params`` buffers
    on the root and on modules at every depth."""
    out = dict(state)
    modules = {k.rpartition(".")[0] for k in state} | {""}
    for m in sorted(modules):
        for name in ("total_ops", "total_params"):
            out[f"{m}.{name}" if m else name] = torch.zeros(1, dtype=torch.float64) + 7
    return out


def test_profiling_counters_are_recognised_at_any_depth():
    assert is_profiling_counter("total_ops") and is_profiling_counter("backbone.stage1.0.conv.total_params")
    assert not is_profiling_counter("backbone.total_ops_scale") and not is_profiling_counter("out_head1.weight")


@pytest.mark.parametrize("prefix", ["", "module."])
def test_a_state_dict_with_profiling_counters_loads_bit_identical(tmp_path, micro_model, prefix, capsys):
    state = _with_counters({f"{prefix}{k}": v for k, v in micro_model.state_dict().items()})  # root ones unprefixed
    torch.save(state, tmp_path / "profiled.pth")
    model = load_lensnet(tmp_path / "profiled.pth", variant="lensnet-micro")
    note = capsys.readouterr().err
    assert "profiling counters" in note and "total_ops" in note
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), micro_model(x)))
    assert model.state_dict().keys() == micro_model.state_dict().keys()


def test_strict_names_a_missing_layer_and_points_to_non_strict(tmp_path, micro_model):
    state = {k: v for k, v in micro_model.state_dict().items() if k not in DROPPED}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"2 missing keys \(out_head1.weight, out_head1.bias\); "
                                              r"--non-strict \(strict=False\) loads what matches"):
        load_lensnet(tmp_path / "partial.pth", variant="lensnet-micro")


def test_non_strict_lists_every_ignored_and_missing_key(tmp_path, micro_model, capsys):
    state = {k: v for k, v in micro_model.state_dict().items() if k not in DROPPED}
    state["aux_head.weight"] = torch.zeros(3)
    torch.save({"state_dict": state, "epoch": 9}, tmp_path / "partial.pth")
    model = load_lensnet(tmp_path / "partial.pth", variant="lensnet-micro", strict=False)
    err = capsys.readouterr().err
    assert "ignored 1 keys the model does not have: aux_head.weight" in err
    assert "2 keys of the model missing from the file keep their initial values: out_head1.weight, " \
           "out_head1.bias" in err
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k in loaded)
    assert load_lensnet(tmp_path / "partial.pth", variant="lensnet-micro", strict=False, note=None) is not None
    assert capsys.readouterr().err == ""  # note=None: silent


def test_non_strict_refuses_a_checkpoint_of_nothing_it_knows(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="no key matches LENS-Net variant 'lensnet-micro'"):
        load_lensnet(tmp_path / "resnet.pth", variant="lensnet-micro", strict=False)


@pytest.mark.parametrize("strict", [True, False])
def test_a_shape_mismatch_is_always_refused(tmp_path, micro_model, strict):
    state = dict(micro_model.state_dict())
    state["out_head1.weight"] = torch.zeros(1, 7, 1, 1)
    torch.save(state, tmp_path / "shaped.pth")
    with pytest.raises(CheckpointError, match=r"mis-shaped keys \(file≠model: out_head1.weight \[1, 7, 1, 1\]≠"):
        load_lensnet(tmp_path / "shaped.pth", variant="lensnet-micro", strict=strict)


def test_non_strict_never_runs_code_from_the_file(tmp_path, micro_model):
    """``weights_only=True`` either way: a pickled object is refused, never built."""
    torch.save({"state_dict": micro_model.state_dict(), "opt": subprocess.CompletedProcess(["x"], 0)},
               tmp_path / "code.pth")
    with pytest.raises(CheckpointError, match="holds objects other than tensors"):
        load_lensnet(tmp_path / "code.pth", variant="lensnet-micro", strict=False)


def test_cli_non_strict_loads_a_missing_layer_and_lists_it(tmp_path, micro_model):
    state = {k: v for k, v in micro_model.state_dict().items() if k not in DROPPED}
    state["total_ops"] = torch.zeros(1, dtype=torch.float64)
    torch.save(state, tmp_path / "partial.pth")
    out = tmp_path / "m.nir"
    args = ("export", tmp_path / "partial.pth", "--variant", "lensnet-micro", "--input-size", "32", "32", "-o", out)
    strict = _cli(*args)
    assert strict.returncode == 2 and not out.exists()
    lines = [line for line in strict.stderr.splitlines() if line.strip()]  # the error alone, no note before it
    assert len(lines) == 1 and "2 missing keys" in lines[0] and "--non-strict" in lines[0], strict.stderr
    run = _cli(*args, "--non-strict")
    assert run.returncode == 0, run.stderr
    assert out.exists()
    assert "ignored 1 profiling counters (total_ops;" in run.stderr
    assert "2 keys of the model missing from the file keep their initial values: out_head1.weight, " \
           "out_head1.bias" in run.stderr


def test_cli_refuses_a_shape_mismatch_in_one_line_even_non_strict(tmp_path, micro_model):
    state = dict(micro_model.state_dict())
    state["out_head1.weight"] = torch.zeros(1, 7, 1, 1)
    torch.save(state, tmp_path / "shaped.pth")
    out = tmp_path / "maps"
    run = _cli("predict", tmp_path / "shaped.pth", "--variant", "lensnet-micro", "--non-strict",
               "--images", Path(__file__).resolve().parents[1] / "lensnet_deploy/data/samples/orssd-test/Image",
               "--out", out)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0].startswith("lensnet-deploy predict: error:") and "out_head1.weight [1, 7, 1, 1]≠[1, " in lines[0]
    assert not out.exists()
