"""Lava backend: bit-exact to the fast simulator; a wrong integer in one backend is caught."""

import numpy as np
import pytest
import torch
from conftest import DATASETS, SAMPLES

from lensnet_deploy.datasets import list_images, load_images
from lensnet_deploy.export.capture import capture_lensnet
from lensnet_deploy.export.passes import run_passes
from lensnet_deploy.hardware.int_sim import simulate_int
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
    fast = simulate_int(q, x, fast=True)
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
    order = [n.name for n in q if n.op not in ("input", "output")]
    right = {k: v[0].numpy() for k, v in simulate_int(q, x, fast=True, keep=True).values.items()}
    assert first_difference(lava.values, right, order) is None
    wrong = q.copy()
    conv = wrong.nodes["backbone.downsample1_2.encode_conv"]
    conv.attrs["w_int"] = conv.attrs["w_int"].copy()
    conv.attrs["w_int"][0, 0, 1, 1] += 1
    off = {k: v[0].numpy() for k, v in simulate_int(wrong, x, fast=True, keep=True).values.items()}
    name, count = first_difference(lava.values, off, order)
    assert name == "backbone.downsample1_2.encode_conv" and count > 0


@pytest.mark.slow
def test_lensnet_tiny_on_real_images_through_lava():
    from lensnet_deploy import load_lensnet

    model = load_lensnet("lensnet-tiny")
    q, _ = quantize_ir(run_passes(capture_lensnet(model, (64, 64))))
    folder = DATASETS / "ORSSD" / "test-images"
    x = load_images(list_images(folder if folder.exists() else SAMPLES / "Image")[:4], (64, 64))
    fast = simulate_int(q, x, fast=True)
    for i in range(4):
        lava = simulate_lava(q, x[i])
        assert all(np.array_equal(a, b[i].numpy()) for a, b in zip(lava.raw, fast.raw))
        assert all(np.array_equal(c, fast.spike_counts[k][i].numpy()) for k, c in lava.spike_counts.items())
    assert torch.is_tensor(fast.raw[0])


def _lava_equals_fast_on_every_node(graph, images) -> None:
    from lensnet_deploy.hardware.reference import first_difference

    lava = simulate_lava(graph, images, keep=True)
    fast = {k: v[0].numpy() for k, v in simulate_int(graph, images, fast=True, keep=True).values.items()}
    order = [n.name for n in graph if n.op not in ("input", "output")]
    assert first_difference(lava.values, fast, order) is None


def test_lava_on_a_small_graph_with_every_node_type():
    from test_int_properties import every_node_type_graph

    graph, images = every_node_type_graph(0, batch=1)
    assert {n.op for n in graph} >= {"conv", "spike", "add", "avgpool", "maxpool", "upsample", "attention",
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
