"""NIR graphs with time in the shapes other tools export, written with the ``nir`` package, and input
sequences for them (spike trains at realistic rates). Shared by the temporal tests."""

from __future__ import annotations

import nir
import numpy as np


def _lif(n: int, tau: float, theta: float, v_leak: float = 0.0, r: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.full(n, v_leak), v_threshold=np.full(n, theta))


def _io(shape_in, shape_out) -> dict:
    return {"input": nir.Input(input_type={"input": np.array(shape_in)}),
            "output": nir.Output(output_type={"output": np.array(shape_out)})}


def lif_chain(rng) -> nir.NIRGraph:
    """snnTorch/Norse's classic: Input → Affine → LIF → Affine → LIF."""
    return nir.NIRGraph(nodes={**_io([6], [3]),
                               "fc1": nir.Affine(weight=rng.normal(0, 0.6, (8, 6)), bias=rng.normal(0, 0.1, 8)),
                               "lif1": _lif(8, 5e-3, 0.5),
                               "fc2": nir.Affine(weight=rng.normal(0.5, 0.6, (3, 8)), bias=np.zeros(3)),
                               "lif2": _lif(3, 1e-2, 0.3)},
                        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
                               ("lif2", "output")])


def cuba_recurrent(rng) -> nir.NIRGraph:
    """A recurrent CubaLIF layer (snnTorch's RSynaptic shape) with a recurrent Affine that has a bias."""
    n = 6
    return nir.NIRGraph(nodes={**_io([4], [n]),
                               "fc": nir.Affine(weight=rng.normal(0, 0.8, (n, 4)), bias=np.zeros(n)),
                               "cuba": nir.CubaLIF(tau_syn=np.full(n, 4e-3), tau_mem=np.full(n, 8e-3),
                                                   r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, 0.25),
                                                   w_in=np.full(n, 2.0)),
                               "rec": nir.Affine(weight=rng.normal(0, 0.4, (n, n)), bias=rng.normal(0, 0.05, n))},
                        edges=[("input", "fc"), ("fc", "cuba"), ("cuba", "rec"), ("rec", "cuba"),
                               ("cuba", "output")])


def _conv_if_pool(rng, r: float) -> dict:
    """Conv2d(2→4, 3×3) with a bias → IF → SumPool2d(2) on an 8×8 input: the head of both CNNs."""
    return {"conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.5, (4, 2, 3, 3)), stride=1, padding=1,
                               dilation=1, groups=1, bias=rng.normal(0, 0.05, 4)),
            "if1": nir.IF(r=np.full((4, 8, 8), r), v_threshold=np.full((4, 8, 8), 1.0)),
            "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))}


def if_cnn(rng, dt: float = 1e-3) -> nir.NIRGraph:
    """A spiking CNN (SpikingJelly/Norse shape): Conv2d → IF → SumPool2d → Flatten → Affine → IF."""
    r = 1.0 / dt  # SpikingJelly writes IF with R = 1/dt: v += I per step
    return nir.NIRGraph(nodes={**_io([2, 8, 8], [5]), **_conv_if_pool(rng, r),
                               "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0),
                               "fc": nir.Affine(weight=rng.normal(0, 0.3, (5, 64)), bias=rng.normal(0, 0.05, 5)),
                               "if2": nir.IF(r=np.full(5, r), v_threshold=np.full(5, 1.0))},
                        edges=[("input", "conv"), ("conv", "if1"), ("if1", "pool"), ("pool", "flat"),
                               ("flat", "fc"), ("fc", "if2"), ("if2", "output")])


def if_conv(rng, dt: float = 1e-3) -> nir.NIRGraph:
    """Conv2d → IF → SumPool2d → Conv2d → IF: a spiking CNN without Flatten (which Norse misreads)."""
    r = 1.0 / dt
    return nir.NIRGraph(nodes={**_io([2, 8, 8], [3, 4, 4]), **_conv_if_pool(rng, r),
                               "conv2": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 0.5, (3, 4, 3, 3)),
                                                   stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3)),
                               "if2": nir.IF(r=np.full((3, 4, 4), r), v_threshold=np.full((3, 4, 4), 1.0))},
                        edges=[("input", "conv"), ("conv", "if1"), ("if1", "pool"), ("pool", "conv2"),
                               ("conv2", "if2"), ("if2", "output")])


