"""Lava backend: bit-exact to the fast simulator; a wrong integer in one backend is caught."""

import numpy as np
import pytest
import torch
from conftest import DATASETS, SAMPLES

from lensnet_deploy.datasets import list_images, load_images
from lensnet_deploy.export import ops as O
from lensnet_deploy.export.capture import capture_lensnet
from lensnet_deploy.export.passes import run_passes
from lensnet_deploy.hardware import ops as I
from lensnet_deploy.hardware.fast_sim import FastSimulator
from lensnet_deploy.hardware.lava_sim import simulate_lava
from lensnet_deploy.hardware.quantize import quantize_ir
from lensnet_deploy.model_zoo import VARIANTS, LensNet
from lensnet_deploy.model_zoo.random_weights import randomize_


@pytest.fixture(scope="module")
def micro_32():
    model = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=2).eval()
    q, _ = quantize_ir(run_passes(capture_lensnet(model, (32, 32))))
    x = load_images(list_images(SAMPLES / "Image")[:1], (32, 32))
    return q, x, simulate_lava(q, x)


def test_lava_equals_the_fast_simulator_bit_for_bit(micro_32):
    q, x, lava = micro_32
    fast = FastSimulator(q)(x)
    assert lava.processes == len(q.nodes) - 4  # one process per node but the four outputs
    assert all(np.array_equal(a, b[0].numpy()) for a, b in zip(lava.raw, fast.raw))
    assert set(lava.spike_counts) == set(fast.spike_counts)
    for name, counts in lava.spike_counts.items():
        assert np.array_equal(counts, fast.spike_counts[name][0].numpy()), name
    assert sum(int(c.sum()) for c in lava.spike_counts.values()) > 1000


def test_a_wrong_integer_in_one_backend_is_caught(micro_32):
    """Layer by layer (every node's integers): the first difference is the altered layer."""
    from lensnet_deploy.hardware.reference import first_difference

    q, x, _ = micro_32
    lava = simulate_lava(q, x, keep=True)
    order = [n.name for n in q if n.kind not in ("input", "output")]
    right = {k: v[0].numpy() for k, v in FastSimulator(q)(x, keep=True).values.items()}
    assert first_difference(lava.values, right, order) is None
    wrong = q.copy()
    wrong.nodes["backbone.downsample1_2.encode_conv"].op.w_int[0, 0, 1, 1] += 1
    off = {k: v[0].numpy() for k, v in FastSimulator(wrong)(x, keep=True).values.items()}
    name, count = first_difference(lava.values, off, order)
    assert name == "backbone.downsample1_2.encode_conv" and count > 0


@pytest.mark.slow
def test_lensnet_tiny_on_real_images_through_lava():
    from lensnet_deploy import load_lensnet

    model = load_lensnet("lensnet-tiny")
    q, _ = quantize_ir(run_passes(capture_lensnet(model, (64, 64))))
    folder = DATASETS / "ORSSD" / "test-images"
    x = load_images(list_images(folder if folder.exists() else SAMPLES / "Image")[:4], (64, 64))
    fast = FastSimulator(q)(x)
    for i in range(4):
        lava = simulate_lava(q, x[i])
        assert all(np.array_equal(a, b[i].numpy()) for a, b in zip(lava.raw, fast.raw))
        assert all(np.array_equal(c, fast.spike_counts[k][i].numpy()) for k, c in lava.spike_counts.items())
    assert torch.is_tensor(fast.raw[0])


def _lava_equals_fast_on_every_node(graph, images, synapses: str = "own") -> None:
    from lensnet_deploy.hardware.reference import first_difference

    lava = simulate_lava(graph, images, keep=True, synapses=synapses)
    fast = {k: v[0].numpy() for k, v in FastSimulator(graph)(images, keep=True).values.items()}
    order = [n.name for n in graph if n.kind not in ("input", "output")]
    assert first_difference(lava.values, fast, order) is None


def test_lava_on_a_small_graph_with_every_node_type():
    from test_int_properties import every_node_type_graph

    graph, images = every_node_type_graph(0, batch=1)
    assert {n.kind for n in graph} >= {"conv", "spike", "add", "sumpool", "maxpool", "upsample", "attention",
                                       "sigmoid", "gate", "bilinear"}
    _lava_equals_fast_on_every_node(graph, images)


def test_lava_on_random_small_graphs():
    from hypothesis import HealthCheck, given, settings
    from test_int_properties import graphs

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(graphs())
    def check(case):
        graph, images = case
        _lava_equals_fast_on_every_node(graph, images[:1])

    check()


@pytest.mark.parametrize("synapses", ["sparse", "conv"])
def test_lava_synapse_processes_on_a_graph_with_every_node_type(synapses):
    """Convolutions as Lava's own Sparse / Conv processes: equal on every node once settled."""
    from test_int_properties import every_node_type_graph

    from lensnet_deploy.hardware.lava_sim import settling_steps

    graph, images = every_node_type_graph(1, batch=1)
    _lava_equals_fast_on_every_node(graph, images, synapses)
    assert settling_steps(graph, {n.name for n in graph.of(I.IntConv)}) == 1 + max_conv_depth(graph) > 5


