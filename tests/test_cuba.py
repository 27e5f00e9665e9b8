"""Integer semantics v4, neurons with state: our int64 CUBA LIF (hardware/integer/cuba.py) equals
Lava 0.10's own bit-accurate LIF fed by its Dense and Sparse synapses (Loihi2SimCfg fixed_pt), every
u, v and spike at every step, including the current's 24-bit wrap and the voltage's saturation."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix

import lensnet_deploy  # noqa: F401  (makes Lava importable on Python 3.11)
from lensnet_deploy.hardware.integer.cuba import CubaParams, cuba_step, run_cuba_layer, trunc0_decay

CASES = {
    # name: (synapse, du, dv, vth, weight_exp, bias_exp, rate, weight scale)
    "dense-leaky": ("dense", 600, 300, 500, -1, 3, 0.3, 128),
    "sparse-slow-current": ("sparse", 40, 2000, 2000, 2, 6, 0.4, 128),
    "dense-wraps-and-saturates": ("dense", 0, 0, 131071, 7, 7, 0.9, 128),
}


def _lava_layer(kind, W, weight_exp, p: CubaParams, data):
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor
    from lava.proc.sparse.process import Sparse

    n, steps = W.shape[0], data.shape[1]
    src = RingBuffer(data=data)
    syn = Dense(weights=W, weight_exp=weight_exp, num_weight_bits=8) if kind == "dense" else \
        Sparse(weights=csr_matrix(W), weight_exp=weight_exp, num_weight_bits=8)
    lif = LIF(shape=(n,), du=p.du, dv=p.dv, vth=p.vth, bias_mant=np.asarray(p.bias_mant),
              bias_exp=np.broadcast_to(np.asarray(p.bias_exp), (n,)).copy())
    src.s_out.connect(syn.s_in)
    syn.a_out.connect(lif.a_in)
    monitors = {}
    for key, var in (("u", lif.u), ("v", lif.v), ("s", lif.s_out)):
        monitors[key] = Monitor()
        monitors[key].probe(var, steps)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return {k: np.asarray(m.get_data()[lif.name]["s_out" if k == "s" else k], np.int64).reshape(steps, n)
                for k, m in monitors.items()}
    finally:
        lif.stop()


@pytest.mark.parametrize("case", sorted(CASES))
def test_our_cuba_layer_equals_lavas_bit_accurate_lif(case):
    kind, du, dv, vth, weight_exp, bias_exp, rate, scale = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case))
    n_in, n, steps = 12, 9, 40
    W = rng.integers(-scale, scale, (n, n_in)) * 2  # even mantissas: mixed-sign 8-bit weights
    W[rng.random(W.shape) < 0.3] = 0
    data = (rng.random((n_in, steps)) < rate).astype(np.int32)
    p = CubaParams(du=du, dv=dv, vth=vth, bias_mant=rng.integers(-4096, 4096, n), bias_exp=bias_exp)
    ours = run_cuba_layer(W, weight_exp, p, data.T)
    lava = _lava_layer(kind, W, weight_exp, p, data)
    for key in ("u", "v", "s"):
        assert np.array_equal(ours[key], lava[key]), (key, np.argwhere(ours[key] != lava[key])[:3])
    assert 0 < ours["s"].sum() < ours["s"].size  # neurons that fire and neurons that do not
    if case == "dense-wraps-and-saturates":
        top = 2**23
        assert (np.abs(ours["u"]) > top // 2).any()  # the current reaches the wrap region
        assert (np.abs(ours["v"]) == top - 1).any()  # and the voltage saturates


def test_decays_round_toward_zero_and_du_0_still_decays():
    assert trunc0_decay(np.array([4097, -4097]), 4095).tolist() == [4095, -4095]  # not −4096 for −4097
    p = CubaParams(du=0, dv=4095, vth=10**5)
    u, v, s = cuba_step(np.array([1 << 20]), np.array([0]), np.array([0]), p)
    assert u.item() == (1 << 20) - (1 << 8)  # × 4095/4096: a current that never decays has no exact form
    assert v.item() == u.item() and not s.any()  # v = trunc0(0 · 1 / 4096) + u
