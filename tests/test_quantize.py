"""Quantization (docs/integer_semantics.md v0) and the integer simulation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SAMPLES

from lensnet_deploy.datasets import list_images, load_images
from lensnet_deploy.export import ops as O
from lensnet_deploy.export.capture import capture_lensnet
from lensnet_deploy.export.ir import Graph
from lensnet_deploy.export.passes import run_passes
from lensnet_deploy.hardware.integer.fast_sim import FastSimulator
from lensnet_deploy.hardware.integer.fast_sim import bilinear as bilinear_int
from lensnet_deploy.hardware.integer.int_nir import from_int_nir
from lensnet_deploy.hardware.integer.ops import IntConv, IntSpike, SigmoidTable
from lensnet_deploy.hardware.integer.quantize import _Quantizer, quantize_ir
from lensnet_deploy.hardware.integer.reference import simulate_reference
from lensnet_deploy.hardware.integer.semantics import centred_pixels
from lensnet_deploy.hardware.target.chips import load_target
from lensnet_deploy.model_zoo import VARIANTS, LensNet
from lensnet_deploy.model_zoo.random_weights import randomize_
from lensnet_deploy.normalization import PIXEL_OFFSET


@pytest.fixture(scope="module")
def micro_int():
    model = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=2).eval()
    graph = run_passes(capture_lensnet(model, (64, 64)))
    return model, graph, *quantize_ir(graph)


def test_integer_parameters_fit_their_widths(micro_int):
    _, _, q, report = micro_int
    for n in q.of(IntConv):
        assert n.op.w_int.dtype == np.int64 and np.abs(n.op.w_int).max() <= 127
        assert n.op.exp >= 0
    assert all(r["bound"] <= (2**23 - 1) for r in report.rows)
    assert report.worst()["bound"] > 2**10  # the bound is not vacuous


def test_thresholds_round_ties_up_hand_computed():
    g = Graph()
    g.add("input", O.Input(), [], (3, 1, 1))
    g.add("c", O.Conv(weight=np.ones((2, 3, 1, 1))), ["input"], (2, 1, 1))
    q = _Quantizer(g, load_target("loihi2"), per_channel=True)
    q.shift["c"] = np.array([1, 3])
    # shift 1: θ = ceil((k − ½)·2) − 1 = 0, 2, 4, 6;  shift 3: 3, 11, 19, 27 (m = 4 at shift 3 is 0.5: fires)
    theta = q.thresholds("c", 4)
    assert theta.tolist() == [[0, 2, 4, 6], [3, 11, 19, 27]]
    # a LIF that reads m >> 2 needs θ ≡ −1 (mod 4): the ties-up thresholds at shift 3 already are, so
    # the pre-shift moves none of them (ties-down ones, 4, 12, …, would move by up to 2)
    q.pre_shift = lambda src, D: 2  # type: ignore[method-assign]
    assert q.thresholds("c", 4)[1].tolist() == [3, 11, 19, 27]


def test_integer_bilinear_is_exactly_scaled_real_bilinear():
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.integers(-1000, 1000, size=(2, 1, 5, 7)))
    for f in (2, 4, 16):
        ints = bilinear_int(p, f)
        real = F.interpolate(p.double(), scale_factor=f, mode="bilinear", align_corners=False)
        assert ints.dtype == torch.int64
        assert float((ints.double() - real * (2 * f) ** 2).abs().max()) < 1e-6  # real side rounds, ints exact


def test_pixels_are_recovered_from_normalised_images():
    files = list_images(SAMPLES / "Image")[:2]
    x = load_images(files, (32, 32))
    px = centred_pixels(x) + torch.tensor(PIXEL_OFFSET).view(1, 3, 1, 1)
    from PIL import Image

    ref = np.asarray(Image.open(files[0]).convert("RGB").resize((32, 32), Image.BILINEAR))
    assert px[0].permute(1, 2, 0).numpy().tolist() == ref.tolist()


def test_fast_simulator_equals_the_int64_reference_bit_for_bit(micro_int):
    _, _, q, _ = micro_int
    x = load_images(list_images(SAMPLES / "Image")[:3], (64, 64))
    ref, fast = simulate_reference(q, x), FastSimulator(q)(x)
    assert all(torch.equal(a, b) for a, b in zip(ref.raw, fast.raw))
    assert all(torch.equal(ref.spike_counts[k], fast.spike_counts[k]) for k in ref.spike_counts)
    assert all(r.dtype == torch.int64 for r in ref.raw)


def test_one_weight_off_by_one_is_caught(micro_int):
    _, _, q, _ = micro_int
    x = load_images(list_images(SAMPLES / "Image")[:2], (64, 64))
    base = FastSimulator(q)(x)
    changed = q.copy()
    changed.nodes["backbone.downsample1_1.encode_conv"].op.w_int[0, 0, 3, 3] += 1
    other = FastSimulator(changed)(x)
    first = "backbone.ConvBlock1_1.0.Conv.spike1"
    assert not torch.equal(base.spike_counts[first], other.spike_counts[first]) or not all(
        torch.equal(a, b) for a, b in zip(base.raw, other.raw))


def test_integer_model_tracks_the_float_model(micro_int):
    model, graph, q, _ = micro_int
    x = load_images(list_images(SAMPLES / "Image"), (64, 64))
    run = FastSimulator(q)(x)
    with torch.no_grad():
        ref = model(x)
    first = "backbone.ConvBlock1_1.0.Conv.spike1"
    from lensnet_deploy.export.ir_exec import run_ir

    float_counts = run_ir(graph, x, keep=True)[first].round().long()
    # v1: what a LIF neuron reads stays below 2^17, so the first layer (pixels × 7×7×3 weights) is coarser
    # than v0's 2^23 (measured 97.0 % of its spike counts equal, v0 > 99 %)
    assert float((float_counts == run.spike_counts[first]).double().mean()) > 0.96
    corr = torch.corrcoef(torch.stack([run.logits[0].flatten(), ref[0].double().flatten()]))[0, 1]
    assert float(corr) > 0.9


def test_public_api_through_nir_files_equals_the_direct_path(tmp_path, micro_int):
    from lensnet_deploy import quantize, simulate
    from lensnet_deploy.export import export_nir, read_nir, run_nir, write_nir

    model, _, q_direct, _ = micro_int
    x = load_images(list_images(SAMPLES / "Image")[:3], (64, 64))
    int_graph = quantize(export_nir(model, (64, 64)), x)
    loaded = read_nir(write_nir(int_graph, tmp_path / "m.q.nir"))
    fast, ref = simulate(loaded, x), simulate(loaded, x, backend="reference")
    direct = FastSimulator(q_direct)(x)
    for a, b, c in zip(fast.raw, ref.raw, direct.raw):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert [tuple(t.shape) for t in fast.raw] == [(3, 1, 64, 64)] * 4
    assert not torch.equal(fast.raw[0], fast.raw[3])  # p1 (finest head) is not p4
    assert set(fast.spike_counts) == {n.name for n in q_direct.of(IntSpike)}
    # the float interpreter (export/) refuses integer graphs rather than guess their extensions
    from lensnet_deploy.export.convention import NIRConventionError

    with pytest.raises(NIRConventionError, match="run_nir executes float graphs"):
        run_nir(loaded, x)


def test_simulate_refuses_a_float_graph(micro_int):
    from lensnet_deploy import LensNetDeployError, simulate
    from lensnet_deploy.export import export_nir

    model = micro_int[0]
    with pytest.raises(LensNetDeployError, match="needs an integer graph"):
        simulate(export_nir(model, (64, 64)), torch.zeros(1, 3, 64, 64))
    with pytest.raises(LensNetDeployError, match="unknown backend 'gpu'"):
        simulate(export_nir(model, (64, 64)), torch.zeros(1, 3, 64, 64), backend="gpu")


def test_per_layer_shifts_and_strict_mode(micro_int):
    from lensnet_deploy.hardware.integer.quantize import QuantizationError

    _, graph, per_channel, _ = micro_int
    per_layer, report = quantize_ir(graph, per_channel=False)
    for n in per_layer.of(IntConv):
        assert len(set(n.op.shift.tolist())) == 1
    assert all(r["bound"] <= (2**23 - 1) for r in report.rows)
    finer = sum(int(n.op.shift.sum()) for n in per_channel.of(IntConv))
    assert finer >= sum(int(n.op.shift.sum()) for n in per_layer.of(IntConv))
    # a convolution with fan-in 4096·3·3: at full int8 precision its worst case is
    # 36,864 · 64 · 4 ≈ 9.4 M > 2^23 (weights 1.0 sit at 64 = 1.0·2^6), so it must be coarsened (or refused)
    rng = np.random.default_rng(0)
    g = Graph(meta={"outputs": ["out"]})
    g.add("input", O.Input(), [], (3, 2, 2))
    g.add("wide", O.Conv(weight=rng.normal(size=(4096, 3, 1, 1))), ["input"], (4096, 2, 2))
    g.add("s", O.Spike(D=4), ["wide"], (4096, 2, 2))
    g.add("fan", O.Conv(weight=np.ones((1, 4096, 3, 3)), padding=(1, 1)), ["s"], (1, 2, 2))
    g.add("bil", O.Bilinear(factor=2), ["fan"], (1, 4, 4))
    g.add("out", O.Output(), ["bil"], (1, 4, 4))
    with pytest.raises(QuantizationError, match="fan: worst case .* exceeds 24-bit state .*strict"):
        quantize_ir(g, strict=True)
    loose, loose_report = quantize_ir(g)
    assert all(r["bound"] <= (2**23 - 1) for r in loose_report.rows)
    assert int(loose.nodes["fan"].op.shift[0]) < 6  # weights 1.0 would sit at their ideal 64 = 1.0·2^6


@pytest.mark.slow
def test_full_lensnet_at_352_fits_24_bits():
    """Measured: worst bound 8,382,871 ≤ 8,388,607; 97.9 % of spike counts equal the float model."""
    from lensnet_deploy.api import quantize_with_report
    from lensnet_deploy.export import export_nir

    model = randomize_(LensNet(), seed=11).eval()
    x = load_images(list_images(SAMPLES / "Image")[:2], (352, 352))
    _, report = quantize_with_report(export_nir(model, (352, 352)), x)
    assert all(r["bound"] <= (2**23 - 1) for r in report.layers)
    assert all(r["observed"] <= r["bound"] for r in report.layers)
    assert np.mean(list(report.spike_agreement.values())) > 0.9


def test_quantize_report_saturations_and_metrics():
    """Every figure of the report recomputed another way: counts from ``simulate``, metrics
    from the saved maps' own evaluation; and independent of the batch size."""
    from lensnet_deploy import export_nir, load_lensnet
    from lensnet_deploy.api import quantize_with_report, simulate
    from lensnet_deploy.datasets import read_mask
    from lensnet_deploy.metrics import SODMetrics
    from lensnet_deploy.predict import saliency_map

    model = load_lensnet("lensnet-tiny")
    files = list_images(SAMPLES / "Image")[:3]
    masks = [read_mask(SAMPLES / "GT" / f"{f.stem}.png") for f in files]
    x = load_images(files, (64, 64))
    graph = export_nir(model, (64, 64))
    q, report = quantize_with_report(graph, x, masks, batch_size=2)
    _, again = quantize_with_report(graph, x, masks, batch_size=3)
    assert report.saturation == again.saturation and report.metrics == again.metrics
    assert report.spike_agreement == pytest.approx(again.spike_agreement, abs=1e-12)
    sat = report.saturation
    run = simulate(q, x)
    ir = from_int_nir(q)
    assert sat["neurons"] == sum(c.numel() for c in run.spike_counts.values())
    assert sat["at_top_integer"] == sum(int((c == ir.nodes[k].op.D).sum()) for k, c in run.spike_counts.items())
    assert sat["at_top_integer"] > 0 and sat["weights_clipped"] == 0 and sat["state_over_bound"] == 0
    assert sat["gate_inputs"] == 3 * sum(n.shape[0] for n in ir.of(SigmoidTable))
    integer = SODMetrics()
    for logits, mask in zip(run.logits[0], masks):
        integer.step(saliency_map(logits.float(), mask.shape), mask)
    assert report.metrics["integer"] == integer.results()
    delta = report.metrics["Δ (int − float)"]
    assert delta["smeasure"] == report.metrics["integer"]["smeasure"] - report.metrics["float"]["smeasure"]
    # image by image: ΔS per calibration image, and their mean is the ΔS of the means
    per = report.per_image_delta_s
    assert len(per) == 3 and per == again.per_image_delta_s
    float_s = [i - d for i, d in zip(integer.per_image_smeasure(), per)]  # the integer side from the maps above
    assert sum(float_s) / 3 == pytest.approx(report.metrics["float"]["smeasure"], abs=1e-12)
    assert sum(per) / 3 == pytest.approx(delta["smeasure"], abs=1e-12)
    worst = max(range(3), key=lambda i: abs(per[i]))
    assert f"worst {per[worst]:+.4f} (image {worst + 1})" in report.format()
    with pytest.raises(Exception, match="one calibration image each"):
        quantize_with_report(graph, x, masks[:2])


def test_an_all_zero_channel_leaves_the_other_channels_grid_alone(micro_model):
    """A zero channel (what rounding leaves of tiny weights once a model sits on its grid) has no
    weight to respect: it must neither coarsen its stream nor raise the layer's exponent."""
    g = run_passes(capture_lensnet(micro_model, (32, 32)))
    q, _ = quantize_ir(g)
    name = "backbone.block4.0.mlp.fc2_conv"
    zeroed = g.copy()
    zeroed.nodes[name].op.weight = zeroed.nodes[name].op.weight.copy()
    zeroed.nodes[name].op.weight[0] = 0.0
    q0, _ = quantize_ir(zeroed)
    before, after = q.nodes[name].op, q0.nodes[name].op
    assert after.exp == before.exp
    assert np.array_equal(after.shift[1:], before.shift[1:])
    assert np.array_equal(after.w_int[1:], before.w_int[1:]) and not after.w_int[0].any()
