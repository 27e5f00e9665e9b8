"""The multi-spike neuron: rounding, clamping, surrogate gradient, recording."""

import pytest
import torch

from lensnet_deploy.model_zoo import MultiSpike, spike_count


def test_counts_round_ties_to_even_and_clamp():
    x = torch.tensor([-3.0, 0.0, 0.49, 0.5, 0.51, 1.5, 2.5, 3.49, 3.5, 4.0, 4.6, 100.0])
    assert spike_count(x, 4).tolist() == [0, 0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4]
    assert (MultiSpike(4)(x) * 4).tolist() == [0, 0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4]


def test_smaller_spike_limit_normalises_by_d():
    x = torch.tensor([0.6, 1.5, 2.7, 9.0])
    assert MultiSpike(2)(x).tolist() == [0.5, 1.0, 1.0, 1.0]
    assert MultiSpike(1)(x).tolist() == [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        MultiSpike(0)


def test_surrogate_gradient_is_the_sigmoid_window():
    x = torch.tensor([0.0, 2.0, 4.0, -1.0], requires_grad=True)
    spike_count(x, 4).sum().backward()
    s = torch.sigmoid
    expected = [float(s(torch.tensor(10.0 * v)) * s(torch.tensor(10.0 * (4 - v)))) for v in (0.0, 2.0, 4.0, -1.0)]
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-6)
    assert x.grad[0].item() == pytest.approx(0.5, abs=1e-6)
    assert x.grad[1].item() == pytest.approx(1.0, abs=1e-6)


def test_recording_keeps_every_call_of_a_shared_module():
    m = MultiSpike(4)
    m.name = "sfa"
    m.recorder = {}
    m(torch.tensor([1.2]))
    m(torch.tensor([3.7]))
    assert {k: v.tolist() for k, v in m.recorder.items()} == {"sfa": [1], "sfa#2": [4]}
    assert m.recorder["sfa"].dtype == torch.int64
