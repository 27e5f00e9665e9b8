"""LENS-Net structure and numerics: state_dict keys, hand-computed blocks, the authors' outputs."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES

from lensnet_deploy.model_zoo import VARIANTS, LensNet, LensNetConfig, record_spikes
from lensnet_deploy.model_zoo.decoder import SCAB, SUCB, SpikeMAD, channel_shuffle, shuffle_permutation
from lensnet_deploy.model_zoo.encoder import SpikeLinearAttention
from lensnet_deploy.model_zoo.random_weights import randomize_


def identity_bn_(bn: torch.nn.Module) -> None:
    """BN that returns its input exactly: mean 0, var 1, eps 0, weight 1, bias 0."""
    bn.eps = 0.0
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.fill_(1.0)
        bn.bias.zero_()


def test_state_dict_matches_the_authors_keys_and_shapes():
    ref = json.loads((FIXTURES / "lensnet_upstream_state_dict.json").read_text())
    sd = LensNet().state_dict()
    assert len(ref) == 810
    assert list(sorted(sd)) == list(sorted(ref))
    assert {k: list(v.shape) for k, v in sd.items()} == ref
    assert sum(p.numel() for p in LensNet().parameters()) == 17_971_908


def test_forward_equals_the_authors_code_on_random_weights():
    """Fixture made by running the authors' LENS_Net (7dra/LENS-Net) on randomize_(seed=7)
    weights and a seeded 1×3×64×96 input. With the same thread count on this machine the
    logits are bit-identical (measured: max |Δ| = 0.0 at 64×64, 128×96 and 352×352); other
    thread counts change oneDNN's float32 summation order by an ulp or so, hence 1e-5."""
    ref = np.load(FIXTURES / "authors_lensnet_seed7_64x96.npz")
    model = randomize_(LensNet(), seed=7).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(ref["image"]))
    for name, ours in zip(("p1", "p2", "p3", "p4"), out):
        assert ours.shape == (1, 1, 64, 96)
        assert float((ours - torch.from_numpy(ref[name])).abs().max()) <= 1e-5, name


def test_variants_change_widths_blocks_heads_and_spike_limit():
    assert sum(p.numel() for p in LensNet(VARIANTS["lensnet-tiny"]).parameters()) == 1_167_124
    assert sum(p.numel() for p in LensNet(VARIANTS["lensnet-half"]).parameters()) == 4_551_460
    cfg = LensNetConfig().scaled(0.25, transformer_blocks=(2, 1), heads=4, max_count=2,
                                 input_size=(32, 32))
    model = randomize_(LensNet(cfg), seed=1).eval()
    assert cfg.embed_dims == (16, 32, 64, 80)
    assert len(model.backbone.block3) == 2 and len(model.backbone.block4) == 1
    assert model.backbone.block3[0].attn.heads == 4
    _, spikes = record_spikes(model, torch.randn(1, 3, 32, 32))
    assert max(int(s.max()) for s in spikes.values()) == 2
    assert model.input_size == (32, 32)


@pytest.mark.parametrize("size", [(100, 96), (96, 8), (0, 16)])
def test_input_size_must_be_multiple_of_16(size):
    with pytest.raises(ValueError, match="multiples of 16"):
        LensNet(VARIANTS["lensnet-micro"])(torch.zeros(1, 3, *size))
    with pytest.raises(ValueError, match="multiples of 16"):
        LensNetConfig(input_size=size)
    model = LensNet(VARIANTS["lensnet-micro"])
    with pytest.raises(ValueError, match="multiples of 16"):
        model.set_input_size(size)
    assert model.input_size == (64, 64) and model.config.input_size == (64, 64)


def test_set_input_size_moves_config_and_attribute_together():
    model = LensNet(VARIANTS["lensnet-micro"])
    model.set_input_size((96, 128))
    assert model.input_size == (96, 128) and model.config.input_size == (96, 128)
    assert model.config.embed_dims == VARIANTS["lensnet-micro"].embed_dims


