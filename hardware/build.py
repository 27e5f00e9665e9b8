"""``compile``: an integer NIR graph → a build for a Loihi target and board (saved as a folder).

A build folder holds the integer graph (``model.q.nir``), ``build.json``
(target, board, totals), ``resources.json`` and ``resources.txt`` (per layer:
neurons, synapses, cores, where it runs), ``placement.json``, the network itself
(``plan.json`` and ``plan.npz``: every process with its parameters, every connection;
``network.json`` describes it for people) and, when images were given, ``energy.json``.
``load_build`` reads it back into a runnable network (``Build.network``) for ``simulate``
and ``deploy`` without lowering the graph again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import torch

from ..atomic import write_bytes_atomic, write_text_atomic
from ..errors import LensNetDeployError
from ..export.ir import Graph
from ..export.nir_io import read_nir, write_nir
from .integer.rules import check_design_rules
from .loihi.activity import layer_activity, plot_firing_rates
from .loihi.audit import check_network
from .loihi.energy import EnergyReport, TemporalEnergy, estimate_energy, temporal_energy
from .loihi.lower import build_plan
from .loihi.plan import NEURO_CORE, NetworkPlan, plan_files, read_plan
from .loihi.resources import LayerResources, Placement, Resources, check_fits, network_resources, place
from .model import IntegerModel, TemporalModel
from .target.chips import Target, board_capacity, load_boards, load_target


def rescaled(graph: Graph, size: tuple[int, int]) -> Graph:
    """The same graph for another input size (spatial shapes scale; pooled C×1×1 stay)."""
    h0, w0 = graph.nodes["input"].shape[1:]
    g = graph.copy()
    for n in g:
        if len(n.shape) == 3 and n.shape[1] > 1:
            c, h, w = n.shape
            n.shape = (c, h * size[0] // h0, w * size[1] // w0)
    return g


@dataclass
class Build:
    model: IntegerModel
    target: Target
    board: str
    resources: Resources
    placement: Placement
    energy: EnergyReport | None = None
    activity: list[dict] | None = None
    plan: NetworkPlan | None = None
    description: dict | None = None  # the plan's description (network.json)

    @property
    def network(self):
        """The build's Lava network (``LavaNetwork``), from its plan as built or read back."""
        if self.plan is None:
            raise LensNetDeployError("this build has no network plan (a build folder from an older version: "
                                     "compile it again)")
        self.model.use_plan(self.plan)
        return self.model.lava(self.plan.target)

    @property
    def graph(self) -> nir.NIRGraph:
        return self.model.nir

    @property
    def ir(self) -> Graph:
        return self.model.ir

    def summary(self) -> dict[str, Any]:
        network = self.description or {}
        return {"target": self.target.name, "board": self.board, "chips": self.placement.chips,
                "cores": self.placement.cores, "lower_bound_chips": self.placement.lower_bound_chips,
                "neurons": self.resources.neurons, "synapses": self.resources.synapses,
                "shared_weights": self.resources.shared_weights,
                "conv_weights": self.resources.weights, "stored_synapses": self.resources.stored,
                "input_size": list(self.model.input_size),
                "processes": network.get("process_count"), "lava_library_processes": network.get("library_count"),
                "neuro_core_synop_share": network.get("neuro_core_synop_share"),
                "pipeline_depth": network.get("depth")}

    def table(self) -> str:
        """Neuro-core processes with their neurons, synapses and cores; then every process off the
        neuro-cores with where it runs and its work per image."""
        lines = [f"{'process (neuro-cores)':<62}{'class':<11}{'neurons':>11}{'synapses':>16}{'stored':>14}"
                 f"{'cores':>7}"]
        for x in self.resources.layers:
            if x.placement == "neuro-core":
                lines.append(f"{x.name[:61]:<62}{x.kind:<11}{x.neurons:>11,}{x.synapses:>16,}{x.stored:>14,}"
                             f"{x.cores:>7}")
        lines.append(f"{'process (off the neuro-cores)':<62}{'class':<13}{'runs on':<10}{'ops per image':>22}")
        for x in self.resources.layers:
            if x.placement != "neuro-core":
                lines.append(f"{x.name[:61]:<62}{x.kind:<13}{x.placement:<10}{x.ops:>22,}")
        s = self.summary()
        stored = ("Conv kernels stored per core" if s["conv_weights"] == "shared"
                  else "one synapse stored per source-destination pair")
        lines.append(f"total: {s['neurons']:,} neurons, {s['synapses']:,} synapses ({s['shared_weights']:,} unique "
                     f"weights; {stored}: {s['stored_synapses']:,}), {s['cores']:,} neuro-core"
                     f"{'s' if s['cores'] != 1 else ''} on {s['chips']} {self.target.name} chip"
                     f"{'s' if s['chips'] != 1 else ''} "
                     f"(lower bound {s['lower_bound_chips']}), board {self.board}")
        if s.get("processes"):
            lines.append(f"network: {s['processes']} processes ({s['lava_library_processes']} Lava library processes "
                         f"on neuro-cores), pipeline depth {s['pipeline_depth']} steps, neuro-core share of "
                         f"synaptic operations {100 * s['neuro_core_synop_share']:.2f} %")
        return "\n".join(lines)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        write_nir(self.graph, out / "model.q.nir")
        write_text_atomic(out / "build.json", json.dumps(self.summary(), indent=1) + "\n")
        write_text_atomic(out / "resources.json",
                          json.dumps([x.to_dict() for x in self.resources.layers], indent=1) + "\n")
        write_text_atomic(out / "resources.txt", self.table() + "\n")
        write_text_atomic(out / "placement.json", json.dumps(self.placement.to_dict(), indent=1) + "\n")
        if self.description is not None:
            write_text_atomic(out / "network.json", json.dumps(self.description, indent=1) + "\n")
        if self.plan is not None:
            text, arrays = plan_files(self.plan)
            write_bytes_atomic(out / "plan.npz", arrays)
            write_text_atomic(out / "plan.json", text)
        if self.energy is not None:
            write_text_atomic(out / "energy.json", json.dumps(self.energy.to_dict(), indent=1, default=float) + "\n")
            write_text_atomic(out / "energy.txt", self.energy.format() + "\n")
        if self.activity:
            write_text_atomic(out / "activity.json", json.dumps(self.activity, indent=1) + "\n")
            plot_firing_rates(self.activity, out / "firing_rates.png",
                              f"firing rates, {self.target.name} build ({len(self.activity)} spike layers)")
        return out


