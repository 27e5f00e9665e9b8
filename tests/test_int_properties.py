"""Property tests: random small integer graphs of every node type, fast simulator vs the
int64 reference, equal on every node bit for bit; and one weight off by one is caught."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lensnet_deploy.export import ops as O
from lensnet_deploy.export.ir import Graph
from lensnet_deploy.hardware.integer import ops as I
from lensnet_deploy.hardware.integer.fast_sim import FastSimulator
from lensnet_deploy.hardware.integer.reference import first_difference, run_reference

BLOCKS = ("conv", "depthwise", "stride", "residual", "attention", "scab", "upsample")


class Builder:
    def __init__(self, rng: np.random.Generator, D: int) -> None:
        self.g = Graph(meta={"integer": {"semantics": "test"}, "outputs": ["out"]})
        self.rng, self.D, self.i = rng, D, 0

    def name(self, kind: str) -> str:
        self.i += 1
        return f"{kind}{self.i}"

    def conv(self, src: str, c_out: int, k: int = 3, stride: int = 1, groups: int = 1) -> str:
        c_in, h, w = self.g.nodes[src].shape
        r = self.rng
        oh, ow = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
        # v1: what a LIF neuron reads stays below 2^17 (here 2^16, so that two branches may join)
        x_max = 152 if isinstance(self.g.nodes[src].op, O.Input) else self.D
        exp = int(r.integers(0, 3))
        w_max = int(max(1, min(127, 2**16 // (c_in // groups * k * k * x_max * 2**exp))))
        op = I.IntConv(w_int=r.integers(-w_max, w_max + 1, (c_out, c_in // groups, k, k)), exp=exp,
                       b_int=r.integers(-400, 400, c_out), stride=(stride, stride), padding=(k // 2, k // 2),
                       groups=groups)
        return self.g.add(self.name("conv"), op, [src], (c_out, oh, ow))

    def spike(self, src: str, scale: float) -> str:
        c = self.g.nodes[src].shape[0]
        start = self.rng.integers(-int(scale), int(scale) + 1, (c, 1))
        if self.rng.random() < 0.5:  # arithmetic, power-of-two step: what quantize makes after a conv or join
            steps = np.repeat(2 ** self.rng.integers(0, max(1, int(np.log2(scale))), (c, 1)), self.D, axis=1)
        else:
            steps = self.rng.integers(1, max(2, int(scale)), (c, self.D))
        op = I.IntSpike(D=self.D, theta=(start + np.cumsum(steps, axis=1)).astype(np.int64))
        return self.g.add(self.name("spike"), op, [src], self.g.nodes[src].shape)

    def block(self, kind: str, s: str) -> str:
        c, h, w = self.g.nodes[s].shape
        if kind == "conv":
            return self.spike(self.conv(s, c, k=1), 300)
        if kind == "depthwise":
            return self.spike(self.conv(s, c, groups=c), 300)
        if kind == "stride" and h >= 8:
            return self.spike(self.conv(s, c, stride=2), 600)
        if kind == "residual":
            j = self.g.add(self.name("add"), O.Add(), [self.conv(s, c), self.conv(s, c, k=1)], (c, h, w))
            return self.spike(j, 900)
        if kind == "attention":
            heads = 2 if c % 2 == 0 else 1
            q, k = self.spike(self.conv(s, c, k=1), 300), self.spike(self.conv(s, c, k=1), 300)
            v = self.spike(self.conv(s, 2 * c, k=1), 300)
            a = self.g.add(self.name("attn"), I.IntAttention(heads=heads), [q, k, v], (2 * c, h, w))
            return self.spike(self.conv(self.spike(a, 40 * h * w), c, k=1), 300)
        if kind == "scab":
            m = self.conv(s, c)
            avg = self.g.add(self.name("avg"), I.SumPool(), [m], (c, 1, 1))
            mx = self.g.add(self.name("max"), O.MaxPool(), [s], (c, 1, 1))
            z = self.g.add(self.name("add"), O.Add(), [self.conv(self.spike(avg, 300 * h * w), c, k=1),
                                                       self.conv(mx, c, k=1)], (c, 1, 1))
            span = 64
            lut = np.sort(self.rng.integers(0, 4097, (c, span)), axis=1)
            table = I.SigmoidTable(z_shift=self.rng.integers(0, 4, c), z_lo=np.full(c, -32), z_hi=np.full(c, 31),
                                   lut=lut)
            sig = self.g.add(self.name("sig"), table, [z], (c, 1, 1))
            gate = self.g.add(self.name("gate"), I.IntGate(mult=self.rng.integers(1, 2000, c), r=16), [sig, s],
                              (c, h, w))
            return self.spike(self.g.add(self.name("add"), O.Add(), [gate, m], (c, h, w)), 900)
        if kind == "upsample" and h <= 16:
            up = self.g.add(self.name("up"), O.Upsample(factor=2), [s], (c, 2 * h, 2 * w))
            return self.spike(self.conv(up, c, k=3, groups=c), 300)
        return s


@st.composite
def graphs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    D = draw(st.integers(1, 4))
    c = draw(st.sampled_from([2, 4]))
    size = draw(st.sampled_from([8, 16]))
    b = Builder(rng, D)
    b.g.add("input", O.Input(), [], (3, size, size))
    s = b.spike(b.conv("input", c, k=3), 2000)
    for kind in draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4)):
        s = b.block(kind, s)
    head = b.conv(s, 1, k=1)
    _, h, w = b.g.nodes[head].shape
    f = draw(st.sampled_from([2, 4]))
    bil = b.g.add("bil", I.IntBilinear(factor=f), [head], (1, h * f, w * f))
    b.g.add("out", I.IntOutput(real_scale=np.ones(1)), [bil], (1, h * f, w * f))
    b.g.validate()
    images = torch.from_numpy(rng.normal(size=(2, 3, size, size)))
    return b.g, images


def both(graph: Graph, images: torch.Tensor) -> tuple[dict, dict]:
    ref: dict = {}
    run_reference(graph, images, keep=ref)
    fast = FastSimulator(graph)(images, keep=True)
    return ref, {k: v.numpy() for k, v in fast.values.items()}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_fast_simulator_equals_the_int64_reference_on_every_node(case):
    graph, images = case
    ref, fast = both(graph, images)
    assert first_difference(ref, fast, list(graph.nodes)) is None
    ops = {n.kind for n in graph}
    assert {"input", "conv", "spike", "bilinear", "output"} <= ops


def every_node_type_graph(seed: int, batch: int = 2) -> tuple[Graph, torch.Tensor]:
    """A 16×16 graph with one block of each kind (so every node type), and its images."""
    rng = np.random.default_rng(seed)
    b = Builder(rng, 4)
    b.g.add("input", O.Input(), [], (3, 16, 16))
    s = b.spike(b.conv("input", 4), 2000)
    for kind in BLOCKS:
        s = b.block(kind, s)
    head = b.conv(s, 1, k=1)
    _, h, w = b.g.nodes[head].shape
    b.g.add("bil", I.IntBilinear(factor=4), [head], (1, 4 * h, 4 * w))
    b.g.add("out", I.IntOutput(real_scale=np.ones(1)), ["bil"], (1, 4 * h, 4 * w))
    return b.g, torch.from_numpy(rng.normal(size=(batch, 3, 16, 16)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_graph_with_every_node_type(seed):
    graph, images = every_node_type_graph(seed)
    assert {n.kind for n in graph} == {"input", "conv", "spike", "add", "sumpool", "maxpool", "upsample",
                                       "attention", "sigmoid", "gate", "bilinear", "output"}
    ref, fast = both(graph, images)
    assert first_difference(ref, fast, list(graph.nodes)) is None
    counts = [ref[n.name] for n in graph.of(I.IntSpike)]
    assert len({int(c.sum()) for c in counts}) > 3  # spikes vary: the comparison has something to compare


@pytest.mark.parametrize("delta", [1, -1])
def test_one_weight_off_by_one_is_caught(delta):
    rng = np.random.default_rng(5)
    b = Builder(rng, 4)
    b.g.add("input", O.Input(), [], (3, 8, 8))
    s = b.spike(b.conv("input", 4), 2000)
    s = b.block("residual", s)
    head = b.conv(s, 1, k=1)
    b.g.add("bil", I.IntBilinear(factor=2), [head], (1, 16, 16))
    b.g.add("out", I.IntOutput(real_scale=np.ones(1)), ["bil"], (1, 16, 16))
    images = torch.from_numpy(rng.normal(size=(1, 3, 8, 8)))
    ref, fast = both(b.g, images)
    assert first_difference(ref, fast, list(b.g.nodes)) is None
    wrong = b.g.copy()
    target = next(n for n in wrong if isinstance(n.op, I.IntConv) and n.inputs != ["input"])
    target.op.w_int[0, 0, 1, 1] += delta
    _, fast_wrong = both(wrong, images)
    found = first_difference(ref, fast_wrong, list(b.g.nodes))
    assert found is not None and found[0] == target.name and found[1] > 0
