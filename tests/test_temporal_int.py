"""Temporal NIR graphs as integer models (hardware/integer/temporal.py): the fast simulator equals the
int64 reference on every graph shape, every spike and voltage at every step; the reference is Lava's
CUBA arithmetic (tests/test_cuba.py); the integers follow the float reference closely; what Loihi
cannot hold is a design-rule error naming the node."""

import nir
import numpy as np
import pytest
from nir_graphs import GRAPHS, spike_inputs

from lensnet_deploy.errors import DesignRuleError
from lensnet_deploy.export.temporal import run_temporal
from lensnet_deploy.hardware.integer.cuba import run_cuba_layer
from lensnet_deploy.hardware.integer.temporal import ONE, quantize_temporal, run_fast, run_reference

DT = 1e-3
HOLDS = sorted(set(GRAPHS) - {"subtractive"})


def _model(name: str, seed: int = 1, batch: int = 6, steps: int = 50):
    rng = np.random.default_rng(seed)
    graph = GRAPHS[name](rng)
    x = spike_inputs(graph, rng, batch=batch, steps=steps, amplitude=2.0)
    return graph, x, quantize_temporal(graph, x, DT)


@pytest.mark.parametrize("name", HOLDS)
def test_fast_equals_reference_and_follows_the_float_model(name):
    graph, x, model = _model(name)
    ref, fast = run_reference(model, x), run_fast(model, x)
    assert ref.values.keys() == fast.values.keys() == model.layers.keys()
    for k in ref.values:
        assert np.array_equal(ref.values[k], fast.values[k]), k
    flt = run_temporal(graph, x, DT, record_voltages=True)
    fired = 0
    for k, layer in model.layers.items():
        if layer.spiking:
            agree = float(np.mean(ref.values[k] == flt.spikes[k].numpy()))
            assert agree >= 0.97, (k, agree)
            fired += int(ref.values[k].sum())
        else:  # a readout voltage: the integers times the layer's unit follow the float voltage
            v = flt.voltages[k].numpy()
            err = np.abs(ref.values[k] * layer.scale.reshape(layer.shape) - v).max()
            assert err <= 0.15 * np.abs(v).max(), (k, err)
    assert fired > 20


def test_one_layer_is_exactly_lavas_cuba_arithmetic():
    """The reference's single layer equals ``run_cuba_layer`` (held equal to Lava's LIF by test_cuba)."""
    rng = np.random.default_rng(1)
    graph = GRAPHS["lif_chain"](rng)
    graph.nodes["fc1"].bias[:] = 0  # (a bias would charge v during the chip step before the layer's reset)
    x = spike_inputs(graph, rng, batch=1, steps=50, amplitude=2.0)
    model = quantize_temporal(graph, x, DT, weight_bits=8)
    layer = model.layers["lif1"]
    (path,) = layer.paths
    ours = run_reference(model, x).values["lif1"][0]
    chip = np.concatenate([x[0], np.zeros((1, x.shape[2]))]).astype(np.int64)  # one more step for the latency
    cuba = run_cuba_layer(path.weights, path.weight_exp, layer.params(), chip)
    assert np.array_equal(ours, cuba["s"][layer.offset:])  # the chip's step t + 1 is the float step t
    assert ours.sum() > 10
    assert layer.offset == 1 and model.layers["lif2"].offset == 2 and model.latency == 2


def test_delays_become_synaptic_delays_and_a_bias_in_a_loop_starts_one_step_late():
    _, _, model = _model("delayed")
    delays = sorted(p.delay for p in model.layers["lif"].paths)
    assert delays == [0, 0, 3, 3]  # each path as two synapses (high and low byte of 16-bit weights)
    _, _, model = _model("cuba_recurrent")
    bias_paths = [p for p in model.layers["cuba"].paths if p.source == ONE]
    # it arrives at float step 1, as the back edge does
    assert [p.delay for p in bias_paths] == [model.layers["cuba"].offset] * 2


def _graph_with(change) -> nir.NIRGraph:
    graph = GRAPHS["lif_chain"](np.random.default_rng(7))
    change(graph)
    return graph


@pytest.mark.parametrize(("change", "rule"), [
    (lambda g: g.metadata.update(reset="subtract"), "'reset'"),
    (lambda g: setattr(g.nodes["lif1"], "v_reset", np.full(8, 0.1)), "'v_reset'"),
    (lambda g: g.nodes["lif2"].v_threshold.__setitem__(0, -0.1), "'v_threshold'"),
    (lambda g: (g.nodes.update(back=nir.Affine(weight=np.ones((8, 3)), bias=np.zeros(8))),
                g.edges.extend([("lif2", "back"), ("back", "lif1")])), "'loop_latency'"),
], ids=["subtractive", "v_reset", "negative-threshold", "loop-through-two-synapses"])
def test_what_loihi_cannot_hold_is_a_design_rule_error(change, rule):
    graph = _graph_with(change)
    x = spike_inputs(graph, np.random.default_rng(8), steps=5)
    with pytest.raises(DesignRuleError, match=rule):
        quantize_temporal(graph, x, DT)


def test_16_bit_weights_are_two_bytes_that_add_up():
    graph, x, model = _model("lif_chain")
    hi, lo = model.layers["lif2"].paths
    assert hi.weight_exp == lo.weight_exp + 8 and hi.source == lo.source == "lif1"
    assert -128 <= lo.weights.min() and lo.weights.max() <= 127 and np.abs(hi.weights).max() <= 127
    w16 = hi.weights * 256 + lo.weights
    assert np.abs(w16 * 2.0**lo.weight_exp - hi.float_weights).max() <= 2.0 ** (lo.weight_exp - 1)
    eight = quantize_temporal(graph, x, DT, weight_bits=8)
    assert len(eight.layers["lif2"].paths) == 1
