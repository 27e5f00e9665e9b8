"""The float reference of NIR graphs with time (export/temporal.py): every primitive's discretisation,
recurrence, delays and resets, equal to Norse's and snnTorch's NIR imports (spikes, and voltages to
float32 rounding) on the graphs each loads, snnTorch's recurrent CubaLIF wiring pinned, and one clear
error for a malformed foreign graph."""

import copy
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


# --- snnTorch 1.0.0's import_from_nir ---------------------------------------------------------------
# It fixes dt = 1e-4, needs v_leak = 0 and one threshold per layer (after scaling), CubaLIF with
# R = τ_mem/dt, and imports IF only with R = 1 (as a leaky neuron, β = 0.9). Of the eight shapes it runs
# lif_chain, conv1d (nirtorch's own Conv1d) and a feed-forward CubaLIF as we do, and cuba_recurrent
# differently (below); it refuses if_cnn and if_conv (IF with R = 1/dt), li_readout (LI), delayed (Delay)
# and biases_everywhere (v_leak); subtractive loads but resets to zero whatever the graph's metadata says.
SNNTORCH_DT = 1e-4


def _at_snntorch_dt(graph: nir.NIRGraph) -> nir.NIRGraph:
    """A graph written for dt = 1e-3 with every τ divided by 10: the same dt/τ per step at snnTorch's
    dt = 1e-4, and CubaLIF with the R = τ_mem/dt that snnTorch's import requires."""
    for node in graph.nodes.values():
        for key in ("tau", "tau_mem", "tau_syn"):
            if isinstance(getattr(node, key, None), np.ndarray):
                setattr(node, key, getattr(node, key) / 10)
        if isinstance(node, nir.CubaLIF):
            node.r = node.tau_mem / SNNTORCH_DT
    return graph


def _snntorch_unit(node) -> np.ndarray:
    """What one unit of snnTorch's mem is in our v. Its import folds the input gain into the threshold:
    LIF as ``mem ← β·mem + x`` with β = 1 − dt/τ and threshold θ/(R·dt/τ), where our Euler step is
    ``v ← β·v + (R·dt/τ)·x``; CubaLIF as ``syn ← α·syn + x``, ``mem ← β·mem + syn``, threshold
    θ/(w_in·dt/τ_syn), where ours is ``i ← α·i + (w_in·dt/τ_syn)·x``, ``v ← β·v + (R·dt/τ_mem)·i`` with
    R·dt/τ_mem = 1. So ``v = scale·mem`` (and ``i = scale·syn``), one scale per layer."""
    if isinstance(node, nir.CubaLIF):
        return node.w_in * SNNTORCH_DT / node.tau_syn
    return node.r * SNNTORCH_DT / node.tau


def _snntorch_module(graph: nir.NIRGraph) -> torch.nn.Module:
    import contextlib
    import io

    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its threshold rescaling
        return import_from_nir(copy.deepcopy(graph))  # it rewrites recurrent subgraphs in place