def join_of_two_depths():
    """input → three chained 1×1 convolutions ⊕ one 1×1 convolution → a last convolution:
    branches of depth 3 and 1 meet; no spike hides a stale value."""
    from lensnet_deploy.export.ir import Graph

    g = Graph(meta={"integer": {"semantics": "test"}, "outputs": ["out"]})
    g.add("input", O.Input(), [], (3, 4, 4))

    def conv(name: str, src: str, c_in: int, bias: int) -> str:
        return g.add(name, I.IntConv(w_int=np.ones((1, c_in, 1, 1)), b_int=[bias]), [src], (1, 4, 4))

    long = conv("c3", conv("c2", conv("c1", "input", 3, 0), 1, 1), 1, 1)
    g.add("join", O.Add(), [long, conv("short", "input", 3, 0)], (1, 4, 4))
    conv("head", "join", 1, 1)
    g.add("bil", I.IntBilinear(factor=2), ["head"], (1, 8, 8))
    g.add("out", I.IntOutput(real_scale=np.ones(1)), ["bil"], (1, 8, 8))
    return g


@pytest.mark.parametrize("synapses", ["sparse", "conv"])
def test_lava_synapse_settling_time_is_exact(synapses):
    """The run needs exactly 1 + (most convolutions on a path) steps: one fewer leaves the
    deepest layer stale, so the settling time is computed, not guessed."""
    from lensnet_deploy.hardware.lava_sim import settling_steps
    from lensnet_deploy.hardware.reference import first_difference

    graph = join_of_two_depths()
    images = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 4, 4)))
    steps = settling_steps(graph, {n.name for n in graph.of(I.IntConv)})
    assert steps == 5 == 1 + max_conv_depth(graph)
    fast = {k: v[0].numpy() for k, v in FastSimulator(graph)(images, keep=True).values.items()}
    order = [n.name for n in graph if n.kind not in ("input", "output")]
    assert first_difference(simulate_lava(graph, images, keep=True, synapses=synapses).values, fast, order) is None
    early = simulate_lava(graph, images, keep=True, synapses=synapses, steps=steps - 1)
    assert first_difference(early.values, fast, order)[0] == "head"  # everything else had settled


def max_conv_depth(graph) -> int:
    """The most convolutions on any path, counted by walking every path back from the output (independent check)."""
    def depth(name: str) -> int:
        n = graph.nodes[name]
        return isinstance(n.op, I.IntConv) + max((depth(i) for i in n.inputs), default=0)

    return max(depth(o.name) for o in graph.outputs())


def test_lava_sparse_synapse_matrix_is_the_convolution():
    """Our Sparse matrix times the flattened input is 2·(Σ W·x) on every output neuron, for a
    strided, a padded and a grouped convolution; Lava's own NCHW order gets it wrong."""
    from lava.proc.conv.utils import TensorOrder, conv_to_sparse

    from lensnet_deploy.export.ir import Node
    from lensnet_deploy.hardware.lava_backend.kernels import conv
    from lensnet_deploy.hardware.lava_synapses import sparse_weights

    rng = np.random.default_rng(4)
    cases = [((3, 9, 7), 4, 3, 2, 1), ((4, 6, 6), 8, 3, 1, 2), ((6, 5, 8), 6, 5, 1, 6)]  # in, out, k, stride, groups
    for in_shape, c_out, k, stride, groups in cases:
        c, h, w = in_shape
        oh, ow = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
        op = I.IntConv(w_int=rng.integers(-127, 128, (c_out, c // groups, k, k)), b_int=np.zeros(c_out),
                       stride=(stride, stride), padding=(k // 2, k // 2), groups=groups)
        node = Node("c", op, ["x"], (c_out, oh, ow))
        x = rng.integers(-4, 5, in_shape)
        want = conv(x, op)
        got = (sparse_weights(node, in_shape) @ x.reshape(-1)).reshape(node.shape)
        assert np.array_equal(got, 2 * want)
    # lava-nc 0.10's NCHW branch flips the input-channel axis: a 3-channel 3×3 kernel is misread
    w_int = rng.integers(-127, 128, (2, 3, 3, 3))
    try:
        dst, src, val = conv_to_sparse((3, 5, 5), (2, 5, 5), w_int, (1, 1), (1, 1), (1, 1), 1,
                                       order=TensorOrder.NCHW)
    except IndexError:
        return  # the misread kernel indexes out of bounds
    from scipy.sparse import csr_matrix

    x = rng.integers(0, 5, (3, 5, 5))
    lava = csr_matrix((val, (dst, src)), shape=(50, 75)) @ x.reshape(-1)
    full = I.IntConv(w_int=w_int, b_int=np.zeros(2), padding=(1, 1))
    assert not np.array_equal(lava, conv(x, full).reshape(-1))
