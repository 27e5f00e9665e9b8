"""Energy per image from the integer simulation's real spike counts.

Two estimates, each constant with its source:

* the LENS-Net paper's 45 nm convention (Horowitz, ISSCC 2014):
  ``E = E_MAC · MACs(first layer) + E_AC · Σ_layers mean_count(input) · MACs(layer)``
  with E_MAC = 4.6 pJ and E_AC = 0.9 pJ, where ``mean_count`` (the paper's
  firing rate × T) is the mean integer spike count per input neuron of the
  layer. Off-core operations (attention product, gate) are counted as MACs.
* a Loihi-style estimate: a graded spike carries the whole count in one
  message, so ``synaptic ops = Σ_layers nonzero_fraction(input) · MACs`` and
  ``neuron updates = Σ neurons`` (one update per image), at the target's
  energy per synaptic op and per neuron update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...export import ops as O
from ...export.ir import Graph
from ..integer import ops as I
from ..target.chips import Target

E_MAC_PJ, E_AC_PJ = 4.6, 0.9
PAPER_SOURCE = ("LENS-Net paper convention; 45 nm energies from M. Horowitz, 'Computing's energy problem', "
                "ISSCC 2014: 4.6 pJ per 32-bit float MAC, 0.9 pJ per 32-bit float add")


@dataclass
class EnergyReport:
    paper_mj: float
    loihi_mj: float
    macs_first_layer: int
    accumulates: float
    synaptic_ops: float
    neuron_updates: int
    per_layer: list[dict] = field(default_factory=list)
    constants: dict = field(default_factory=dict)

    def format(self) -> str:
        c = self.constants
        return "\n".join([
            f"paper convention: E = {E_MAC_PJ} pJ x {self.macs_first_layer:,} first-layer MACs + {E_AC_PJ} pJ x "
            f"{self.accumulates:,.0f} accumulates = {self.paper_mj:.3f} mJ per image",
            f"Loihi-style:      E = {c['synaptic_op_pj']} pJ x {self.synaptic_ops:,.0f} synaptic ops + "
            f"{c['neuron_update_pj']} pJ x {self.neuron_updates:,} neuron updates = {self.loihi_mj:.3f} mJ per image",
            f"sources: {PAPER_SOURCE}; {c['loihi_source']}",
        ])

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _macs(graph: Graph, name: str) -> int:
    n = graph.nodes[name]
    return int(np.prod(n.shape)) * int(np.prod(n.op.w_int.shape[1:]))  # type: ignore[attr-defined]


def _input_stats(graph: Graph, src: str, counts: dict[str, torch.Tensor]) -> tuple[float, float] | None:
    """(mean count, nonzero fraction) of a conv's input, through upsampling and max pooling."""
    node = graph.nodes[src]
    while isinstance(node.op, O.Upsample | O.MaxPool):
        node = graph.nodes[node.inputs[0]]
    if not isinstance(node.op, I.IntSpike) or node.name not in counts:
        return None
    c = counts[node.name].double()
    return float(c.mean()), float((c > 0).double().mean())


