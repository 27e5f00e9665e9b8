"""The Loihi 2 network of Lava library processes: its plan, the design-rule audit, our CPU models
of Lava's Conv and DelaySparse against Lava's own, and bit-exact runs against the fast simulator."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATASETS, SAMPLES

import lensnet_deploy as L
from lensnet_deploy.datasets import list_images, load_images
from lensnet_deploy.hardware import lava_network
from lensnet_deploy.hardware.integer import ops as I
from lensnet_deploy.hardware.integer.reference import first_difference
from lensnet_deploy.hardware.loihi.audit import audit
from lensnet_deploy.hardware.loihi.lower import build_plan
from lensnet_deploy.hardware.loihi.plan import ConvSpec, LIFResetSpec, SynapseSpec

LOIHI2 = L.load_target("loihi2")


@pytest.fixture(scope="module")
def tiny_128():
    model = L.load_lensnet("lensnet-tiny")
    return L.prepare(L.quantize(L.export_nir(model, (128, 128))))


@pytest.fixture(scope="module")
def tiny_plan(tiny_128):
    return build_plan(tiny_128.ir, LOIHI2)


def assert_lava_equals_fast(q, x) -> None:
    """The Lava network of ``q`` on ``x``: every raw logit and spike count equal to the fast simulator's."""
    fast = q.fast(x)
    try:
        run = q.simulate(x, "lava")
    finally:
        q.close()
    assert all(torch.equal(a, b) for a, b in zip(run.raw, fast.raw))
    assert set(run.spike_counts) == set(fast.spike_counts)
    assert all(torch.equal(run.spike_counts[k], fast.spike_counts[k]) for k in fast.spike_counts)


def test_the_tiny_network_is_lava_library_processes_on_neuro_cores(tiny_128, tiny_plan):
    procs = tiny_plan.procs.values()
    core = [p for p in procs if p.placement == "neuro-core"]
    assert {p.kind for p in core} == {"Conv", "Sparse", "DelaySparse", "LIFReset", "GradedVec"}
    assert all(p.library and p.lava_class.startswith("lava.proc.") for p in core)
    assert len({p.name for p in procs}) == len(tiny_plan.procs)  # names are unique
    others = {p.kind: p.placement for p in procs if p.placement != "neuro-core"}
    assert others == {"PixelSource": "host", "Readout": "host", "Bilinear": "host", "SumPool": "embedded",
                      "WideSpike": "embedded", "Attention": "embedded", "SigmoidTable": "embedded", "Gate": "embedded"}
    share = tiny_plan.neuro_core_synop_share
    assert 0.997 < share < 0.998  # measured 0.99785: the attention product is the embedded cores' work
    assert audit(tiny_plan, LOIHI2) == []
    # every spike layer has LIF planes on neuro-cores, or (on a 64-bit value) a spike process of ours
    spikes = {n.name for n in tiny_128.ir.of(I.IntSpike)}
    held = {p.node for p in procs if p.kind in ("LIFReset", "WideSpike")}
    assert len(spikes) == 139 and spikes <= held
    assert sum(p.kind == "WideSpike" for p in procs) == 12  # after the 4 global pools and the 8 attentions


def test_compile_counts_exactly_the_network(tiny_128, tiny_plan, tmp_path):
    build = L.compile(tiny_128, board="hala-point")
    neurons = sum(p.neurons for p in tiny_plan.procs.values() if p.kind in ("LIFReset", "GradedVec"))
    assert build.resources.neurons == neurons
    synops = sum(p.synops for p in tiny_plan.procs.values() if p.kind in ("Conv", "Sparse", "DelaySparse"))
    assert build.resources.synapses == synops
    table = build.table()
    off = [p for p in tiny_plan.procs.values() if p.placement != "neuro-core"]
    for p in off:  # the placement table lists every process off the neuro-cores with its work
        assert any(line.startswith(p.name[:61]) and p.placement in line for line in table.splitlines())
    assert "neuro-core share of synaptic operations 99.78 %" in table
    out = build.save(tmp_path / "b")
    description = L.load_build(out).description
    assert description["process_count"] == len(tiny_plan.procs)
    assert {c["class"] for c in description["processes"]} >= {"lava.proc.conv.process.Conv",
                                                              "lava.proc.lif.process.LIFReset"}


