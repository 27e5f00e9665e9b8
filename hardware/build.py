"""``compile``: an integer NIR graph → a build for a Loihi target and board (saved as a folder).

A build folder holds the integer graph (``model.q.nir``), ``build.json``
(target, board, totals), ``resources.json`` and ``resources.txt`` (per layer:
neurons, synapses, cores, where it runs), ``placement.json`` and, when
images were given, ``energy.json``. ``load_build`` reads it back for ``deploy``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import torch

from ..atomic import write_text_atomic
from ..errors import LensNetDeployError
from ..export.ir import Graph
from ..export.nir_io import read_nir, write_nir
from .activity import layer_activity, plot_firing_rates
from .energy import EnergyReport, estimate_energy
from .model import IntegerModel
from .resources import LayerResources, Placement, Resources, check_fits, layer_resources, place
from .rules import check_design_rules
from .targets import Target, load_boards, load_target


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

    @property
    def graph(self) -> nir.NIRGraph:
        return self.model.nir

    @property
    def ir(self) -> Graph:
        return self.model.ir

    def summary(self) -> dict[str, Any]:
        return {"target": self.target.name, "board": self.board, "chips": self.placement.chips,
                "cores": self.placement.cores, "lower_bound_chips": self.placement.lower_bound_chips,
                "neurons": self.resources.neurons, "synapses": self.resources.synapses,
                "shared_weights": self.resources.shared_weights,
                "input_size": list(self.model.input_size)}

    def table(self) -> str:
        lines = [f"{'layer':<52}{'runs on':<20}{'neurons':>11}{'synapses':>14}{'cores':>7}{'ops':>14}"]
        for x in self.resources.layers:
            lines.append(f"{x.name[:51]:<52}{x.placement:<20}{x.neurons:>11,}{x.synapses:>14,}{x.cores:>7}"
                         f"{x.ops:>14,}")
        s = self.summary()
        lines.append(f"total: {s['neurons']:,} neurons, {s['synapses']:,} synapses ({s['shared_weights']:,} unique "
                     f"weights), {s['cores']:,} neuro-cores on {s['chips']} {self.target.name} chips "
                     f"(lower bound {s['lower_bound_chips']}), board {self.board}")
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
        if self.energy is not None:
            write_text_atomic(out / "energy.json", json.dumps(self.energy.to_dict(), indent=1, default=float) + "\n")
            write_text_atomic(out / "energy.txt", self.energy.format() + "\n")
        if self.activity:
            write_text_atomic(out / "activity.json", json.dumps(self.activity, indent=1) + "\n")
            plot_firing_rates(self.activity, out / "firing_rates.png",
                              f"firing rates, {self.target.name} build ({len(self.activity)} spike layers)")
        return out


def compile_graph(int_graph: IntegerModel | nir.NIRGraph, target: str | Target = "loihi2",
                  board: str = "kapoho-point", images: torch.Tensor | None = None,
                  share_weights: bool = False) -> Build:
    """Design rules, resources, placement and (with ``images``) energy of an integer graph on ``board``.

    Raises ``DesignRuleError`` when a layer breaks one of the target's rules and
    ``ResourceError`` when the board cannot hold it (naming the layer, the limit,
    the smallest board that can, and the largest input that fits).
    """
    spec = load_target(target)
    boards = load_boards()
    if board not in boards:
        raise LensNetDeployError(f"unknown board {board!r} (known: {', '.join(boards)})")
    model = IntegerModel.of(int_graph)
    ir = model.ir
    check_design_rules(ir, spec)
    res = layer_resources(ir, spec, share_weights)
    placement = place(res, spec, share_weights)
    check_fits(res, placement, spec, board,
               resize=lambda size: layer_resources(rescaled(ir, size), spec, share_weights))
    energy = activity = None
    if images is not None:
        counts = model.simulate(images).spike_counts
        energy = estimate_energy(ir, counts, spec)
        activity = layer_activity(ir, counts)
    return Build(model, spec, board, res, placement, energy, activity)


def load_build(folder: str | os.PathLike[str]) -> Build:
    """A build folder as ``compile`` saved it (read, not recompiled)."""
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
        energy = EnergyReport(**json.loads((folder / "energy.json").read_text())) \
            if (folder / "energy.json").exists() else None
        activity = json.loads((folder / "activity.json").read_text()) if (folder / "activity.json").exists() else None
        target, board = meta["target"], meta["board"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise LensNetDeployError(f"{folder}: incomplete or damaged build folder ({err})") from None
    model = IntegerModel(read_nir(folder / "model.q.nir"))
    return Build(model, load_target(target), board, Resources(layers), placement, energy, activity)
