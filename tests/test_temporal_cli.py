"""NIR graphs with time through the command line: a file written with the ``nir`` package (the way
snnTorch, Norse and SpikingJelly write theirs) is quantized, simulated in float and in integers, and
diffed with the installed ``lensnet-deploy``; malformed foreign files are one line, exit 2, nothing
written."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
from nir_graphs import GRAPHS, spike_inputs

from lensnet_deploy.cli import run as cli_run

EXE = shutil.which("lensnet-deploy", path=str(Path(sys.executable).parent)) or "lensnet-deploy"


def installed(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("temporal")
    rng = np.random.default_rng(11)
    graph = GRAPHS["cuba_recurrent"](rng)
    nir.write(base / "g.nir", graph)  # the nir package's own writer, as the frameworks call it
    np.save(base / "x.npy", spike_inputs(graph, rng, batch=4, steps=30, amplitude=2.0))
    return base


def test_quantize_simulate_and_diff_through_the_installed_command(files):
    q = installed("quantize", "g.nir", "--calib", "x.npy", "--dt", "1e-3", "-o", "q.nir", cwd=files)
    assert q.returncode == 0, q.stderr
    assert "cuba" in q.stdout and "spikes equal" in q.stdout and (files / "q.nir").exists()
    f = installed("simulate", "g.nir", "--inputs", "x.npy", "--dt", "1e-3", "--backend", "float", "--out", "f.npz",
                  cwd=files)
    assert f.returncode == 0, f.stderr
    for backend in ("fast", "reference"):
        r = installed("simulate", "q.nir", "--inputs", "x.npy", "--backend", backend, "--out", f"{backend}.npz",
                      cwd=files)
        assert r.returncode == 0, r.stderr
    d = installed("diff", "q.nir", "--inputs", "x.npy", cwd=files)
    assert d.returncode == 0 and "equal on all 1 layers" in d.stdout, d.stdout + d.stderr
    fast, ref, flt = (np.load(files / f"{k}.npz") for k in ("fast", "reference", "f"))
    assert set(fast.files) == {"output", "latency"} and int(fast["latency"]) == 1
    assert np.array_equal(fast["output"], ref["output"])
    assert fast["output"].shape == flt["output"].shape == (4, 30, 6)
    assert np.mean(fast["output"] == flt["output"]) > 0.97 and flt["output"].sum() > 20


def _malformed(base: Path, case: str) -> tuple[list, str]:
    rng = np.random.default_rng(12)
    g = GRAPHS["lif_chain"](rng)
    x = base / "x6.npy"
    np.save(x, spike_inputs(g, rng, batch=2, steps=5))
    path = base / f"{case}.nir"
    if case == "nan-tau":
        g.nodes["lif1"].tau[0] = np.nan
        says = "lif1: parameter tau is not finite"
    elif case == "negative-tau":
        g.nodes["lif2"].tau[:] = -1e-3
        says = "lif2: tau must be > 0"
    elif case == "shape-mismatch":
        g.nodes["fc2"].weight = rng.normal(0, 1, (3, 5))
        says = "fc2: weight takes 5 inputs, gets 8"
    elif case == "algebraic-loop":
        g.nodes["fc3"] = nir.Affine(weight=np.ones((8, 3)), bias=np.zeros(8))
        g.edges += [("fc2", "fc3"), ("fc3", "fc2")]
        says = "algebraic loop"
    elif case == "fractional-delay":
        g.nodes["delay"] = nir.Delay(delay=np.full(3, 1.5e-3))
        g.edges = [e for e in g.edges if e != ("fc2", "lif2")] + [("fc2", "delay"), ("delay", "lif2")]
        says = "not a whole number of steps"
    elif case == "negative-threshold":
        g.nodes["lif2"].v_threshold[:] = -0.2
        says = "v_threshold"
    elif case == "nonzero-reset":
        g.nodes["lif1"].v_reset = np.full(8, 0.2)
        says = "v_reset"
    elif case == "subtractive-reset":
        g.metadata = {"reset": "subtract"}
        says = "Lava's LIF has no subtractive reset"
    elif case == "two-synapse-loop":
        g.nodes["back"] = nir.Affine(weight=np.ones((8, 3)), bias=np.zeros(8))
        g.edges += [("lif2", "back"), ("back", "lif1")]
        says = "loop_latency"
    elif case == "wrong-input-shape":
        np.save(x, np.zeros((2, 5, 7)))
        says = "expected B×T×6, got 2×5×7"
    elif case == "pickled-inputs":
        np.save(x, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        says = "not a .npy array"
    elif case == "nan-weight":
        g.nodes["fc1"].weight[0, 0] = np.nan
        says = "fc1: parameter weight is not finite"
    elif case == "no-dt":
        nir.write(path, g)
        return ["quantize", path, "--calib", x, "-o", base / "o.nir"], "give --dt"
    elif case == "dt-zero":
        nir.write(path, g)
        return ["simulate", path, "--inputs", x, "--dt", "0", "--backend", "float", "--out", base / "f.npz"], \
            "dt must be a positive number"
    elif case == "truncated":
        nir.write(path, g)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        return ["quantize", path, "--calib", x, "--dt", "1e-3", "-o", base / "o.nir"], "truncated file"
    elif case == "unknown-primitive":
        import h5py

        nir.write(path, g)
        with h5py.File(path, "r+") as f:
            del f["node/nodes/lif2/type"]
            f["node/nodes/lif2/type"] = "Izhikevich"
        return ["quantize", path, "--calib", x, "--dt", "1e-3", "-o", base / "o.nir"], \
            "node lif2 is of type 'Izhikevich', which is no NIR primitive"
    nir.write(path, g)
    return ["quantize", path, "--calib", x, "--dt", "1e-3", "-o", base / "o.nir"], says


MALFORMED = ["nan-tau", "negative-tau", "nan-weight", "shape-mismatch", "algebraic-loop", "fractional-delay",
             "wrong-input-shape", "pickled-inputs", "no-dt", "dt-zero", "truncated", "unknown-primitive"]
# well-formed graphs Loihi 2's CUBA neuron cannot hold: a design-rule error, exit 3 as for `compile`
UNHOLDABLE = ["negative-threshold", "nonzero-reset", "subtractive-reset", "two-synapse-loop"]


@pytest.mark.parametrize("case", MALFORMED + UNHOLDABLE)
def test_a_malformed_foreign_file_is_one_line_exit_2_and_nothing_written(case, tmp_path, capsys):
    args, says = _malformed(tmp_path, case)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = cli_run([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == (2 if case in MALFORMED else 3), err
    assert len(err) == 1 and says in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, inputs as they were


def test_a_file_norses_own_exporter_wrote(tmp_path, capsys):
    """Norse 1.1.0's ``to_nir`` writes its default LIFBox as τ = 1e-5 (τ_mem_inv 100 read as a
    time) and keeps its example's batch of 1 in the Input: nir 1.0.8's own type check refuses the
    file, we read it without that check and check every shape ourselves."""
    import norse.torch as norse
    import torch

    from lensnet_deploy.export.nir_io import write_nir

    torch.manual_seed(0)
    net = norse.SequentialState(torch.nn.Linear(6, 8), norse.LIFBoxCell(), torch.nn.Linear(8, 3), norse.LIFBoxCell())
    write_nir(norse.to_nir(net, torch.zeros(1, 6)), tmp_path / "norse.nir")
    np.save(tmp_path / "x.npy", (np.random.default_rng(0).random((4, 30, 6)) < 0.5).astype(np.float64) * 4)
    g, x = str(tmp_path / "norse.nir"), str(tmp_path / "x.npy")
    assert cli_run(["quantize", g, "--calib", x, "--dt", "1e-3", "-o", str(tmp_path / "bad.nir")]) == 3
    assert "design rule 'dv' broken: 409600" in capsys.readouterr().err  # τ = 1e-5 at dt = 1 ms: no Loihi decay
    q = str(tmp_path / "q.nir")
    assert cli_run(["quantize", g, "--calib", x, "--dt", "1e-6", "-o", q]) == 0
    assert cli_run(["simulate", g, "--inputs", x, "--dt", "1e-6", "--backend", "float", "--out",
                    str(tmp_path / "f.npz")]) == 0
    assert cli_run(["simulate", q, "--inputs", x, "--out", str(tmp_path / "i.npz")]) == 0
    assert cli_run(["diff", q, "--inputs", x]) == 0
    f, i = np.load(tmp_path / "f.npz"), np.load(tmp_path / "i.npz")
    assert f["output"].shape == i["output"].shape == (4, 30, 3)
    assert np.mean(f["output"] == i["output"]) > 0.97


def test_the_python_api_takes_graphs_with_time():
    import lensnet_deploy as L

    rng = np.random.default_rng(13)
    graph = GRAPHS["li_readout"](rng)
    x = spike_inputs(graph, rng, batch=2, steps=20, amplitude=2.0)
    flt = L.run_nir(graph, x, dt=1e-3)
    q = L.quantize(graph, x, dt=1e-3)
    fast, ref = L.simulate(q, x), L.simulate(q, x, backend="reference")
    assert np.array_equal(fast.outputs["output"], ref.outputs["output"])
    assert fast.outputs["output"].shape == tuple(flt.outputs["output"].shape) == (2, 20, 2)
    assert np.array_equal(fast.values["lif"], flt.spikes["lif"].numpy())
    with pytest.raises(L.LensNetDeployError, match="needs dt"):
        L.quantize(graph, x)


def test_a_norse_file_through_lava_compile_deploy_and_run(tmp_path):
    """Issue 29: a file Norse's own exporter wrote, through the installed command: the Loihi 2
    network on Lava equals the fast simulator, compile picks a board, deploy says what is missing
    in one line, and run writes its report."""
    import json

    import norse.torch as norse
    import torch

    from lensnet_deploy.export.nir_io import write_nir

    torch.manual_seed(2)
    net = norse.SequentialState(torch.nn.Linear(6, 8), norse.LIFBoxCell(), torch.nn.Linear(8, 3), norse.LIFBoxCell())
    with torch.no_grad():  # trained-looking weights that make both layers fire
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight *= 8
                m.bias.zero_()
    write_nir(norse.to_nir(net, torch.zeros(1, 6)), tmp_path / "norse.nir")
    np.save(tmp_path / "x.npy", (np.random.default_rng(0).random((4, 30, 6)) < 0.5).astype(np.float64) * 4)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 0]))
    assert installed("quantize", "norse.nir", "--calib", "x.npy", "--dt", "1e-6", "-o", "q.nir",
                     cwd=tmp_path).returncode == 0
    for backend in ("fast", "lava"):
        r = installed("simulate", "q.nir", "--inputs", "x.npy", "--backend", backend, "--out", f"{backend}.npz",
                      cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    fast, lava = np.load(tmp_path / "fast.npz"), np.load(tmp_path / "lava.npz")
    assert np.array_equal(fast["output"], lava["output"]) and int(lava["period"]) == 30
    assert fast["output"].sum() > 20
    d = installed("diff", "q.nir", "--inputs", "x.npy", "--backends", "fast", "lava", cwd=tmp_path)
    assert d.returncode == 0 and "equal on all 2 layers" in d.stdout, d.stdout + d.stderr
    c = installed("compile", "q.nir", "--inputs", "x.npy", "--board", "auto", "-o", "build", cwd=tmp_path)
    assert c.returncode == 0, c.stderr
    build = json.loads((tmp_path / "build" / "build.json").read_text())
    assert build["board"] == "oheo-gulch" and build["neurons"] == 11 and build["lava_library_processes"] >= 2
    dep = installed("deploy", "build", cwd=tmp_path)
    assert dep.returncode != 0 and len(dep.stderr.strip().splitlines()) == 1 and "lava-loihi" in dep.stderr
    run = installed("run", "norse.nir", "--inputs", "x.npy", "--dt", "1e-6", "--gt", "y.npy", "-o", "out",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["lava"]["equal"] and metrics["lava"]["samples"] == 4
    assert "float_accuracy" in metrics["outputs"]["output"]
    assert "equal to the fast simulator" in (tmp_path / "out" / "report.html").read_text()


def test_run_never_writes_over_its_inputs(tmp_path):
    """``run G.nir`` with the output folder holding the graph under an output's name: refused in one
    line, exit 2, the graph as it was."""
    rng = np.random.default_rng(14)
    graph = GRAPHS["lif_chain"](rng)
    nir.write(tmp_path / "model.q.nir", graph)
    np.save(tmp_path / "x.npy", spike_inputs(graph, rng, batch=2, steps=10))
    before = (tmp_path / "model.q.nir").read_bytes()
    r = installed("run", "model.q.nir", "--inputs", "x.npy", "--dt", "1e-3", "-o", ".", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "overwrite the input graph" in r.stderr
    assert (tmp_path / "model.q.nir").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.q.nir", "x.npy"]


@pytest.mark.parametrize("command", [["simulate", "q.nir", "--backend", "lava", "--out", "y.npz"],
                                     ["diff", "q.nir", "--backends", "fast", "lava"],
                                     ["compile", "q.nir", "-o", "build"]])
def test_inputs_of_the_wrong_shape_are_one_line_exit_2(files, command, tmp_path):
    """An integer graph with time given sequences of another input shape: one line naming the
    input and both shapes, exit 2, nothing written."""
    assert installed("quantize", "g.nir", "--calib", "x.npy", "--dt", "1e-3", "-o", "q.nir", cwd=files).returncode == 0
    np.save(files / "wrong.npy", np.zeros((2, 10, 5)))
    before = sorted(p.name for p in files.iterdir())
    r = installed(*command, "--inputs", "wrong.npy", cwd=files)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "input input: expected B×T×4, got 2×10×5" in r.stderr
    assert sorted(p.name for p in files.iterdir()) == before