def test_the_audit_catches_a_bias_out_of_range_and_a_lif_input_above_2_17(tiny_plan):
    import copy

    plan = copy.deepcopy(tiny_plan)
    lif = next(p for p in plan.procs.values() if isinstance(p, LIFResetSpec) and np.ndim(p.bias_mant) == 3)
    lif.bias_mant = lif.bias_mant.copy()
    lif.bias_mant.flat[0] = 5000  # Lava's CPU model would cast it into int16 without a word
    found = audit(plan, LOIHI2)
    assert [(e.layer, e.rule) for e in found] == [(lif.name, "bias_mant")]
    assert "5000" in str(found[0]) and "-4096..4095" in str(found[0])
    plan = copy.deepcopy(tiny_plan)
    into_lif = {x.src: x.dst for x in plan.links if isinstance(plan.procs[x.dst], LIFResetSpec)}
    conv = next(p for p in plan.procs.values() if isinstance(p, ConvSpec) and p.name in into_lif)
    conv.weight_exp += 7  # 128 times the input: beyond what the LIF neurons may read
    target = into_lif[conv.name]
    rules = {(e.layer, e.rule) for e in audit(plan, LOIHI2)}
    assert (target, "lif_input") in rules


def test_lava_equals_the_fast_simulator_on_every_node_type():
    from test_int_properties import every_node_type_graph

    graph, images = every_node_type_graph(0, batch=3)
    fast = L.prepare(graph).fast(images, keep=True)
    with lava_network(graph, capacity=3) as net:
        assert {p.kind for p in net.plan.procs.values()} >= {"Conv", "Sparse", "DelaySparse", "LIFReset",
                                                            "GradedVec", "Attention", "Gate", "SumPool"}
        run = net.run(images, keep=True)
    assert set(run.spike_counts) == set(fast.spike_counts)
    for k, counts in run.spike_counts.items():
        assert torch.equal(counts, fast.spike_counts[k]), k
    assert all(torch.equal(a, b) for a, b in zip(run.raw, fast.raw))
    order = [n for n in graph.nodes if n in run.values]
    assert len(order) >= 20
    for i in range(3):
        assert first_difference({k: v[i].numpy() for k, v in run.values.items()},
                                {k: v[i].numpy() for k, v in fast.values.items()}, order) is None
    assert sum(int(c.sum()) for c in run.spike_counts.values()) > 500


def test_lavas_own_multiprocess_runtime_gives_the_same_integers():
    from test_int_properties import every_node_type_graph

    graph, images = every_node_type_graph(1, batch=2)
    with lava_network(graph, capacity=2, runtime="processes") as net:
        run = net.run(images)
    fast = L.prepare(graph).fast(images)
    assert all(torch.equal(a, b) for a, b in zip(run.raw, fast.raw))
    assert all(torch.equal(run.spike_counts[k], fast.spike_counts[k]) for k in fast.spike_counts)


def test_a_weight_off_by_one_is_caught_and_named():
    from test_int_properties import every_node_type_graph

    graph, images = every_node_type_graph(2, batch=1)
    wrong = graph.copy()
    conv = next(n for n in wrong if isinstance(n.op, I.IntConv) and n.inputs == ["input"])
    k = conv.op.w_int.shape[-1] // 2
    conv.op.w_int[0, 0, k, k] += 1  # the centre tap, over (almost never zero) pixels
    with lava_network(wrong, capacity=1) as net:
        lava = net.run(images, keep=True).values
    fast = L.prepare(graph).fast(images, keep=True).values
    order = [n for n in graph.nodes if n in lava]
    found = first_difference({k: v[0].numpy() for k, v in lava.items()}, {k: v[0].numpy() for k, v in fast.items()},
                             order)
    assert found is not None
    # the first node the network holds after the altered convolution
    position = list(graph.nodes).index
    after = [n for n in order if position(n) > position(conv.name)]
    assert found[0] == after[0] == graph.consumers(conv.name)[0].name and found[1] > 0


def _lava_conv(weight, shape, groups, exp, data, bits, fast):
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from lensnet_deploy.hardware.lava.lean_models import FastConvModel

    src = Source(data=data)
    conv = Conv(weight=weight, weight_exp=exp, input_shape=shape, padding=(1, 1), stride=(1, 1), groups=groups,
                num_message_bits=bits)
    sink = Sink(shape=conv.a_out.shape, buffer=data.shape[-1])
    src.s_out.connect(conv.s_in)
    conv.a_out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={Conv: FastConvModel} if fast else {})
    sink.run(condition=RunSteps(num_steps=data.shape[-1]), run_cfg=cfg)
    try:
        return sink.data.get().astype(np.int64)
    finally:
        sink.stop()


