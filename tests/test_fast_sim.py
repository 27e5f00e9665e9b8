"""The fast simulator's own choices: closed-form spike counts, exact types from static
bounds, and IEEE float32 kernels whatever the user's precision settings."""

import numpy as np
import pytest
import torch

from lensnet_deploy.api import quantize
from lensnet_deploy.export import export_nir
from lensnet_deploy.export import ops as O
from lensnet_deploy.export.ir import Graph
from lensnet_deploy.hardware.integer import fast_sim
from lensnet_deploy.hardware.integer import ops as I
from lensnet_deploy.hardware.integer.bounds import static_bounds
from lensnet_deploy.hardware.integer.fast_sim import FastSimulator, exact_dtype, prepare
from lensnet_deploy.hardware.integer.int_nir import from_int_nir
from lensnet_deploy.hardware.integer.reference import first_difference, run_reference


def test_exact_dtype_boundaries():
    assert exact_dtype(2**24 - 1) == torch.float32
    assert exact_dtype(2**24) == torch.float64
    assert exact_dtype(2**53 - 1) == torch.float64
    assert exact_dtype(2**53) == torch.int64


def test_arithmetic_thresholds():
    theta = np.array([[1, 3, 5, 7], [-3, 5, 13, 21], [0, 1, 2, 3]])
    c0, step = fast_sim._arithmetic_thresholds(theta)
    assert step.tolist() == [2, 8, 1] and c0.tolist() == [0, -10, 0]
    assert fast_sim._arithmetic_thresholds(np.array([[1, 4, 7, 10]])) is None  # step 3 is no power of two
    assert fast_sim._arithmetic_thresholds(np.array([[1, 3, 7, 9]])) is None  # uneven
    # the closed form counts like the definition on every integer around the thresholds
    m = torch.arange(-30, 40, dtype=torch.float32).view(1, 1, -1, 1).expand(1, 3, -1, 1).contiguous()
    spike = Graph()
    spike.add("input", O.Input(), [], (3, 70, 1))
    spike.add("s", I.IntSpike(D=4, theta=theta), ["input"], (3, 70, 1))
    step_ = fast_sim._prepare_spike(spike.nodes["s"], [fast_sim._step(spike.nodes["input"], 40)],
                                    static_bounds(spike)["s"])
    assert "c0" in step_.tensors
    want = (m.double().unsqueeze(-1) > torch.from_numpy(theta).double().view(1, 3, 1, 1, 4)).sum(-1)
    assert torch.equal(fast_sim._spike(step_, m).long(), want)


@pytest.fixture(scope="module")
def micro_int(micro_model):
    return from_int_nir(quantize(export_nir(micro_model, (32, 32))))


def test_quantized_graph_uses_float32_and_the_closed_form(micro_int):
    steps = {s.node.name: s for s in prepare(micro_int)}
    sources: dict[str, list[bool]] = {}
    for s in steps.values():
        if s.node.kind in ("conv", "add", "gate", "spike", "attention"):
            assert s.dtype == torch.float32, s.node.name
        if s.node.kind == "spike":
            sources.setdefault(micro_int.nodes[s.node.inputs[0]].kind, []).append("c0" in s.tensors)
    # every membrane's thresholds are arithmetic with a power-of-two step; attention's are not
    assert all(sources["conv"]) and all(sources["add"]) and len(sources["conv"]) > 20
    assert not any(sources["attention"]) and len(sources["attention"]) == 2


def wide_graph(bias: int) -> Graph:
    """A convolution whose worst case (127·2^12·27·152 + |b| ≈ 2^31) is beyond float32."""
    g = Graph(meta={"integer": {"semantics": "test"}, "outputs": ["out"]})
    g.add("input", O.Input(), [], (3, 8, 8))
    w = np.full((2, 3, 3, 3), 127, dtype=np.int64)
    w[1] = -w[1]
    g.add("conv", I.IntConv(w_int=w, exp=12, b_int=[bias, -bias], padding=(1, 1)), ["input"], (2, 8, 8))
    g.add("head", I.IntConv(w_int=np.ones((1, 2, 1, 1)), b_int=[1]), ["conv"], (1, 8, 8))
    g.add("bil", I.IntBilinear(factor=2), ["head"], (1, 16, 16))
    g.add("out", I.IntOutput(real_scale=np.ones(1)), ["bil"], (1, 16, 16))
    return g


def test_wide_values_get_float64_and_stay_exact():
    g = wide_graph(bias=12345)
    images = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 8, 8)))
    ref: dict = {}
    run_reference(g, images, keep=ref)
    assert np.abs(ref["conv"]).max() > 2**24  # really beyond float32
    sim = FastSimulator(g)
    steps = {s.node.name: s for s in sim.steps}
    assert steps["conv"].dtype == torch.float64 and steps["head"].dtype == torch.float64
    run = sim(images, keep=True)
    assert first_difference(ref, {k: v.numpy() for k, v in run.values.items()}, list(g.nodes)) is None
    # the same graph forced into float32 loses the bias's low bits: the type choice matters
    for name in ("conv", "head"):
        steps[name].dtype = torch.float32
        steps[name].tensors = {k: v.float() for k, v in steps[name].tensors.items()}
    forced = sim(images, keep=True)
    name, count = first_difference(ref, {k: v.numpy() for k, v in forced.values.items()}, list(g.nodes))
    assert name == "conv" and count > 0


def test_precision_settings_are_pinned_and_restored(micro_int, micro_model):
    mk = torch.backends.mkldnn
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref: dict = {}
    run_reference(micro_int, images, keep=ref)
    seen = {}
    original = fast_sim.FastSimulator._run

    def spy(self, *args):
        seen["conv"], seen["matmul"] = mk.conv.fp32_precision, mk.matmul.fp32_precision
        return original(self, *args)

    saved = (mk.conv.fp32_precision, mk.matmul.fp32_precision, torch.get_float32_matmul_precision())
    try:
        torch.set_float32_matmul_precision("medium")
        mk.conv.fp32_precision = "bf16"
        fast_sim.FastSimulator._run = spy
        run = FastSimulator(micro_int)(images, keep=True)
        assert seen == {"conv": "ieee", "matmul": "ieee"}
        assert (mk.conv.fp32_precision, mk.matmul.fp32_precision) == ("bf16", "bf16")
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        fast_sim.FastSimulator._run = original
        torch.set_float32_matmul_precision(saved[2])
        mk.conv.fp32_precision, mk.matmul.fp32_precision = saved[0], saved[1]
    assert first_difference(ref, {k: v[0].numpy()[None] for k, v in run.values.items()}, list(micro_int.nodes)) is None


def test_observed_maxima_only_on_request(micro_int):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    sim = FastSimulator(micro_int)
    assert sim(images).observed_max == {}
    kept = sim(images, keep=True, observe=True)
    for name, value in kept.observed_max.items():
        assert value == int(kept.values[name].abs().max())
    assert set(kept.observed_max) == {n.name for n in micro_int if n.kind in ("conv", "add", "gate")}