def test_attention_hand_computed():
    """dim 8, 2 heads (head dim 4, v head dim 16), two tokens; q = k = x/4, v_j = x_{j mod 8}/4."""
    attn = SpikeLinearAttention(8, heads=2, max_count=4).eval()
    with torch.no_grad():
        attn.q_conv[0].weight.copy_(4 * torch.eye(8).view(8, 8, 1, 1))
        attn.k_conv[0].weight.copy_(4 * torch.eye(8).view(8, 8, 1, 1))
        attn.v_conv[0].weight.copy_(4 * torch.eye(8).repeat(4, 1).view(32, 8, 1, 1))
    for bn in (attn.q_conv[1], attn.k_conv[1], attn.v_conv[1], attn.proj_conv[1]):
        identity_bn_(bn)
    x = torch.tensor([[4, 4, 0, 0, 2, 0, 0, 0], [0, 4, 4, 4, 0, 0, 0, 4]], dtype=torch.float32)
    x = x.t().reshape(1, 8, 1, 2)
    rec: dict = {}
    attn.attn_spike.name, attn.attn_spike.recorder = "attn", rec
    attn(x)
    counts = rec["attn"].reshape(32, 2)
    # head 0: token0 = round(2·s0 + s1), token1 = round(s0 + 3·s1) on s0 = x0/4, s1 = x1/4
    head0_t0 = [2, 3, 1, 1, 1, 0, 0, 1]
    head0_t1 = [1, 4, 3, 3, 0, 0, 0, 3]  # 0.5 rounds to 0 (ties to even)
    assert counts[:16, 0].tolist() == head0_t0 * 2
    assert counts[:16, 1].tolist() == head0_t1 * 2
    # head 1: scores [[0.25, 0], [0, 1]]: token0 rounds to 0, token1 = s1
    assert counts[16:, 0].tolist() == [0] * 16
    assert counts[16:, 1].tolist() == [0, 1, 1, 1, 0, 0, 0, 1] * 2


def test_scab_gates_the_spikes_hand_computed():
    scab = SCAB(16, max_count=4).eval()
    with torch.no_grad():
        scab.fc1[0].weight.fill_(1.0)
        scab.fc2[0].weight.fill_(0.5)
        scab.fc3[0].weight.fill_(1.0)
        scab.fc4[0].weight.fill_(-0.25)
    x = torch.tensor([[2.0, 2.0], [2.0, 6.0]]).expand(1, 16, 2, 2).contiguous()
    # avg 3 → MS 0.75 → 16·0.75 = 12 → MS 1 → ·0.5;  max 6 → MS 1 → 16 → MS 1 → ·(−0.25)
    gate = scab(x)
    assert gate.shape == (1, 16, 1, 1)
    assert gate.flatten().tolist() == pytest.approx([1 / (1 + np.exp(-0.25))] * 16, rel=1e-6)
    dec = SpikeMAD((16, 16, 16, 16), (1, 3, 5), 2, max_count=4)
    dec.scab4 = scab
    g = 1 / (1 + np.exp(-0.25))
    out = dec._attend(scab, x)[0, 0]
    assert out.flatten().tolist() == pytest.approx([2 + 0.5 * g, 2 + 0.5 * g, 2 + 0.5 * g, 6 + g], rel=1e-6)
    assert SCAB(8, 4).fc1[0].weight.shape == (1, 8, 1, 1)  # C < 16: one reduced channel


def test_sucb_hand_computed():
    sucb = SUCB(1, 1, max_count=4).eval()
    with torch.no_grad():
        sucb.up_dwc[2].weight.zero_()
        sucb.up_dwc[2].weight[0, 0, 1, 1] = 4.0
        sucb.pwc[0].weight.fill_(2.0)
        sucb.pwc[0].bias.fill_(0.5)
    identity_bn_(sucb.up_dwc[3])
    identity_bn_(sucb.pwc[1])
    out = sucb(torch.tensor([[[[1.0, 2.6]]]]))
    # nearest ×2 → MS [0.25, 0.25, 0.75, 0.75] → ×4 → MS → ×2 + 0.5
    assert out.shape == (1, 1, 2, 4)
    assert out[0, 0].tolist() == [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]


def test_channel_shuffle_permutation():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert shuffle_permutation(6, 3) == [0, 2, 4, 1, 3, 5]
    assert channel_shuffle(x, 6).flatten().tolist() == [0, 1, 2, 3, 4, 5]


def test_heads_are_spike_conv_then_bilinear(micro_model):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p1, p2, p3, p4 = micro_model(x)
        x1, x2, x3, x4 = micro_model.backbone(x)
        d4, d3, d2, d1 = micro_model.decoder(x4, [x3, x2, x1])
        head1 = micro_model.out_head1(torch.round(torch.clamp(d1, 0, 4)) / 4)
        head4 = micro_model.out_head4(torch.round(torch.clamp(d4, 0, 4)) / 4)
    assert d1.shape[-2:] == (32, 32) and d4.shape[-2:] == (4, 4)
    assert torch.equal(p1, F.interpolate(head1, size=(64, 64), mode="bilinear", align_corners=False))
    assert torch.equal(p4, F.interpolate(head4, scale_factor=16, mode="bilinear"))
    const = F.interpolate(torch.full((1, 1, 4, 4), 0.7), scale_factor=16, mode="bilinear")
    assert torch.allclose(const, torch.tensor(0.7))


def test_record_spikes_names_every_neuron_call(micro_model):
    _, spikes = record_spikes(micro_model, torch.randn(1, 3, 64, 64))
    assert "backbone.downsample1_2.encode_spike" in spikes
    assert "decoder.sfa#4" in spikes and "decoder.sfa#5" not in spikes
    assert all(s.dtype == torch.int64 and int(s.min()) >= 0 and int(s.max()) <= 4 for s in spikes.values())