@pytest.mark.parametrize("case", ["graded", "planes"])
def test_our_conv_model_equals_lavas_own_and_applies_weight_exp(case):
    """Random layers: equal to Lava's own fixed_pt Conv where that one is right (weight_exp 0);
    with weight_exp = −1 (our 2·W mantissas) equal to the exact integer convolution."""
    from lensnet_deploy import lava_compat

    lava_compat.install()
    rng = np.random.default_rng(7)
    X, Y, T = 6, 5, 4
    if case == "graded":
        C, O, groups, bits = 4, 6, 2, 8
        w = rng.integers(-127, 128, (O, 3, 3, C // groups))
        data = rng.integers(-40, 41, (X, Y, C, T))
    else:  # spike planes: D = 4 binary rows per channel, the kernel repeated along them and the outputs
        D, C, O, groups, bits = 4, 3, 2, 1, 0
        base = rng.integers(-127, 128, (O, 3, 3, C))
        w = np.repeat(np.repeat(base, D, axis=3), D, axis=0)
        data = (rng.random((X, Y, C * D, T)) < 0.4).astype(np.int64)
    lava, ours = _lava_conv(w, (X, Y, data.shape[2]), groups, 0, data, bits, False), \
        _lava_conv(w, (X, Y, data.shape[2]), groups, 0, data, bits, True)
    assert np.array_equal(lava, ours) and np.abs(lava).max() > 100
    even = 2 * w
    shifted = _lava_conv(even, (X, Y, data.shape[2]), groups, -1, data, bits, True)
    assert np.array_equal(shifted, lava)  # (Σ 2W·x) >> 1 = Σ W·x: the weight_exp Lava's own model ignores


def test_our_delay_sparse_model_equals_lavas_own():
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.sparse.process import DelaySparse
    from scipy.sparse import csr_matrix

    from lensnet_deploy.hardware.lava.lean_models import FastDelaySparseModel

    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (5, 7)) * 2
    w[rng.random(w.shape) < 0.4] = 0
    data = rng.integers(-1000, 1000, (7, 12))

    def run(fast: bool) -> np.ndarray:
        weights = csr_matrix(w)
        delays = weights.copy()
        delays.data[:] = 3
        src = Source(data=data)
        syn = DelaySparse(weights=weights, delays=delays.astype(int), weight_exp=-1, num_message_bits=16)
        sink = Sink(shape=(5,), buffer=12)
        src.s_out.connect(syn.s_in)
        syn.a_out.connect(sink.a_in)
        cfg = Loihi2SimCfg(select_tag="fixed_pt",
                           exception_proc_model_map={DelaySparse: FastDelaySparseModel} if fast else {})
        sink.run(condition=RunSteps(num_steps=12), run_cfg=cfg)
        try:
            return sink.data.get().astype(np.int64)
        finally:
            sink.stop()

    lava, ours = run(False), run(True)
    assert np.array_equal(lava, ours)
    assert np.array_equal(ours[:, 4], (w @ data[:, 0]) >> 1)  # step 1's input arrives 1 + 3 steps later


def _through(proc, data: np.ndarray, model=None) -> np.ndarray:
    """``data`` (neurons × steps) from a ring buffer through ``proc`` into a sink, on Lava's CPU
    simulator with Lava's own fixed_pt model of ``proc`` or ``model``."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    src = Source(data=data)
    out = proc.s_out if hasattr(proc, "s_out") else proc.a_out
    sink = Sink(shape=out.shape, buffer=data.shape[-1])
    src.s_out.connect(proc.a_in if hasattr(proc, "a_in") else proc.s_in)
    out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={type(proc): model} if model else {})
    sink.run(condition=RunSteps(num_steps=data.shape[-1]), run_cfg=cfg)
    try:
        return sink.data.get().astype(np.int64)
    finally:
        sink.stop()


def _with_repeats(data: np.ndarray) -> np.ndarray:
    """Each step's input twice, then an idle stretch: the lean models resend on an unchanged input."""
    steps = np.repeat(data, 2, axis=1)
    return np.concatenate([steps, np.zeros_like(data[:, :3]), steps[:, :2]], axis=1)


@pytest.mark.parametrize("case", ["binary", "graded"])
def test_our_lean_sparse_model_equals_lavas_own(case):
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import csr_matrix

    from lensnet_deploy.hardware.lava.lean_models import LeanSparseModel
    from lensnet_deploy.hardware.loihi.plan import narrow

    rng = np.random.default_rng(11)
    w = rng.integers(-128, 128, (9, 14)) * 2
    w[rng.random(w.shape) < 0.5] = 0
    if case == "binary":
        bits, exp, data = 0, 3, (rng.random((14, 6)) < 0.5).astype(np.int64)
    else:
        bits, exp, data = 16, -4, rng.integers(-3000, 3000, (14, 6))
    data = _with_repeats(data)

    def run(model):
        matrix = csr_matrix(w)
        return _through(Sparse(weights=matrix.astype(narrow(matrix.data).dtype), weight_exp=exp,
                               num_message_bits=bits), data, model)

    lava, ours = run(None), run(LeanSparseModel)
    assert np.array_equal(lava, ours) and np.abs(ours).max() > 1000
    assert np.array_equal(ours[:, 1], shift_exact(w @ data[:, 0], exp))  # one step later, shifted


def shift_exact(x: np.ndarray, exp: int) -> np.ndarray:
    return x << exp if exp > 0 else x >> -exp


def test_our_lean_lif_reset_model_equals_lavas_own():
    """Random inputs around the thresholds (a binary plane per row), biases per row broadcast over the
    pixels (the plan's compact views) at bias_exp 6 and 7, inputs up to the 24-bit wrap."""
    from lava.proc.lif.process import LIFReset

    from lensnet_deploy.hardware.lava.lean_models import LeanLIFResetModel

    rng = np.random.default_rng(5)
    shape, vth = (4, 3, 2), 900
    mant = np.broadcast_to(rng.integers(-4096, 4096, (4, 1, 1)), shape)
    exp = np.broadcast_to(np.array([6, 7, 6, 7]).reshape(-1, 1, 1), shape)
    data = rng.integers(-(2**17), 2**17, (int(np.prod(shape)), 5))
    data[:4, 0] = 2**17 + 5  # << 6 passes 2^23: the current wraps
    data = _with_repeats(data)
    flat = data.reshape(*shape, -1)

    def run(model):
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source

        lif = LIFReset(shape=shape, vth=vth, bias_mant=mant, bias_exp=exp, du=0, dv=0, reset_interval=1,
                       reset_offset=0)
        src, sink = Source(data=flat), Sink(shape=shape, buffer=flat.shape[-1])
        src.s_out.connect(lif.a_in)
        lif.s_out.connect(sink.a_in)
        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={LIFReset: model} if model else {})
        sink.run(condition=RunSteps(num_steps=flat.shape[-1]), run_cfg=cfg)
        try:
            return sink.data.get().astype(np.int64)
        finally:
            sink.stop()

    lava, ours = run(None), run(LeanLIFResetModel)
    assert np.array_equal(lava, ours)
    assert 0.2 < ours.mean() < 0.8  # both kinds of answer, often


