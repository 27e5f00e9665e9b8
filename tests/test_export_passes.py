"""Each rewrite pass on its own: small hand-built graphs, exact before/after checks."""

import numpy as np
import pytest
import torch

from lensnet_deploy.errors import GraphError
from lensnet_deploy.export import ops as O
from lensnet_deploy.export.ir import Graph
from lensnet_deploy.export.ir_exec import run_ir
from lensnet_deploy.export.passes import (
    commute_spike,
    dedupe_spikes,
    fold_batchnorm,
    fold_layer_scale,
    fold_shuffle,
    fold_spike_scale,
)

RNG = np.random.default_rng(0)


def conv(g: Graph, name: str, src: str, c_out: int, groups: int = 1, k: int = 1, bias: bool = False) -> str:
    c_in, h, w = g.nodes[src].shape
    weight = RNG.normal(size=(c_out, c_in // groups, k, k))
    op = O.Conv(weight=weight, bias=RNG.normal(size=c_out) if bias else None, stride=(1, 1),
                padding=(k // 2, k // 2), groups=groups)
    return g.add(name, op, [src], (c_out, h, w))


def spike(g: Graph, name: str, src: str, D: int = 4) -> str:
    return g.add(name, O.Spike(D=D, out_scale=1.0 / D, sources=[{"call": name, "views": []}]), [src],
                 g.nodes[src].shape)


def out(g: Graph, src: str, name: str = "out") -> None:
    g.add(name, O.Output(), [src], g.nodes[src].shape)


def images(c: int = 3, h: int = 6, w: int = 6) -> torch.Tensor:
    return torch.from_numpy(RNG.normal(size=(2, c, h, w)) * 2)


def same(a: dict, b: dict, tol: float = 0.0) -> bool:
    return all(float((a[k] - b[k]).abs().max()) <= tol for k in a)


def test_fold_batchnorm_matches_and_removes_the_node():
    g = Graph()
    x = g.add("input", O.Input(), [], (3, 6, 6))
    c = conv(g, "c", x, 5, bias=True)
    b = g.add("bn", O.BatchNorm(mean=RNG.normal(size=5), var=RNG.uniform(0.5, 2, 5), eps=1e-5,
                                weight=RNG.normal(size=5), bias=RNG.normal(size=5)), [c], (5, 6, 6))
    out(g, b)
    x_in = images()
    folded = fold_batchnorm(g)
    assert [n.kind for n in folded] == ["input", "conv", "output"]
    assert same(run_ir(g, x_in), run_ir(folded, x_in), 1e-12)
    assert "bn" in g.nodes  # the input graph is untouched


def test_fold_batchnorm_refuses_a_bn_it_cannot_fold():
    g = Graph()
    x = g.add("input", O.Input(), [], (3, 4, 4))
    b = g.add("bn", O.BatchNorm(mean=np.zeros(3), var=np.ones(3), eps=0.0, weight=np.ones(3), bias=np.zeros(3)),
              [x], (3, 4, 4))
    out(g, b)
    with pytest.raises(GraphError, match="bn does not follow a convolution"):
        fold_batchnorm(g)


def test_fold_layer_scale():
    g = Graph()
    x = g.add("input", O.Input(), [], (3, 6, 6))
    c = conv(g, "c", x, 4, bias=True)
    s = g.add("ls", O.Scale(scale=np.array([0.5, 2.0, -1.0, 0.25])), [c], (4, 6, 6))
    out(g, s)
    folded = fold_layer_scale(g)
    assert "ls" not in folded.nodes
    assert np.allclose(folded.nodes["c"].op.weight[1], 2.0 * g.nodes["c"].op.weight[1])
    x_in = images()
    assert same(run_ir(g, x_in), run_ir(folded, x_in), 1e-12)


@pytest.mark.parametrize("pool", ["maxpool", "upsample"])
def test_commute_spike_across_max_pool_and_upsampling(pool):
    g = Graph()
    x = g.add("input", O.Input(), [], (3, 6, 6))
    shape = (3, 1, 1) if pool == "maxpool" else (3, 12, 12)
    p = g.add("p", O.Upsample(factor=2) if pool == "upsample" else O.MaxPool(), [x], shape)
    s = spike(g, "s", p)
    out(g, conv(g, "c", s, 2))
    moved = commute_spike(g)
    assert [n.kind for n in moved] == ["input", "spike", pool, "conv", "output"]
    new_spike = moved.of(O.Spike)[0]
    assert new_spike.shape == (3, 6, 6)
    view = {"op": "global_max"} if pool == "maxpool" else {"op": "upsample", "factor": 2}
    assert new_spike.op.sources == [{"call": "s", "views": [view]}]
    x_in = images() * 3
    assert same(run_ir(g, x_in), run_ir(moved, x_in))


def test_dedupe_merges_spikes_of_one_value_and_keeps_their_calls():
    g = Graph()
    x = g.add("input", O.Input(), [], (3, 6, 6))
    a, b = spike(g, "a", x), spike(g, "b", x)
    other = spike(g, "c", x, D=2)
    total = g.add("sum", O.Add(), [conv(g, "ca", a, 2), conv(g, "cb", b, 2), conv(g, "cc", other, 2)], (2, 6, 6))
    out(g, total)
    merged = dedupe_spikes(g)
    assert sorted(n.name for n in merged.of(O.Spike)) == ["a", "c"]
    assert [s["call"] for s in merged.nodes["a"].op.sources] == ["a", "b"]
    assert merged.nodes["cb"].inputs == ["a"]
    x_in = images() * 3
    assert same(run_ir(g, x_in), run_ir(merged, x_in))


def test_fold_shuffle_into_the_next_convolution():
    g = Graph()
    x = g.add("input", O.Input(), [], (6, 5, 5))
    perm = np.array([0, 2, 4, 1, 3, 5])
    sh = g.add("shuffle", O.Shuffle(perm=perm), [x], (6, 5, 5))
    s = spike(g, "s", sh)
    out(g, conv(g, "c", s, 3))
    folded = fold_shuffle(g)
    assert "shuffle" not in folded.nodes
    w_old, w_new = g.nodes["c"].op.weight, folded.nodes["c"].op.weight
    for c in range(6):
        assert np.array_equal(w_new[:, perm[c]], w_old[:, c])
    assert folded.nodes["s"].op.sources[0]["views"] == [{"op": "permute", "perm": perm.tolist()}]
    x_in = images(6, 5, 5) * 3
    assert same(run_ir(g, x_in), run_ir(folded, x_in), 1e-12)


def test_fold_spike_scale_leaves_integer_counts():
    g = Graph()
    x = g.add("input", O.Input(), [], (4, 4, 4))
    s = spike(g, "s", x)
    up = g.add("up", O.Upsample(factor=2), [s], (4, 8, 8))
    q = spike(g, "q", x)
    att = g.add("att", O.Attention(heads=2, scale=1.0), [q, q, q], (4, 4, 4))
    out(g, conv(g, "c1", up, 4, groups=4, k=3), "o1")
    out(g, att, "o2")
    folded = fold_spike_scale(g)
    assert folded.nodes["s"].op.out_scale == 1.0
    assert np.allclose(folded.nodes["c1"].op.weight, g.nodes["c1"].op.weight / 4)
    assert folded.nodes["att"].op.scale == pytest.approx(1 / 64)
    x_in = images(4, 4, 4) * 3
    values = run_ir(folded, x_in, keep=True)
    assert torch.equal(values["s"], values["s"].round()) and float(values["s"].max()) == 4.0
    assert same(run_ir(g, x_in), run_ir(folded, x_in), 1e-12)


def test_fold_spike_scale_refuses_a_consumer_that_cannot_absorb():
    g = Graph()
    x = g.add("input", O.Input(), [], (2, 3, 3))
    s = spike(g, "s", x)
    out(g, g.add("sum", O.Add(), [s, x], (2, 3, 3)))
    with pytest.raises(GraphError, match="add node sum cannot absorb"):
        fold_spike_scale(g)


def test_an_operation_checks_its_operands_and_shapes():
    g = Graph()
    x = g.add("input", O.Input(), [], (3, 6, 6))
    with pytest.raises(GraphError, match="attention node a takes 3 operands, got 2"):
        g.add("a", O.Attention(heads=1), [x, x], (3, 6, 6))
    with pytest.raises(GraphError, match=r"conv node c: output \(4, 6, 6\) differs from the convolution's \(4, 4, 4\)"):
        g.add("c", O.Conv(weight=np.ones((4, 3, 3, 3))), [x], (4, 6, 6))
    with pytest.raises(GraphError, match="does not read 3 channels"):
        g.add("c", O.Conv(weight=np.ones((4, 2, 1, 1))), [x], (4, 6, 6))
    with pytest.raises(GraphError, match="not C×1×1"):
        g.add("m", O.MaxPool(), [x], (3, 2, 2))
    assert "a" not in g.nodes and "c" not in g.nodes