def compile_graph(int_graph: IntegerModel | nir.NIRGraph, target: str | Target | None = None,
                  board: str = "kapoho-point", images: torch.Tensor | None = None,
                  share_weights: bool | None = None) -> Build:
    """Design rules, resources, placement and (with ``images``) energy of an integer graph on ``board``
    (``"auto"``: the smallest board that holds it) for ``target`` (default: the graph's own).
    ``share_weights``: None stores each Conv as the target file says (``conv_weights``, cited: Loihi 2
    keeps a kernel per core); False counts one synapse per (source, destination) pair, True shares.

    Raises ``DesignRuleError`` when a layer breaks one of the target's rules and
    ``ResourceError`` when the board cannot hold it (naming the layer, the limit,
    the smallest board that can, and the largest input that fits).
    """
    model = IntegerModel.of(int_graph)
    spec = load_target(model.target if target is None else target)
    boards = load_boards()
    if board not in boards and board != "auto":
        raise LensNetDeployError(f"unknown board {board!r} (known: auto, {', '.join(boards)})")
    ir = model.ir
    check_design_rules(ir, spec)
    plan = model.plan(spec)
    check_network(plan, spec)  # the audit: every process within the chip's formats
    res = network_resources(plan, spec, share_weights)
    placement = place(res, spec)
    board = _chosen_board(board, spec, placement)
    h0, w0 = model.input_size
    check_fits(res, placement, spec, board,
               resize=lambda size: network_resources(plan, spec, share_weights, size[0] * size[1] / (h0 * w0)),
               exact=lambda size: network_resources(build_plan(rescaled(ir, size), spec), spec, share_weights))
    energy = activity = None
    if images is not None:
        counts = model.simulate(images).spike_counts
        energy = estimate_energy(ir, counts, spec)
        activity = layer_activity(ir, counts)
    return Build(model, spec, board, res, placement, energy, activity, plan, describe(plan))


def describe(plan: NetworkPlan) -> dict:
    """The readable description of the network a build folder keeps (network.json)."""
    text = plan.describe()
    text["process_count"] = len(plan.procs)
    text["library_count"] = sum(p.library and p.placement == NEURO_CORE for p in plan.procs.values())
    text["neuro_core_synop_share"] = plan.neuro_core_synop_share
    text["placement"] = plan.placement
    return text