def li_readout(rng) -> nir.NIRGraph:
    """A LIF hidden layer read out by a leaky integrator (Norse/Rockpool's classifier readout)."""
    return nir.NIRGraph(nodes={**_io([5], [2]),
                               "fc1": nir.Affine(weight=rng.normal(0, 0.7, (7, 5)), bias=np.zeros(7)),
                               "lif": _lif(7, 5e-3, 0.4),
                               "fc2": nir.Affine(weight=rng.normal(0, 0.7, (2, 7)), bias=np.zeros(2)),
                               "li": nir.LI(tau=np.full(2, 2e-2), r=np.ones(2), v_leak=np.zeros(2))},
                        edges=[("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "li"), ("li", "output")])


def delayed(rng, dt: float = 1e-3) -> nir.NIRGraph:
    """An axonal delay of 3 steps between two layers, joined with an undelayed path."""
    return nir.NIRGraph(nodes={**_io([4], [3]),
                               "fc1": nir.Affine(weight=rng.normal(0, 0.7, (3, 4)), bias=np.zeros(3)),
                               "delay": nir.Delay(delay=np.full(3, 3 * dt)),
                               "fc2": nir.Affine(weight=rng.normal(0, 0.7, (3, 4)), bias=np.zeros(3)),
                               "lif": _lif(3, 5e-3, 0.3)},
                        edges=[("input", "fc1"), ("fc1", "delay"), ("delay", "lif"), ("input", "fc2"),
                               ("fc2", "lif"), ("lif", "output")])


def conv1d(rng) -> nir.NIRGraph:
    """An audio-style 1-D convolution with stride 2 into LIF neurons."""
    return nir.NIRGraph(nodes={**_io([3, 16], [4, 8]),
                               "conv": nir.Conv1d(input_shape=16, weight=rng.normal(0, 0.6, (4, 3, 5)), stride=2,
                                                  padding=2, dilation=1, groups=1, bias=np.zeros(4)),
                               "lif": nir.LIF(tau=np.full((4, 8), 4e-3), r=np.ones((4, 8)), v_leak=np.zeros((4, 8)),
                                              v_threshold=np.full((4, 8), 0.4))},
                        edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")])


def biases_everywhere(rng) -> nir.NIRGraph:
    """Biases on every synapse and a resting potential (v_leak ≠ 0) on every neuron."""
    return nir.NIRGraph(nodes={**_io([4], [3]),
                               "fc1": nir.Affine(weight=rng.normal(0, 0.6, (5, 4)), bias=rng.normal(0.1, 0.1, 5)),
                               "lif1": _lif(5, 6e-3, 0.5, v_leak=0.2),
                               "fc2": nir.Affine(weight=rng.normal(0.5, 0.6, (3, 5)), bias=rng.normal(0.05, 0.05, 3)),
                               "lif2": _lif(3, 8e-3, 0.4, v_leak=-0.1)},
                        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
                               ("lif2", "output")])


def subtractive(rng) -> nir.NIRGraph:
    """Subtractive reset (Sinabs/Rockpool's), declared in the graph metadata."""
    g = lif_chain(rng)
    g.metadata = {"reset": "subtract"}
    return g


GRAPHS = {"lif_chain": lif_chain, "cuba_recurrent": cuba_recurrent, "if_cnn": if_cnn, "li_readout": li_readout,
          "delayed": delayed, "conv1d": conv1d, "biases_everywhere": biases_everywhere, "subtractive": subtractive}


def spike_inputs(graph: nir.NIRGraph, rng, batch: int = 4, steps: int = 40, rate: float = 0.2,
                 amplitude: float = 1.0) -> np.ndarray:
    """Bernoulli spike trains (B×T×input shape) at ``rate`` per step."""
    shape = tuple(int(s) for s in np.asarray(graph.nodes["input"].input_type["input"]).reshape(-1))
    return (rng.random((batch, steps, *shape)) < rate).astype(np.float64) * amplitude


def mixed_tau(rng) -> nir.NIRGraph:
    """A LIF layer whose neurons have two membrane time constants (per-neuron τ, as Rockpool and
    trained snnTorch models write): one Lava process per (du, dv) group on the chip."""
    tau = np.where(np.arange(8) % 2 == 0, 4e-3, 1.2e-2)
    return nir.NIRGraph(nodes={**_io([6], [8]),
                               "fc": nir.Affine(weight=rng.normal(0.2, 0.6, (8, 6)), bias=np.zeros(8)),
                               "lif": nir.LIF(tau=tau, r=np.ones(8), v_leak=np.zeros(8), v_threshold=np.full(8, 0.3))},
                        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
