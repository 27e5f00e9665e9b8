"""Issue 28, acceptance 2: on every graph shape, the fast simulator, the int64 reference and Lava's own
bit-accurate processes (LIFReset, Sparse, DelaySparse on Loihi2SimCfg fixed_pt) are equal: every
spike, every current u and every voltage v at every step."""

import numpy as np
import pytest
from nir_graphs import GRAPHS, spike_inputs

from lensnet_deploy.hardware.integer.temporal import quantize_temporal, run_fast, run_reference
from lensnet_deploy.hardware.lava.temporal import run_lava


@pytest.mark.parametrize("name", sorted(set(GRAPHS) - {"subtractive"}))
def test_fast_reference_and_lava_agree_on_every_state(name):
    rng = np.random.default_rng(1)
    graph = GRAPHS[name](rng)
    x = spike_inputs(graph, rng, batch=2, steps=30, amplitude=2.0)
    model = quantize_temporal(graph, x, 1e-3)
    ref, fast, lava = run_reference(model, x), run_fast(model, x), run_lava(model, x)
    for layer in model.layers:
        assert np.array_equal(ref.values[layer], lava.values[layer]), layer
        assert np.array_equal(ref.values[layer], fast.values[layer]), layer
        for var in ("u", "v"):
            assert np.array_equal(ref.states[layer][var], lava.states[layer][var]), (layer, var)
            assert np.array_equal(ref.states[layer][var], fast.states[layer][var]), (layer, var)
    assert sum(int(ref.values[k].sum()) for k, l in model.layers.items() if l.spiking) > 10
    assert any(np.abs(ref.states[k]["u"]).max() > 0 for k in model.layers)