def load_build(folder: str | os.PathLike[str]) -> Build:
    """A build folder as ``compile`` saved it (read, not recompiled; its plan read back whole)."""
    folder = Path(folder)
    meta_path = folder / "build.json"
    if not meta_path.exists():
        raise LensNetDeployError(f"{folder}: not a build folder (no build.json)")
    try:
        meta = json.loads(meta_path.read_text())
        layers = [LayerResources(**row) for row in json.loads((folder / "resources.json").read_text())]
        placed = json.loads((folder / "placement.json").read_text())
        placement = Placement(placed["chips"], placed["cores"], placed["lower_bound_chips"],
                              [(r["layer"], r["first_core"], r["chip"]) for r in placed["layers"]])
        energy_doc = json.loads((folder / "energy.json").read_text()) if (folder / "energy.json").exists() else None
        energy = EnergyReport(**energy_doc) if energy_doc and "paper_mj" in energy_doc else None
        activity = json.loads((folder / "activity.json").read_text()) if (folder / "activity.json").exists() else None
        network = json.loads((folder / "network.json").read_text()) if (folder / "network.json").exists() else None
        plan = read_plan((folder / "plan.json").read_text(), folder / "plan.npz") \
            if (folder / "plan.json").exists() else None
        target, board = meta["target"], meta["board"]
        weights = meta.get("conv_weights", "dense")  # builds before issue 31 counted per pair
    except (OSError, KeyError, TypeError, ValueError, LensNetDeployError, json.JSONDecodeError) as err:
        raise LensNetDeployError(f"{folder}: incomplete or damaged build folder ({err})") from None
    graph = read_nir(folder / "model.q.nir")
    if plan is not None and plan.steps:  # a graph with time
        return Build(TemporalModel(graph), load_target(target), board, Resources(layers, weights), placement,
                     TemporalEnergy(**json.loads((folder / "energy.json").read_text()))
                     if (folder / "energy.json").exists() else None, activity, plan, network)
    model = IntegerModel(graph)
    if plan is not None:
        model.use_plan(plan)
    return Build(model, load_target(target), board, Resources(layers, weights), placement, energy, activity, plan,
                 network)


def _chosen_board(board: str, spec: Target, placement: Placement) -> str:
    """``board``, or for ``auto`` the smallest listed board that holds the placement (else the largest)."""
    boards = load_boards()
    if board not in boards and board != "auto":
        raise LensNetDeployError(f"unknown board {board!r} (known: auto, {', '.join(boards)})")
    if board != "auto":
        return board
    return next((name for name, b in sorted(boards.items(), key=lambda kv: kv[1]["chips"])
                 if board_capacity(b, spec) >= placement.cores), max(boards, key=lambda k: boards[k]["chips"]))


DEFAULT_STEPS = 100  # steps per sample of a graph with time compiled without inputs


def compile_temporal(model: TemporalModel, target: str | Target | None = None, board: str = "kapoho-point",
                     inputs=None, steps: int | None = None) -> Build:
    """``compile`` for a graph with time: the network that streams samples of ``steps`` steps (the
    inputs' T, else ``DEFAULT_STEPS``) audited, counted and placed; with ``inputs`` (B×T×shape) the
    stream's period is the one exact for them, and energy and firing rates come from their spikes
    in the fast simulator."""
    import numpy as np

    from .integer import temporal as T
    from .loihi.temporal import input_bits

    spec = load_target(model.target if target is None else target)
    xs = None if inputs is None else T.integer_inputs(model.int, inputs)
    if xs is not None:
        steps = next(iter(xs.values())).shape[1]
    steps = steps or DEFAULT_STEPS
    period = T.stream_period(model.int, xs) if xs is not None else None
    plan = model.plan(steps, period, spec, bits=max((input_bits(x) for x in (xs or {}).values()), default=0))
    check_network(plan, spec)
    res = network_resources(plan, spec)
    for name, layer in model.int.layers.items():  # the host's readout: spikes sent out, or v read every step
        res.layers.append(LayerResources(f"readout {name}", "SpikeRecorder" if layer.spiking else "VarRecorder",
                                         placement="host", ops=layer.size * steps))
    placement = place(res, spec)
    board = _chosen_board(board, spec, placement)
    check_fits(res, placement, spec, board)
    energy = activity = None
    if xs is not None:
        run = T.run_fast(model.int, xs)
        B = next(iter(xs.values())).shape[0]
        sent: dict[str, np.ndarray] = {**xs, T.ONE: np.ones((B, steps, 1), np.int64)}
        for name, groups in plan.groups.items():
            values = run.values[name].reshape(B, steps, -1)
            for pname, idx in groups:
                sent[pname] = values[..., idx] if model.int.layers[name].spiking else np.zeros((B, steps, len(idx)))
        energy = temporal_energy(plan, sent, spec)
        activity = [{"layer": name, "neurons": layer.size, "firing_rate": float(run.values[name].mean()),
                     "mean_count": float(run.values[name].reshape(B, steps, -1).sum(axis=1).mean()),
                     "sparsity": float((run.values[name].reshape(B, steps, -1).sum(axis=1) == 0).mean())}
                    for name, layer in model.int.layers.items() if layer.spiking]
    return Build(model, spec, board, res, placement, energy, activity, plan, describe(plan))  # type: ignore[arg-type]
