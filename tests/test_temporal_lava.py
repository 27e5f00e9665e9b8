"""Issues 28 and 29: a graph with time as a Loihi 2 network of Lava's own library processes (LIFReset
run by Lava's PyLifResetModelBitAcc, Sparse, DelaySparse, RingBuffer on Loihi2SimCfg fixed_pt), samples
streamed through one build: equal to the fast simulator and the int64 reference on every layer at
every step, every u and v equal to the simulators' run of the same stream, the audit clean."""

import numpy as np
import pytest
from nir_graphs import GRAPHS, mixed_tau, spike_inputs

from lensnet_deploy.errors import DesignRuleError
from lensnet_deploy.hardware.integer import temporal as T
from lensnet_deploy.hardware.lava.temporal import run_lava
from lensnet_deploy.hardware.loihi.audit import audit
from lensnet_deploy.hardware.loihi.plan import NEURO_CORE
from lensnet_deploy.hardware.loihi.temporal import temporal_plan
from lensnet_deploy.hardware.target.chips import load_target

CASES = {**{k: v for k, v in GRAPHS.items() if k != "subtractive"}, "mixed_tau": mixed_tau}


def _model(name: str, batch: int = 4, steps: int = 30):
    rng = np.random.default_rng(1)
    graph = CASES[name](rng)
    x = spike_inputs(graph, rng, batch=batch, steps=steps, amplitude=2.0)
    return T.quantize_temporal(graph, x, 1e-3), x


@pytest.mark.parametrize("lava_models", [False, True], ids=["lean-synapses", "lava-own-synapses"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_lava_stream_equals_fast_simulator_every_layer_every_step(name, lava_models):
    model, x = _model(name)
    period = T.stream_period(model, x)
    plan = temporal_plan(model, x.shape[1], period, bits=2)
    assert audit(plan, load_target("loihi2")) == []
    core = [p for p in plan.procs.values() if p.placement == NEURO_CORE]
    assert core and all(p.lava_class.startswith("lava.proc.") for p in plan.procs.values())
    lava = run_lava(model, x, period=period, states=True, lava_models=lava_models)
    alone, ref = T.run_fast(model, x), T.run_reference(model, x)
    stream_fast, stream_ref = T.run_fast(model, x, period=period), T.run_reference(model, x, period=period)
    for layer in model.layers:
        assert lava.values[layer].shape[:2] == (4, 30)
        assert np.array_equal(lava.values[layer], alone.values[layer]), layer
        assert np.array_equal(ref.values[layer], alone.values[layer]), layer
        for var in ("u", "v"):
            assert np.array_equal(lava.states[layer][var], stream_fast.states[layer][var]), (layer, var)
            assert np.array_equal(stream_ref.states[layer][var], stream_fast.states[layer][var]), (layer, var)
    for out in model.outputs:
        assert np.array_equal(lava.outputs[out], alone.outputs[out])
    assert sum(int(alone.values[k].sum()) for k, l in model.layers.items() if l.spiking) > 10


def test_mixed_time_constants_split_into_one_process_per_decay():
    model, x = _model("mixed_tau")
    plan = temporal_plan(model, x.shape[1])
    assert [p for p, _ in plan.groups["lif"]] == ["lif#0", "lif#1"]
    assert sorted(plan.procs[p].dv for p in ("lif#0", "lif#1")) == [341, 1024]
    assert sorted(len(idx) for _, idx in plan.groups["lif"]) == [4, 4]


def test_recurrence_needs_a_gap_and_the_period_is_checked():
    model, x = _model("cuba_recurrent")
    assert T.lookback(model) == 1
    period = T.stream_period(model, x)
    assert period > x.shape[1]
    short = T.run_fast(model, x, period=x.shape[1] + 1).values["cuba"]
    assert not np.array_equal(short, T.run_fast(model, x).values["cuba"])  # a 1-step gap leaks spikes
    with pytest.raises(DesignRuleError, match="stream_gap"):
        T.stream_period(model, x, longest=1)


def test_audit_catches_a_decay_beyond_12_bits_and_a_weight_exponent_out_of_range():
    model, x = _model("lif_chain")  # a foreign graph's integers, then edited past the chip's formats
    model.layers["lif1"].du = np.full(model.layers["lif1"].size, 5000)
    model.layers["lif2"].dv = np.full(model.layers["lif2"].size, 4096)
    model.layers["lif2"].paths[0].weight_exp = 12
    found = {(e.layer, e.rule): e for e in audit(temporal_plan(model, x.shape[1]), load_target("loihi2"))}
    assert {("lif1", "du"), ("lif2", "dv"), ("lif2<lif1:0", "weight_exp")} <= set(found)
    assert set(found) - {("lif1", "du"), ("lif2", "dv"), ("lif2<lif1:0", "weight_exp")} == {("lif2", "lif_input")}
    assert "5000" in str(found["lif1", "du"]) and "0..4095" in str(found["lif1", "du"])
    assert "-8..7" in str(found["lif2<lif1:0", "weight_exp"])


def test_build_folder_round_trip_runs_the_saved_network(tmp_path, monkeypatch):
    from lensnet_deploy.hardware.build import compile_temporal, load_build
    from lensnet_deploy.hardware.lava import temporal as LT
    from lensnet_deploy.hardware.model import TemporalModel

    model, x = _model("delayed")
    build = compile_temporal(TemporalModel(model), board="auto", inputs=x)
    assert build.board == "oheo-gulch" and build.placement.chips == 1
    assert build.energy.synaptic_ops > 0 and build.energy.neuron_updates == 3 * 30
    build.save(tmp_path)
    back = load_build(tmp_path)
    monkeypatch.setattr(LT, "temporal_plan", lambda *a, **k: pytest.fail("planned again"))
    lava = run_lava(back.model.int, x, plan=back.plan)
    assert np.array_equal(lava.values["lif"], T.run_fast(model, x).values["lif"])


@pytest.mark.slow
def test_a_larger_spiking_cnn_streams_exactly_through_lava():
    """A 3,072-neuron spiking CNN (the benchmark's shape at 16×16), 3 samples of 40 steps."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from temporal_benchmark import DT, cnn

    rng = np.random.default_rng(0)
    graph = cnn(rng, 16)
    x = (rng.random((3, 40, 2, 16, 16)) < 0.2).astype(np.float64) * 2
    model = T.quantize_temporal(graph, x, DT)
    assert sum(layer.size for layer in model.layers.values()) == 3072
    lava, fast = run_lava(model, x), T.run_fast(model, x)
    for layer in model.layers:
        assert np.array_equal(lava.values[layer], fast.values[layer]), layer
    assert fast.values["if2"].sum() > 100
