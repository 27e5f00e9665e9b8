"""The float reference of NIR graphs with time (export/temporal.py): every primitive's discretisation,
recurrence, delays and resets, equal to Norse's NIR import on the graphs Norse loads, and one clear
error for a malformed foreign graph."""

import logging

import nir
import numpy as np
import pytest
import torch
from nir_graphs import GRAPHS, if_conv, spike_inputs

from lensnet_deploy.errors import GraphError
from lensnet_deploy.export.temporal import is_temporal, run_temporal

DT = 1e-3


def _voltage(state):
    """The membrane voltage in a Norse neuron state (a state, or a tuple ending with the neuron's)."""
    if hasattr(state, "v"):  # Norse's states are named tuples with a v field
        return state.v
    if isinstance(state, tuple):
        return next((v for v in (_voltage(s) for s in reversed(state)) if v is not None), None)
    return None


def _norse(graph: nir.NIRGraph, x: np.ndarray, dt: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Norse's outputs per step and every neuron node's voltage per step."""
    from norse.torch.utils.import_nir import from_nir

    logging.disable(logging.WARNING)  # Norse warns that it ignores R (our graphs keep R = 1 where it matters)
    try:
        module = from_nir(graph, dt=dt)
    finally:
        logging.disable(logging.NOTSET)
    xs = torch.from_numpy(x).float()
    state, out, volts = None, [], {}
    neurons = [k for k, n in graph.nodes.items() if isinstance(n, nir.LIF | nir.CubaLIF | nir.IF)]
    with torch.no_grad():
        for t in range(xs.shape[1]):
            y, state = module(xs[:, t], state)
            out.append(y)
            for k in neurons:
                volts.setdefault(k, []).append(_voltage(state.state[k]).clone())
    return torch.stack(out, dim=1), {k: torch.stack(v, dim=1) for k, v in volts.items()}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_every_shape_runs_and_its_neurons_spike(name):
    rng = np.random.default_rng(1)
    graph = GRAPHS[name](rng)
    assert is_temporal(graph)
    x = spike_inputs(graph, rng, amplitude=2.0)
    run = run_temporal(graph, x, DT)
    (out,) = run.outputs.values()
    assert out.shape[:2] == (4, 40) and out.dtype == torch.float64
    assert run.spikes and all(s.shape[:2] == (4, 40) for s in run.spikes.values())
    assert sum(int(s.sum()) for s in run.spikes.values()) > 20  # realistic activity, not a silent network


# Norse 1.1.0 loads Affine, Linear, Conv2d, Flatten, SumPool2d, IF, LIF and CubaLIF (not LI, Delay, Conv1d);
# it starts a neuron at v_leak (we start at 0, as Loihi does), ignores v_reset and R, and flattens the batch
# with a NIR Flatten: of the eight shapes it runs lif_chain and cuba_recurrent as we do, and a CNN without
# Flatten (if_conv).
NORSE_LOADS = {"lif_chain": GRAPHS["lif_chain"], "cuba_recurrent": GRAPHS["cuba_recurrent"], "if_conv": if_conv}


@pytest.mark.parametrize("name", sorted(NORSE_LOADS))
def test_equal_to_norses_nir_import(name):
    rng = np.random.default_rng(2)
    graph = NORSE_LOADS[name](rng)
    x = spike_inputs(graph, rng, amplitude=2.0)
    run = run_temporal(graph, x, DT, record_voltages=True)
    ours = run.outputs["output"]
    norse, volts = _norse(graph, x, DT)
    assert ours.sum() > 0
    assert torch.equal(ours, norse.double()), f"{int((ours != norse).sum())} of {ours.numel()} spikes differ"
    for k, v in volts.items():  # voltages to float32 rounding (Norse runs float32, we float64)
        err = float((v.double() - run.voltages[k]).abs().max())
        assert err <= 1e-5 * max(1.0, float(run.voltages[k].abs().max())), (k, err)


def test_lif_steps_by_hand_euler_and_exact():
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1])}),
                            "lif": nir.LIF(tau=np.array([0.01]), r=np.array([2.0]), v_leak=np.array([0.1]),
                                           v_threshold=np.array([0.5]), v_reset=np.array([-0.2])),
                            "output": nir.Output(output_type={"output": np.array([1])})},
                     edges=[("input", "lif"), ("lif", "output")])
    x = np.full((1, 30, 1), 0.3)
    for method in ("euler", "exact"):
        run = run_temporal(g, x, DT, method=method, keep_states=True)
        v, spikes = 0.0, []
        k = DT / 0.01 if method == "euler" else 1 - np.exp(-DT / 0.01)
        for _ in range(30):
            v = v + k * (0.1 + 2.0 * 0.3 - v)
            spikes.append(float(v > 0.5))
            v = -0.2 if v > 0.5 else v
        assert run.outputs["output"][0, :, 0].tolist() == spikes, method
        assert run.states["lif"]["v"].item() == pytest.approx(v, abs=1e-12)
        assert sum(spikes) >= 2
    # subtractive reset keeps what passed the threshold
    sub = run_temporal(g, x, DT, reset="subtract", keep_states=True)
    assert sub.spikes["lif"].sum() >= run_temporal(g, x, DT).spikes["lif"].sum()


def test_cuba_reads_the_updated_current_and_if_integrates_dt_r_x():
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1])}),
                            "cuba": nir.CubaLI(tau_syn=np.array([0.004]), tau_mem=np.array([0.008]),
                                               r=np.array([1.5]), v_leak=np.array([0.0]), w_in=np.array([3.0])),
                            "output": nir.Output(output_type={"output": np.array([1])})},
                     edges=[("input", "cuba"), ("cuba", "output")])
    x = np.zeros((1, 5, 1))
    x[0, 0, 0] = 1.0
    out = run_temporal(g, x, DT).outputs["output"][0, :, 0].tolist()
    i = v = 0.0
    want = []
    for t in range(5):
        i = i + DT / 0.004 * (3.0 * x[0, t, 0] - i)
        v = v + DT / 0.008 * (1.5 * i - v)
        want.append(v)
    assert out == pytest.approx(want, abs=1e-15)
    integ = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1])}),
                                "i": nir.I(r=np.array([4.0])),
                                "output": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("input", "i"), ("i", "output")])
    assert run_temporal(integ, np.ones((1, 3, 1)), 0.5).outputs["output"][0, :, 0].tolist() == [2.0, 4.0, 6.0]


def test_delay_shifts_by_whole_steps_and_a_back_edge_reads_the_previous_step():
    rng = np.random.default_rng(3)
    g = GRAPHS["delayed"](rng)
    x = spike_inputs(g, rng)
    run = run_temporal(g, x, DT, keep_states=True)
    fc1 = torch.from_numpy(x) @ torch.from_numpy(g.nodes["fc1"].weight).T
    fifo = run.states["delay"]["fifo"]
    assert torch.allclose(fifo[3], fc1[:, -4]) and torch.allclose(fifo[0], fc1[:, -1])
    # a loop through a neuron: the recurrent Affine sees the layer's spikes one step late
    g = GRAPHS["cuba_recurrent"](rng)
    g.nodes["rec"].weight[:] = 0
    g.nodes["rec"].bias[:] = 0.3
    x = np.zeros((1, 6, 4))
    run = run_temporal(g, x, DT, keep_states=True)
    i = 0.0
    for t in range(6):  # from the second step on, the bias arrives through the back edge
        i = i + DT / 4e-3 * (2.0 * (0.3 if t > 0 else 0.0) - i)
    assert run.states["cuba"]["i"][0, 0].item() == pytest.approx(i, abs=1e-12)


def _bad(kind: str) -> nir.NIRGraph:
    rng = np.random.default_rng(4)
    g = GRAPHS["lif_chain"](rng)
    if kind == "nan-tau":
        g.nodes["lif1"].tau[0] = np.nan
    elif kind == "negative-tau":
        g.nodes["lif1"].tau[0] = -1e-3
    elif kind == "shape":
        g.nodes["fc2"].weight = rng.normal(0, 1, (3, 5))
    elif kind == "missing":
        g.nodes["lif1"].v_threshold = None
    elif kind == "loop":
        g.nodes["fc3"] = nir.Affine(weight=np.eye(3), bias=np.zeros(3))
        g.edges += [("fc2", "fc3"), ("fc3", "fc2")]
    elif kind == "delay":
        g.nodes["delay"] = nir.Delay(delay=np.full(3, 1.5e-3))
        g.edges = [e for e in g.edges if e != ("fc2", "lif2")] + [("fc2", "delay"), ("delay", "lif2")]
    elif kind == "dangling":
        g.edges.append(("lif2", "nowhere"))
    return g


@pytest.mark.parametrize(("kind", "says"), [
    ("nan-tau", "lif1: parameter tau is not finite"), ("negative-tau", "lif1: tau must be > 0"),
    ("shape", "fc2: weight takes 5 inputs, gets 8"), ("missing", "lif1: parameter v_threshold is missing"),
    ("loop", "algebraic loop"), ("delay", "not a whole number of steps"), ("dangling", "no node nowhere")])
def test_a_malformed_graph_is_one_line_naming_the_node(kind, says):
    g = _bad(kind)
    x = spike_inputs(GRAPHS["lif_chain"](np.random.default_rng(4)), np.random.default_rng(5), steps=5)
    with pytest.raises(GraphError, match=says) as info:
        run_temporal(g, x, DT)
    assert "\n" not in str(info.value)


def test_inputs_dt_and_method_are_checked():
    g = GRAPHS["lif_chain"](np.random.default_rng(6))
    with pytest.raises(GraphError, match="expected B×T×6, got 2×5×7"):
        run_temporal(g, np.zeros((2, 5, 7)), DT)
    with pytest.raises(GraphError, match="dt must be a positive number"):
        run_temporal(g, np.zeros((2, 5, 6)), 0.0)
    with pytest.raises(GraphError, match="unknown method 'rk4'"):
        run_temporal(g, np.zeros((2, 5, 6)), DT, method="rk4")
    with pytest.raises(GraphError, match="not finite"):
        run_temporal(g, np.full((2, 5, 6), np.nan), DT)


def _snntorch(graph: nir.NIRGraph, x: np.ndarray) -> torch.Tensor:
    import contextlib
    import copy
    import io

    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its threshold rescaling
        module = import_from_nir(copy.deepcopy(graph))  # it rewrites recurrent subgraphs in place
    xs = torch.from_numpy(x).float()
    out = []
    with torch.no_grad():
        for t in range(xs.shape[1]):
            y = module(xs[:, t])
            out.append(y[0] if isinstance(y, tuple) else y)
    return torch.stack(out, dim=1)


def _snntorch_cuba(rng) -> nir.NIRGraph:
    """snnTorch's Synaptic neuron as NIR: dt fixed at 1e-4, R = τ_mem/dt, v_leak = 0."""
    g = GRAPHS["cuba_recurrent"](rng)
    g.edges = [e for e in g.edges if "rec" not in e]
    del g.nodes["rec"]
    c = g.nodes["cuba"]
    c.tau_syn, c.tau_mem = c.tau_syn / 10, c.tau_mem / 10
    c.r = c.tau_mem / 1e-4
    return g


def _snntorch_lif(rng) -> nir.NIRGraph:
    g = GRAPHS["lif_chain"](rng)
    for name in ("lif1", "lif2"):
        g.nodes[name].tau = g.nodes[name].tau / 10
    return g


# snnTorch 1.0.0 fixes dt = 1e-4, needs v_leak = 0 and one threshold per layer, and imports IF with β = 0.9
# (a leak): it runs lif_chain and a feed-forward CubaLIF as we do. Its RSynaptic import of cuba_recurrent
# differs from nirtorch's back-edge rule (418 of 960 spike values with a zero-bias recurrent weight and
# w_in·dt/τ_syn = 1); we follow nirtorch (and Norse), as docs/nir.md says.
@pytest.mark.parametrize("make", [_snntorch_lif, _snntorch_cuba], ids=["lif_chain", "cuba_feedforward"])
def test_equal_to_snntorchs_nir_import(make):
    rng = np.random.default_rng(2)
    graph = make(rng)
    x = spike_inputs(graph, rng, amplitude=2.0)
    ours = run_temporal(graph, x, 1e-4).outputs["output"]
    theirs = _snntorch(graph, x).double()
    assert ours.sum() > 0
    assert torch.equal(ours, theirs), f"{int((ours != theirs).sum())} of {ours.numel()} spikes differ"