def _snntorch(graph: nir.NIRGraph, x: np.ndarray, module: torch.nn.Module | None = None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """snnTorch's outputs per step and every neuron layer's membrane per step in our units (v, after
    the reset: its import sets reset_delay=False). Its neurons keep mem and syn themselves
    (init_hidden=True); nirtorch's state (a recurrent edge's previous output) is passed step to step."""
    import snntorch as snn

    module = _snntorch_module(graph) if module is None else module
    neurons = {name.split(".")[-1]: m for name, m in module.named_modules() if isinstance(m, snn.Leaky | snn.Synaptic)}
    scale = {k: torch.from_numpy(np.asarray(_snntorch_unit(graph.nodes[k]), dtype=np.float64)) for k in neurons}
    xs = torch.from_numpy(x).float()
    state, out, volts = None, [], {}
    with torch.no_grad():
        for t in range(xs.shape[1]):
            y, state = module(xs[:, t], state)
            out.append(y)
            for k, m in neurons.items():
                volts.setdefault(k, []).append(m.mem.double() * scale[k])
    return torch.stack(out, dim=1).double(), {k: torch.stack(v, dim=1) for k, v in volts.items()}


def _assert_equal_runs(ours, theirs: torch.Tensor, volts: dict[str, torch.Tensor]) -> None:
    """Identical output spikes; every layer's voltage at every step to float32 rounding."""
    out = ours.outputs["output"]
    assert out.sum() > 0
    assert torch.equal(out, theirs), f"{int((out != theirs).sum())} of {out.numel()} spikes differ"
    assert volts.keys() == ours.voltages.keys()
    for k, v in volts.items():
        err = float((v - ours.voltages[k]).abs().max())
        assert err <= 1e-5 * max(1.0, float(ours.voltages[k].abs().max())), (k, err)


def _snntorch_cuba(rng) -> nir.NIRGraph:
    """A feed-forward CubaLIF layer: cuba_recurrent without its recurrent Affine."""
    g = GRAPHS["cuba_recurrent"](rng)
    g.edges = [e for e in g.edges if "rec" not in e]
    del g.nodes["rec"]
    return g


SNNTORCH_RUNS = {"lif_chain": GRAPHS["lif_chain"], "conv1d": GRAPHS["conv1d"], "cuba_feedforward": _snntorch_cuba}


@pytest.mark.parametrize("name", sorted(SNNTORCH_RUNS))
def test_equal_to_snntorchs_nir_import(name):
    rng = np.random.default_rng(2)
    graph = _at_snntorch_dt(SNNTORCH_RUNS[name](rng))
    x = spike_inputs(graph, rng, amplitude=2.0)
    ours = run_temporal(graph, x, SNNTORCH_DT, record_voltages=True)
    theirs, volts = _snntorch(graph, x)
    _assert_equal_runs(ours, theirs, volts)


@pytest.mark.parametrize(("name", "says"), [
    ("if_cnn", "r != 1 not supported"), ("if_conv", "r != 1 not supported"), ("li_readout", "Unknown node type"),
    ("delayed", "Unknown node type"), ("biases_everywhere", "v_leak not supported")])
def test_what_snntorchs_nir_import_refuses(name, says):
    graph = _at_snntorch_dt({**GRAPHS, "if_conv": if_conv}[name](np.random.default_rng(2)))
    with pytest.raises((AssertionError, ValueError), match=says):
        _snntorch_module(graph)


def _as_snntorch_wires_it(graph: nir.NIRGraph) -> nir.NIRGraph:
    """cuba_recurrent as snnTorch 1.0.0's import runs it: the layer's input also goes through W_rec
    (with its bias, from the first step on), and the spikes come back through W_rec a step late."""
    g = copy.deepcopy(graph)
    rec = g.nodes["rec"]
    g.nodes["rec_in"] = nir.Affine(weight=rec.weight.copy(), bias=rec.bias.copy())
    g.nodes["rec"] = nir.Linear(weight=rec.weight.copy())
    g.edges = [("input", "fc"), ("fc", "rec_in"), ("rec_in", "cuba"), ("cuba", "rec"), ("rec", "cuba"),
               ("cuba", "output")]
    return g


# snnTorch 1.0.0 never builds its RSynaptic for a recurrent CubaLIF: `_create_rnn_subgraph` wraps cuba and
# rec into a nested NIRGraph whose Input feeds rec (edge `cuba.input -> rec`), not cuba, and nirtorch 2.6's
# nir_to_torch recurses into that subgraph with the node map (which has no entry for a graph), so a plain
# Synaptic runs behind it: the layer's current input is W_rec·(fc(x_t) + s_(t−1)) + b_rec, where NIR's
# graph (and nirtorch's back-edge rule, Norse, we) gives fc(x_t) + W_rec·s_(t−1) + b_rec (the bias from the
# second step on, the back edge's previous-step value). (Its RSynaptic, if it were reached, fails on its
# first step with reset_delay=False: `spk / …` on spk=None.) Equal on the graph wired its way; on the graph
# as written it differs from the first step on (193 of 960 spike values here); nirtorch running the graph
# as written with snnTorch's own neurons (the import minus that rewrite) equals ours.
def test_snntorchs_recurrent_cubalif_import_feeds_the_layer_input_through_w_rec(monkeypatch):
    import snntorch as snn
    from snntorch import import_nir

    rng = np.random.default_rng(2)
    graph = _at_snntorch_dt(GRAPHS["cuba_recurrent"](rng))
    x = spike_inputs(graph, rng, amplitude=2.0)
    module = _snntorch_module(graph)
    kinds = {name: type(m) for name, m in module.named_modules()}
    assert kinds["cuba.cuba"] is snn.Synaptic and snn.RSynaptic not in kinds.values()
    theirs, volts = _snntorch(graph, x, module)
    _assert_equal_runs(run_temporal(_as_snntorch_wires_it(graph), x, SNNTORCH_DT, record_voltages=True),
                       theirs, volts)

    ours = run_temporal(graph, x, SNNTORCH_DT, record_voltages=True)
    differ = ours.outputs["output"] != theirs
    assert int(differ.sum()) == 193 and differ[:, 0].any()
    # the first step by hand: from rest, v = i = k·(input current), k = w_in·dt/τ_syn (R·dt/τ_mem = 1)
    c, fc, rec = graph.nodes["cuba"], graph.nodes["fc"], graph.nodes["rec"]
    k, theta = torch.from_numpy(_snntorch_unit(c)), torch.from_numpy(c.v_threshold)
    a = torch.from_numpy(x[:, 0]) @ torch.from_numpy(fc.weight).T + torch.from_numpy(fc.bias)
    for got, current in ((ours.voltages["cuba"][:, 0], a),
                         (volts["cuba"][:, 0], a @ torch.from_numpy(rec.weight).T + torch.from_numpy(rec.bias))):
        v = k * current
        assert torch.allclose(got, torch.where(v > theta, 0.0, v), atol=1e-6)

    monkeypatch.setattr(import_nir, "_replace_rnn_subgraph_with_nirgraph", lambda g: g)
    theirs, volts = _snntorch(graph, x)
    _assert_equal_runs(ours, theirs, volts)
