"""hardware/ along its seams: a typed plan lowered by one table, no string dispatch in the Loihi and
Lava halves, one static-bound pass, one plan per model shared by compile, Lava and a build folder,
and the target recorded in the graph read back."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_architecture import import_edges

import lensnet_deploy as L
from lensnet_deploy.export import ops as O
from lensnet_deploy.hardware.integer import ops as I
from lensnet_deploy.hardware.integer.bounds import static_bounds
from lensnet_deploy.hardware.integer.fast_sim import prepare
from lensnet_deploy.hardware.loihi import lower
from lensnet_deploy.hardware.loihi.plan import SPEC_TYPES, plan_files, read_plan

HARDWARE = Path(__file__).resolve().parents[1] / "hardware"
DOTTED_CLASS = re.compile(r"""["'](lava\.proc|lensnet_deploy)\.[\w.]*\.?[A-Z]\w*["']""")


def test_no_string_dispatch_in_the_loihi_and_lava_packages():
    found = []
    for path in sorted((HARDWARE / "loihi").rglob("*.py")) + sorted((HARDWARE / "lava").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"\bkind\s*(==|!=|in\b)", code) or "import_module" in code:
                found.append(f"{path.name}:{i}: {line.strip()}")
            if DOTTED_CLASS.search(code) and "lava_class: ClassVar[str] =" not in code:
                found.append(f"{path.name}:{i}: {line.strip()}")
    assert found == []
    # the check itself catches what it is for
    assert re.search(r"\bkind\s*(==|!=|in\b)", 'if p.kind == "Conv":')
    assert DOTTED_CLASS.search('LIBRARY = {"Conv": "lava.proc.conv.process.Conv"}')


def test_one_lowering_entry_per_integer_operation():
    ops = {O.Input, O.Add, O.MaxPool, O.Upsample, I.IntConv, I.IntSpike, I.SumPool, I.IntAttention,
           I.SigmoidTable, I.IntGate, I.IntBilinear, I.IntOutput}
    assert set(lower.LOWERING) == ops
    from lensnet_deploy.hardware.integer import bounds, fast_sim

    assert set(bounds.RULES) | set(bounds.GRAPH_RULES) == ops == set(fast_sim.PREPARE)


def test_hardware_imports_run_target_integer_loihi_lava():
    order = {"target": 0, "integer": 1, "loihi": 2, "lava": 3}
    wrong = []
    for src, dsts in import_edges().items():
        parts = src.split(".")
        if len(parts) < 4 or parts[1] != "hardware" or parts[2] not in order:
            continue
        for dst in dsts:
            d = dst.split(".")
            if len(d) >= 4 and d[1] == "hardware" and d[2] in order and order[d[2]] > order[parts[2]]:
                wrong.append((src, dst))
    assert wrong == []


def test_one_static_bound_serves_the_fast_simulator_and_the_plan(micro_model):
    from conftest import SAMPLES

    from lensnet_deploy.datasets import list_images, load_images

    x = load_images(list_images(SAMPLES / "Image")[:2], (32, 32))
    q = L.prepare(L.quantize(L.export_nir(micro_model, (32, 32)), x))
    bounds = static_bounds(q.ir)
    for step in prepare(q.ir):
        assert np.array_equal(step.bound, bounds[step.node.name].value.astype(np.float64)), step.node.name
    b = lower.Lowering(q.ir, L.load_target("loihi2"))
    assert b.bounds.keys() == bounds.keys()
    # the bound holds on real images: every membrane's observed maximum is within it
    run = q.fast(x, keep=True, observe=True)
    assert run.observed_max
    for name, seen in run.observed_max.items():
        assert seen <= bounds[name].magnitude, name
    # a join sums synaptic bounds and biases apart (tighter than Σ of its inputs' value bounds)
    add = next(n for n in q.ir if isinstance(n.op, O.Add))
    loose = sum(bounds[i].value for i in add.inputs)
    assert (bounds[add.name].value <= loose).all()


def _small():
    from test_int_properties import every_node_type_graph

    return every_node_type_graph(0, batch=2)


def test_a_build_folder_runs_on_lava_without_lowering_again(tmp_path, monkeypatch):
    graph, images = _small()
    build = L.compile(graph, board="auto")
    out = build.save(tmp_path / "build")
    assert (out / "plan.json").exists() and (out / "plan.npz").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("the plan was lowered again")

    monkeypatch.setattr(lower, "build_plan", refuse)
    loaded = L.load_build(out)
    assert [type(p) for p in loaded.plan.procs.values()] == [type(p) for p in build.plan.procs.values()]
    assert loaded.plan.describe() == build.plan.describe()
    fast = L.prepare(graph).fast(images)
    with loaded.network as net:
        run = net.run(images)
    assert all(torch.equal(a, b) for a, b in zip(run.raw, fast.raw))
    assert all(torch.equal(run.spike_counts[k], v) for k, v in fast.spike_counts.items())


def test_the_plan_files_round_trip_every_spec_type(micro_model):
    import io

    tiny_plan = L.prepare(L.quantize(L.export_nir(micro_model, (32, 32)))).plan()
    text, arrays = plan_files(tiny_plan)

    back = read_plan(text, io.BytesIO(arrays))
    assert {type(p).__name__ for p in back.procs.values()} <= set(SPEC_TYPES)
    assert back.describe() == tiny_plan.describe()
    for name, p in tiny_plan.procs.items():
        q = back.procs[name]
        for key, value in p.params().items():
            other = q.params()[key]
            if hasattr(value, "nnz"):
                assert (value != other).nnz == 0 and value.dtype == other.dtype, (name, key)
            elif isinstance(value, np.ndarray):
                assert np.array_equal(value, other) and value.shape == other.shape, (name, key)
    with pytest.raises(L.LensNetDeployError, match="unknown process spec"):
        read_plan(text.replace('"LIFResetSpec"', '"EvalSpec"'), io.BytesIO(arrays))


def test_a_graph_quantized_for_loihi1_compiles_and_runs_for_loihi1(micro_model, tmp_path):
    from conftest import SAMPLES

    from lensnet_deploy.datasets import list_images, load_images

    x = load_images(list_images(SAMPLES / "Image")[:2], (32, 32))
    q = L.prepare(L.quantize(L.export_nir(micro_model, (32, 32)), x, target="loihi1"))
    assert q.target == "loihi1"
    assert q.plan().target == "loihi1"
    # compiled against loihi1's rules without being told: Loihi 1 has binary spikes only
    with pytest.raises(L.DesignRuleError, match="graded_spike_bits.*binary spikes only"):
        L.compile(q, board="auto")
    assert L.compile(q, target="loihi2", board="auto").target.name == "loihi2"  # told otherwise
    from lensnet_deploy.hardware import lava_network

    assert lava_network(q).plan.target == "loihi1"
