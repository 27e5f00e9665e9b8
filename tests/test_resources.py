"""Loihi resources, placement, board errors and energy: hand-computed small graphs."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from lensnet_deploy import DesignRuleError, LensNetDeployError, ResourceError, compile, export_nir, load_build, quantize
from lensnet_deploy.export import ops as O
from lensnet_deploy.export.ir import Graph
from lensnet_deploy.hardware import load_target
from lensnet_deploy.hardware.integer import ops as I
from lensnet_deploy.hardware.loihi.energy import E_AC_PJ, E_MAC_PJ, estimate_energy
from lensnet_deploy.hardware.loihi.lower import build_plan
from lensnet_deploy.hardware.loihi.resources import LayerResources, Resources, network_resources, place
from lensnet_deploy.hardware.target.chips import load_boards
from lensnet_deploy.model_zoo import VARIANTS, LensNet
from lensnet_deploy.model_zoo.random_weights import randomize_


def small_graph() -> Graph:
    g = Graph(meta={"outputs": ["out"], "integer": {"semantics": "test"}})
    g.add("input", O.Input(), [], (3, 4, 4))
    g.add("c1", I.IntConv(w_int=np.ones((2, 3, 3, 3)), b_int=[0, 0], padding=(1, 1)), ["input"], (2, 4, 4))
    g.add("s1", I.IntSpike(D=4, theta=np.ones((2, 4))), ["c1"], (2, 4, 4))
    g.add("c2", I.IntConv(w_int=np.ones((2, 2, 1, 1)), b_int=[0, 0]), ["s1"], (2, 4, 4))
    g.add("j", O.Add(), ["c1", "c2"], (2, 4, 4))
    g.add("s2", I.IntSpike(D=4, theta=np.ones((2, 4))), ["j"], (2, 4, 4))
    g.add("head", I.IntConv(w_int=np.ones((1, 2, 1, 1)), b_int=[0]), ["s2"], (1, 4, 4))
    g.add("bil", I.IntBilinear(factor=2), ["head"], (1, 8, 8))
    g.add("out", I.IntOutput(real_scale=np.ones(1)), ["bil"], (1, 8, 8))
    return g


def test_network_resources_hand_computed():
    """input → c1 (3×3, 2 ch) → s1 → c2 (1×1) ⊕ c1 → s2 → head → bilinear, D = 4, 4×4 maps."""
    plan = build_plan(small_graph(), load_target("loihi2"))
    res = network_resources(plan, load_target("loihi2"))
    rows = {x.name: x for x in res.layers}
    # c1 feeds s1 and the join: a graded relay of 2·16 neurons; its Conv: 2 outputs × 27 taps × 16 positions
    assert (rows["c1/relay"].kind, rows["c1/relay"].neurons, rows["c1/relay"].synapses) == ("GradedVec", 32, 864)
    # s1: 2 channels × 4 planes × 16 LIF neurons, one synapse each from the relay
    assert (rows["s1"].kind, rows["s1"].neurons, rows["s1"].synapses) == ("LIFReset", 128, 128)
    # s2 reads the relay (128) and c2 over s1's planes: 8 rows × 8 plane inputs × 16 positions
    assert (rows["s2"].neurons, rows["s2"].synapses, rows["s2"].fan_in) == (128, 128 + 1024, 2)
    # the head's relay: 16 neurons, 8 plane inputs each; the host resizes it
    assert (rows["head/relay"].neurons, rows["head/relay"].synapses) == (16, 128)
    assert rows["bil"].placement == "host" and rows["bil"].ops == 4 * 64
    assert res.neurons == 304 and res.synapses == 864 + 128 + 1152 + 128
    placement = place(res, load_target("loihi2"))
    assert (placement.cores, placement.chips, placement.lower_bound_chips) == (1, 1, 1)
    # stored under Loihi 2's cited model (a Conv keeps its kernel per core): c1's kernel is 2 rows × 27
    # taps, s2's Conv 8 rows × 8 plane inputs beside the relay's 128 sparse synapses, the head 1 × 8
    assert res.weights == "shared"
    assert [rows[n].stored for n in ("c1/relay", "s1", "s2", "head/relay")] == [54, 128, 128 + 64, 8]
    dense = network_resources(plan, load_target("loihi2"), share_weights=False)
    assert dense.weights == "dense" and [x.stored for x in dense.layers] == [x.synapses for x in dense.layers]
    # a larger input: what spans the image grows with its area
    four = network_resources(plan, load_target("loihi2"), area=4.0)
    assert four.neurons == 4 * 304 and four.synapses == 4 * res.synapses


def test_a_kernel_is_stored_on_every_core_its_rows_span():
    """Rows of 10 neurons with kernels of 1..4 weights: 2 cores hold rows 0-1 and 2-3 (10 weights);
    3 cores of 14 neurons hold rows 0-1, 1-2, 2-3, so rows 1 and 2 are stored twice (15); 40 cores
    of one neuron keep each row 10 times (100)."""
    from lensnet_deploy.hardware.loihi.resources import kernel_copies

    k = np.array([1, 2, 3, 4])
    assert kernel_copies(k, 10, 40, 1) == 10 and kernel_copies(k, 10, 40, 2) == 10
    assert kernel_copies(k, 10, 40, 3) == 15 and kernel_copies(k, 10, 40, 40) == 100
    plan = build_plan(small_graph(), load_target("loihi2"))
    # 8 neurons per core: c1's relay (2 rows of 16) takes 4 cores, each keeps its row's 27 taps
    eight = dataclasses.replace(load_target("loihi2"), neurons_per_core=8)
    rows = {x.name: x for x in network_resources(plan, eight).layers}
    assert (rows["c1/relay"].cores, rows["c1/relay"].stored) == (4, 4 * 27)
    assert (rows["s2"].cores, rows["s2"].stored) == (16, 16 * 8 + 128)
    # 30 synapses per core: the 54 kernel weights need a second core (one row each, nothing repeated)
    small = dataclasses.replace(load_target("loihi2"), synapses_per_chip=30 * 128)
    rows = {x.name: x for x in network_resources(plan, small).layers}
    assert (rows["c1/relay"].cores, rows["c1/relay"].stored) == (2, 54)


def test_conv_weights_follow_the_target_file_and_cite_their_source():
    loihi2, loihi1 = load_target("loihi2"), load_target("loihi1")
    assert (loihi2.conv_weights, loihi2.shares_conv_weights) == ("shared", True)
    assert "pull request 341" in loihi2.sources["conv_weights"] and "lava/proc/conv" in loihi2.sources["conv_weights"]
    assert (loihi1.conv_weights, loihi1.shares_conv_weights) == ("dense", False) and loihi1.sources["conv_weights"]
    with pytest.raises(LensNetDeployError, match="conv_weights 'both' is not one of shared, dense"):
        _ = dataclasses.replace(loihi2, conv_weights="both").shares_conv_weights


@pytest.fixture(scope="module")
def tiny_256_plan():
    from lensnet_deploy import load_lensnet
    from lensnet_deploy.hardware.model import IntegerModel

    target = load_target("loihi2")
    return IntegerModel.of(quantize(export_nir(load_lensnet("lensnet-tiny"), (256, 256)))).plan(target), target


def test_lensnet_tiny_at_256_both_weight_models(tiny_256_plan):
    """The zoo's lensnet-tiny at its native 256² (docs/hardware.md): 36 chips with kernels stored per
    core (the default, Hala Point); one synapse per pair, 8,432 cores on 66 chips (issue 31)."""
    plan, target = tiny_256_plan
    shared = network_resources(plan, target)
    dense = network_resources(plan, target, share_weights=False)
    assert shared.neurons == dense.neurons == 36_726_806 and shared.synapses == dense.synapses == 6_270_466_417
    assert shared.shared_weights == 33_696_487 and shared.stored == 33_784_127 and dense.stored == 6_270_466_417
    s, d = place(shared, target), place(dense, target)
    assert (s.cores, s.chips, s.lower_bound_chips) == (4_505, 36, 36)
    assert (d.cores, d.chips, d.lower_bound_chips) == (8_432, 66, 53)


def test_big_layers_take_whole_cores_and_small_ones_share():
    target = load_target("loihi1")  # 1,024 neurons per core
    res = Resources([LayerResources("big", "LIFReset", neurons=4096, cores=4),
                     LayerResources("small", "LIFReset", neurons=64, cores=1)])
    p = place(res, target)
    assert p.cores == 5 and [r[1] for r in p.per_layer] == [0, 4]  # the big one's last core is full


def test_energy_hand_computed():
    g = small_graph()
    counts = {"s1": torch.full((1, 2, 4, 4), 2), "s2": torch.zeros((1, 2, 4, 4), dtype=torch.int64)}
    report = estimate_energy(g, counts, load_target("loihi2"))
    # first layer: 32 outputs × 27 MACs; c2 reads s1 (mean count 2): 2 × 64 accumulates; head reads silent s2
    assert report.macs_first_layer == 864 and report.accumulates == 128
    assert report.paper_mj == pytest.approx((E_MAC_PJ * 864 + E_AC_PJ * 128) * 1e-9)
    # Loihi-style: dense first layer (864 ops) + c2 (all inputs non-zero: 64) + head (none); 64 neuron updates
    assert report.synaptic_ops == 864 + 64 and report.neuron_updates == 64
    assert report.loihi_mj == pytest.approx((23.6 * 928 + 52.0 * 64) * 1e-9)
    assert "Horowitz" in report.format() and "Davies" in report.format()


def test_targets_and_boards_cite_their_sources():
    boards = load_boards()
    assert {k: v["chips"] for k, v in boards.items()} == {"oheo-gulch": 1, "kapoho-point": 8, "hala-point": 1152}
    for name in ("loihi1", "loihi2"):
        target = load_target(name)
        assert set(target.sources) >= {"neuro_cores_per_chip", "neurons_per_chip", "synapses_per_chip",
                                       "energy_pj", "weight_bits", "state_bits", "graded_spike_bits"}
    with pytest.raises(LensNetDeployError, match="unknown target 'loihi9'"):
        load_target("loihi9")


@pytest.fixture(scope="module")
def micro_256():
    model = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=1).eval()
    return quantize(export_nir(model, (256, 256)))


def test_a_board_too_small_names_layer_limit_board_and_size(micro_256):
    with pytest.raises(ResourceError) as err:
        compile(micro_256, board="oheo-gulch")
    msg = str(err.value)
    assert "but oheo-gulch has 128" in msg and "passes the limit at core" in msg
    assert "layer backbone." in msg
    assert "smallest board that holds it: hala-point" in msg
    assert "largest input that fits oheo-gulch: 32x32" in msg
    # estimated from the plan's growth with the input area, settled on real networks: 32² fits, 48² does not
    model = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=1).eval()
    assert compile(quantize(export_nir(model, (32, 32))), board="oheo-gulch").placement.cores <= 128
    with pytest.raises(ResourceError):
        compile(quantize(export_nir(model, (48, 48))), board="oheo-gulch")


def test_build_round_trip(tmp_path, micro_256):
    build = compile(micro_256, board="hala-point", images=torch.zeros(1, 3, 256, 256))
    out = build.save(tmp_path / "build")
    for name in ("model.q.nir", "build.json", "resources.json", "resources.txt", "placement.json", "energy.json",
                 "activity.json", "firing_rates.png"):
        assert (out / name).exists(), name
    assert json.loads((out / "build.json").read_text())["chips"] == build.placement.chips
    again = load_build(out)
    assert again.summary() == build.summary()
    assert [x.to_dict() for x in again.resources.layers] == [x.to_dict() for x in build.resources.layers]
    assert again.placement.to_dict() == build.placement.to_dict()
    assert again.energy.to_dict() == json.loads(json.dumps(build.energy.to_dict(), default=float))
    assert build.energy is not None and build.energy.paper_mj > 0


def test_activity_hand_computed():
    from lensnet_deploy.hardware.loihi.activity import layer_activity

    counts = {"s1": torch.tensor([0, 0, 4, 2]).view(1, 1, 2, 2).expand(1, 2, 2, 2).reshape(1, 2, 2, 2)}
    g = Graph(meta={"outputs": []})
    g.add("input", O.Input(), [], (2, 2, 2))
    g.add("s1", I.IntSpike(D=4, theta=np.ones((2, 4))), ["input"], (2, 2, 2))
    (row,) = layer_activity(g, counts)
    assert row["mean_count"] == 1.5 and row["firing_rate"] == 0.375 and row["sparsity"] == 0.5


def test_deploy_says_what_is_missing(tmp_path, micro_256):
    from lensnet_deploy.hardware.deploy import deploy, loihi2_available

    compile(micro_256, board="hala-point").save(tmp_path / "build")
    before = sorted(p.name for p in (tmp_path / "build").iterdir())
    available, why = loihi2_available()
    assert not available and "lava-loihi" in why
    with pytest.raises(LensNetDeployError, match="lava-loihi extension is not installed.*build .* is complete"):
        deploy(tmp_path / "build")
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == before
    with pytest.raises(LensNetDeployError, match="not a build folder"):
        deploy(tmp_path)


def test_target_widths_reach_quantize(micro_256):
    """A 4-bit weight target gives |W_int| ≤ 7 on every layer; the file's own widths say so too."""
    import dataclasses

    from lensnet_deploy.hardware.integer.int_nir import from_int_nir

    model = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=1).eval()
    four = dataclasses.replace(load_target("loihi2"), weight_bits=4)
    q = from_int_nir(quantize(export_nir(model, (64, 64)), target=four))
    convs = q.of(I.IntConv)
    assert len(convs) > 20 and max(int(abs(n.op.w_int).max()) for n in convs) == 7
    assert q.integer["weight_bits"] == 4
    eight = from_int_nir(quantize(export_nir(model, (64, 64))))
    assert max(int(abs(n.op.w_int).max()) for n in eight.of(I.IntConv)) == 127


def test_loihi1_refuses_graded_spikes_naming_the_first_layer(micro_256):
    from lensnet_deploy.hardware.integer.int_nir import from_int_nir

    first = next(n.name for n in from_int_nir(micro_256) if isinstance(n.op, I.IntSpike))
    with pytest.raises(DesignRuleError) as err:
        compile(micro_256, target="loihi1", board="hala-point")
    e = err.value
    assert (e.layer, e.rule, e.limit, e.value) == (first, "graded_spike_bits", "binary spikes only",
                                                   "3-bit spike counts (D = 4)")
    assert str(e).startswith(f"layer {first}: design rule 'graded_spike_bits' broken")
    assert e.exit_code == 3
