"""Loading checkpoints strictly: the authors' .pth forms, our safetensors, clear errors."""

import pytest
import torch

from lensnet_deploy import CheckpointError, load_lensnet, save_lensnet
from lensnet_deploy.model_zoo import VARIANTS, LensNet
from lensnet_deploy.model_zoo.random_weights import randomize_


@pytest.fixture(scope="module")
def full_state():
    return randomize_(LensNet(), seed=5).state_dict()


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module"])
def test_authors_pth_forms_load_strictly(tmp_path, full_state, wrap):
    if wrap == "bare":
        obj = full_state
    elif wrap == "module":
        obj = {f"module.{k}": v for k, v in full_state.items()}
    else:
        obj = {wrap: full_state, "epoch": 3}
    path = tmp_path / "lens.pth"
    torch.save(obj, path)
    model = load_lensnet(path)
    assert not model.training
    assert model.input_size == (352, 352)
    for k, v in model.state_dict().items():
        assert torch.equal(v, full_state[k]), k


def test_safetensors_round_trip_keeps_the_variant(tmp_path, micro_model):
    path = save_lensnet(micro_model, tmp_path / "m.safetensors", variant="lensnet-micro")
    model = load_lensnet(path)
    assert model.config == VARIANTS["lensnet-micro"]
    assert model.input_size == (64, 64)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)[0], micro_model(x)[0])


def test_variant_argument_for_small_pth(tmp_path, micro_model):
    torch.save(micro_model.state_dict(), tmp_path / "micro.pth")
    assert load_lensnet(tmp_path / "micro.pth", variant="lensnet-micro").config.embed_dims == (16, 32, 64, 80)
    with pytest.raises(CheckpointError, match=r"does not match LENS-Net variant 'lensnet'.*missing keys"):
        load_lensnet(tmp_path / "micro.pth")


def test_wrong_architecture_names_missing_unexpected_and_misshaped_keys(tmp_path, full_state):
    state = dict(full_state)
    del state["out_head1.bias"]
    del state["decoder.scab1.fc1.0.weight"]
    state["resnet.fc.weight"] = torch.zeros(3)
    state["out_head2.weight"] = torch.zeros(1, 65, 1, 1)
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as err:
        load_lensnet(tmp_path / "other.pth")
    msg = str(err.value)
    assert "2 missing keys (out_head1.bias, decoder.scab1.fc1.0.weight)" in msg or \
        "2 missing keys (decoder.scab1.fc1.0.weight, out_head1.bias)" in msg
    assert "1 unexpected keys (resnet.fc.weight)" in msg
    assert "1 mis-shaped keys (file≠model: out_head2.weight [1, 65, 1, 1]≠[1, 64, 1, 1])" in msg
    assert "\n" not in msg


def test_many_missing_keys_are_counted_not_listed(tmp_path):
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "r.pth")
    with pytest.raises(CheckpointError, match=r"810 missing keys \(.*, … 807 more\)"):
        load_lensnet(tmp_path / "r.pth")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_corrupt_or_truncated_files(tmp_path, micro_model, content):
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save(micro_model.state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_lensnet(path, variant="lensnet-micro")


def test_truncated_safetensors(tmp_path, micro_model):
    path = save_lensnet(micro_model, tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_lensnet(path)


def test_missing_file_and_unknown_names():
    with pytest.raises(CheckpointError, match="no such checkpoint file or zoo model"):
        load_lensnet("/nonexistent/lens.pth")
    with pytest.raises(CheckpointError, match="no trained checkpoint in the zoo"):
        load_lensnet("lensnet-micro")


def test_nan_weights_are_rejected(tmp_path, micro_model):
    state = micro_model.state_dict()
    state["out_head1.bias"] = torch.tensor([float("nan")])
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="out_head1.bias holds NaN or Inf"):
        load_lensnet(tmp_path / "nan.pth", variant="lensnet-micro")