def attention_ops(graph: Graph, name: str) -> int:
    """Multiply-accumulates of one attention product per image (kᵀv, then q·KV)."""
    n = graph.nodes[name]
    q, v = graph.nodes[n.inputs[0]].shape, graph.nodes[n.inputs[2]].shape
    heads = n.op.heads  # type: ignore[attr-defined]
    return 2 * q[1] * q[2] * (q[0] // heads) * (v[0] // heads) * heads


def estimate_energy(graph: Graph, spike_counts: dict[str, torch.Tensor], target: Target) -> EnergyReport:
    """Energy per image of a (quantized) IR graph given per-layer spike counts (any batch size)."""
    first = macs_first = 0
    acc = synops = 0.0
    rows = []
    for n in graph.of(I.IntConv):
        macs = _macs(graph, n.name)
        if n.inputs == ["input"]:
            first, macs_first = n.name, macs
            rows.append({"layer": n.name, "macs": macs, "mean_count": None, "energy_pj": macs * E_MAC_PJ})
            synops += macs  # dense 8-bit input: every pixel is a message
            continue
        stats = _input_stats(graph, n.inputs[0], spike_counts)
        if stats is None:
            continue
        mean, nonzero = stats
        acc += mean * macs
        synops += nonzero * macs
        rows.append({"layer": n.name, "macs": macs, "mean_count": mean, "nonzero": nonzero,
                     "energy_pj": mean * macs * E_AC_PJ})
    for n in graph.of(I.IntAttention):
        ops = attention_ops(graph, n.name)
        acc += ops  # counted as accumulates on integer counts
        rows.append({"layer": n.name, "macs": ops, "mean_count": None, "energy_pj": ops * E_AC_PJ})
    neurons = sum(int(np.prod(n.shape)) for n in graph.of(I.IntSpike))
    e = target.energy_pj
    paper = (E_MAC_PJ * macs_first + E_AC_PJ * acc) * 1e-9
    loihi = (e["synaptic_op"] * synops + e["neuron_update"] * neurons) * 1e-9
    constants = {"E_MAC_pj": E_MAC_PJ, "E_AC_pj": E_AC_PJ, "synaptic_op_pj": e["synaptic_op"],
                 "neuron_update_pj": e["neuron_update"], "loihi_source": target.sources["energy_pj"],
                 "first_layer": first}
    return EnergyReport(paper, loihi, macs_first, acc, synops, neurons, rows, constants)


@dataclass
class TemporalEnergy:
    """Energy per sample of a graph with time on Loihi 2, from simulated spikes: each non-zero
    message into a synapse process costs one synaptic operation per synapse it reaches (the stored
    weights of its column), and every neuron one update per step."""

    loihi_mj: float
    synaptic_ops: float
    neuron_updates: int
    steps: int
    per_layer: list[dict] = field(default_factory=list)
    constants: dict = field(default_factory=dict)
    kind: str = "temporal"

    def format(self) -> str:
        c = self.constants
        return "\n".join([
            f"Loihi-style: E = {c['synaptic_op_pj']} pJ x {self.synaptic_ops:,.0f} synaptic ops + "
            f"{c['neuron_update_pj']} pJ x {self.neuron_updates:,} neuron updates = {self.loihi_mj:.6f} mJ per "
            f"sample of {self.steps} steps",
            f"source: {c['loihi_source']}",
        ])

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def temporal_energy(plan, sent: dict[str, np.ndarray], target: Target) -> TemporalEnergy:
    """``sent``: per source process (an input, a layer's group, the bias source), what it sends
    (B×T×neurons); ``plan``: the network (``loihi.temporal``)."""
    from .plan import CubaLIFSpec, SparseSpec

    into = {link.dst: link.src for link in plan.links if isinstance(plan.procs[link.dst], SparseSpec)}
    ops: dict[str, float] = {}
    for name, syn in plan.procs.items():
        if not isinstance(syn, SparseSpec):
            continue
        src = sent.get(into[name])
        if src is None:
            continue
        fanout = np.diff(syn.weights.tocsc().indptr).astype(np.float64)  # stored weights per source neuron
        per_sample = (np.asarray(src) != 0).reshape(src.shape[0], -1, src.shape[-1]).sum(axis=1) @ fanout
        ops[syn.node] = ops.get(syn.node, 0.0) + float(per_sample.mean())
    updates = sum(p.neurons for p in plan.procs.values() if isinstance(p, CubaLIFSpec)) * plan.steps
    e = target.energy_pj
    synops = sum(ops.values())
    mj = (synops * e["synaptic_op"] + updates * e["neuron_update"]) * 1e-9
    return TemporalEnergy(mj, synops, updates, plan.steps,
                          [{"layer": k, "synaptic_ops": v} for k, v in ops.items()],
                          {"synaptic_op_pj": e["synaptic_op"], "neuron_update_pj": e["neuron_update"],
                           "loihi_source": target.sources.get("energy_pj", "")})