def test_our_lean_graded_vec_model_equals_lavas_own():
    from lava.proc.graded.process import GradedVec

    from lensnet_deploy.hardware.lava.lean_models import LeanGradedVecModel

    rng = np.random.default_rng(9)
    data = _with_repeats(rng.integers(-(2**23) + 1, 2**23, (7, 5)))
    for vth in (0, 2**20):
        lava = _through(GradedVec(shape=(7,), vth=vth), data)
        ours = _through(GradedVec(shape=(7,), vth=vth), data, LeanGradedVecModel)
        assert np.array_equal(lava, ours) and (ours == 0).any() and (ours != 0).any()


def test_messages_are_as_wide_as_their_static_bound_and_never_wrap():
    """The plan's static bounds choose each port's integer type (binary spikes: int8); a value
    outside it is an error, not a silent wrap."""
    from types import SimpleNamespace

    from lensnet_deploy.hardware.lava import lean_models as LM

    assert [LM.width(b) for b in (0, 1, 127, 128, 32767, 32768, 2**23)] == [
        np.int32, np.int8, np.int8, np.int16, np.int16, np.int32, np.int32]
    sparse = LM.narrow_model(LM.LeanSparseModel, 300)
    assert sparse.a_out.d_type == np.int16 and sparse is LM.narrow_model(LM.LeanSparseModel, 20000)
    lif = LM.narrow_model(LM.LeanLIFResetModel, 100)
    assert lif.a_in.d_type == np.int8 and lif.s_out.d_type == np.int8
    graded = LM.narrow_model(LM.LeanGradedVecModel, 5000)
    assert graded.a_in.d_type == graded.s_out.d_type == np.int16
    port = SimpleNamespace(_d_type=np.int16)
    assert LM.fitted(np.array([-32768, 32767]), port).dtype == np.int16
    with pytest.raises(OverflowError, match="outside int16"):
        LM.fitted(np.array([0, 32768]), port)


def test_the_plan_keeps_biases_as_views_and_weights_in_two_bytes(tiny_plan):
    lifs = [p for p in tiny_plan.procs.values() if isinstance(p, LIFResetSpec) and np.ndim(p.bias_mant)]
    assert lifs and all(0 in p.bias_mant.strides for p in lifs if p.neurons > 64)
    weights = [getattr(p, "weights", getattr(p, "weight", None)) for p in tiny_plan.procs.values()
               if isinstance(p, SynapseSpec)]
    assert {w.dtype for w in weights} == {np.dtype(np.int16)}


def test_membranes_wider_than_a_lif_input_reach_it_pre_shifted_bit_exact(micro_model):
    """Quantize keeps 24-bit membranes; where one exceeds a LIF input (2^17) a GradedVec relay
    holds it whole and an identity synapse of weight 2 at weight_exp −k−1 delivers m >> k to LIF
    neurons whose thresholds sit on the 2^k grid: every spike count equals the fast simulator's."""
    x = load_images(list_images(SAMPLES / "Image")[:2], (32, 32))
    q = L.prepare(L.quantize(L.export_nir(micro_model, (32, 32)), x))
    plan = build_plan(q.ir, LOIHI2)
    relays = [p for p in plan.procs.values() if p.kind == "GradedVec" and p.name.endswith("/membrane")]
    shifted = [p for p in plan.procs.values() if "/membrane->" in p.name]
    # every relay feeds its layer's LIF processes (one or more parts) through a pre-shifting synapse
    assert {p.name.split("/membrane->")[0] for p in shifted} == {p.name[: -len("/membrane")] for p in relays}
    assert len(shifted) >= len(relays) > 10
    # most hold what no LIF input could (the others: thresholds finer than one process spreads)
    assert sum(p.in_bound > LOIHI2.lif_input_max for p in relays) > len(relays) // 2
    assert all(p.in_bound <= LOIHI2.message_max for p in relays)
    assert {p.weight_exp for p in shifted} <= set(range(LOIHI2.weight_exp_min, -1))
    assert audit(plan, LOIHI2) == []
    assert_lava_equals_fast(q, x)


def test_simulate_through_the_installed_cli_with_lava_equals_fast(tmp_path, micro_model):
    """`lensnet-deploy simulate … --backend lava` as a user types it (Lava in the CLI's own process; the
    cluster test covers Lava in Ray workers): 2 images, maps identical to fast."""
    exe = shutil.which("lensnet-deploy") or str(Path(sys.executable).with_name("lensnet-deploy"))
    images = tmp_path / "images"
    images.mkdir()
    for src in sorted((SAMPLES / "Image").iterdir())[:2]:
        (images / src.name).write_bytes(src.read_bytes())
    ckpt = L.save_lensnet(micro_model, tmp_path / "micro.safetensors", "lensnet-micro")

    def cli(*args) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=900)

    assert cli("export", ckpt, "--input-size", 32, 32, "-o", tmp_path / "m.nir").returncode == 0
    assert cli("quantize", tmp_path / "m.nir", "--calib", images, "-o", tmp_path / "m.q.nir").returncode == 0
    fast = cli("simulate", tmp_path / "m.q.nir", "--images", images, "--out", tmp_path / "fast")
    lava = cli("simulate", tmp_path / "m.q.nir", "--images", images, "--out", tmp_path / "lava", "--backend", "lava")
    assert fast.returncode == 0 and lava.returncode == 0, lava.stderr[-2000:]
    assert "context has already been set" not in lava.stderr
    maps = sorted(p.name for p in (tmp_path / "fast").glob("*.png"))
    assert len(maps) == 2
    for name in maps:
        assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "lava" / name).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize(("size", "count"), [(64, 4), (128, 2)])
def test_lensnet_tiny_on_real_images_through_the_lava_network(size, count):
    model = L.load_lensnet("lensnet-tiny")
    folder = DATASETS / "ORSSD" / "test-images"
    x = load_images(list_images(folder if folder.exists() else SAMPLES / "Image")[:count], (size, size))
    assert_lava_equals_fast(L.prepare(L.quantize(L.export_nir(model, (size, size)), x)), x)
