"""What an exported NIR graph contains: nodes by type, parameters, neurons, synaptic
operations, and how much of it is standard NIR (the rest uses the lensnet convention)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import nir
import numpy as np

from . import convention as C


@dataclass
class GraphSummary:
    nodes_by_type: dict[str, int] = field(default_factory=dict)
    parameters: int = 0
    spike_layers: int = 0
    spike_neurons: int = 0
    synops_standard: int = 0
    synops_extension: int = 0
    nodes_standard: int = 0
    nodes_extension: int = 0
    extension_nodes: list[tuple[str, str, int]] = field(default_factory=list)  # name, op, synops

    @property
    def synops(self) -> int:
        return self.synops_standard + self.synops_extension

    @property
    def standard_synop_share(self) -> float:
        return self.synops_standard / self.synops if self.synops else 1.0

    @property
    def standard_node_share(self) -> float:
        total = self.nodes_standard + self.nodes_extension
        return self.nodes_standard / total if total else 1.0

    def to_dict(self) -> dict:
        return {"nodes_by_type": self.nodes_by_type, "parameters": self.parameters,
                "spike_layers": self.spike_layers, "spike_neurons": self.spike_neurons,
                "synops": self.synops, "synops_standard": self.synops_standard,
                "standard_synop_share": self.standard_synop_share, "standard_node_share": self.standard_node_share,
                "extension_nodes": [{"name": n, "op": op, "synops": s} for n, op, s in self.extension_nodes]}

    def format(self) -> str:
        types = ", ".join(f"{k} {v}" for k, v in sorted(self.nodes_by_type.items()))
        lines = [
            f"nodes       {sum(self.nodes_by_type.values())} ({types})",
            f"parameters  {self.parameters:,}",
            f"neurons     {self.spike_neurons:,} multi-spike neurons in {self.spike_layers} layers",
            f"synops      {self.synops:,} per image (multiply-accumulates of weighted connections)",
            f"standard    {100 * self.standard_synop_share:.2f} % of synaptic operations, "
            f"{100 * self.standard_node_share:.2f} % of nodes in standard NIR primitives",
        ]
        if self.extension_nodes:
            ops = Counter(op for _, op, _ in self.extension_nodes)
            lines.append("extension   " + ", ".join(f"{op} ×{n}" for op, n in sorted(ops.items()))
                         + " (lensnet convention v1)")
            for name, op, s in self.extension_nodes:
                lines.append(f"    {name:<48} {op:<17} {s:>14,} synops")
        return "\n".join(lines)


def _shape(types: dict) -> tuple[int, ...]:
    return tuple(int(v) for v in next(iter(types.values())))


def _numel(types: dict) -> int:
    return int(np.prod(_shape(types)))


def _extension_synops(graph: nir.NIRGraph, ext: dict, out: tuple[int, ...]) -> int:
    op = ext["op"]
    shapes = [_shape(graph.nodes[p].output_type) for p in ext["operands"]]
    if op == "attention":
        (q, _, v), heads = shapes, int(ext["heads"])
        tokens = q[1] * q[2]
        return 2 * tokens * (q[0] // heads) * (v[0] // heads) * heads
    if op == "gate":
        return int(np.prod(out))
    if op == "bilinear":
        return 4 * int(np.prod(out))
    if op in ("sigmoid", "global_maxpool"):
        return int(np.prod(shapes[0]))
    return 0  # nearest upsampling relays spikes


def summarize(graph: nir.NIRGraph) -> GraphSummary:
    s = GraphSummary()
    types: Counter[str] = Counter()
    ports = {name for name, node in graph.nodes.items() if C.port_info(node) is not None}
    for name, node in graph.nodes.items():
        ext = C.ext_info(node)
        if ext is not None:
            types[f"ext:{ext['op']}"] += 1
            synops = _extension_synops(graph, ext, _shape(node.output_type))
            s.extension_nodes.append((name, ext["op"], synops))
            s.synops_extension += synops
            s.nodes_extension += 1
            continue
        if name in ports:
            types["ext:port"] += 1
            s.nodes_extension += 1
            continue
        types[type(node).__name__] += 1
        s.nodes_standard += 1
        if isinstance(node, (nir.Conv2d, nir.Conv1d)):
            groups = int((node.metadata or {}).get(C.GROUPS_KEY, node.groups))
            w = np.asarray(node.weight)
            fan_in = (w.shape[1] // groups if int(node.groups) == 1 else w.shape[1]) * int(np.prod(w.shape[2:]))
            s.synops_standard += _numel(node.output_type) * fan_in
            s.parameters += w.shape[0] * fan_in + int(np.asarray(node.bias).size)
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight)
            s.synops_standard += int(w.size)
            s.parameters += int(w.size) + (int(np.asarray(node.bias).size) if isinstance(node, nir.Affine) else 0)
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            s.synops_standard += _numel(node.output_type) * int(np.prod(np.atleast_1d(node.kernel_size)))
        elif isinstance(node, nir.Threshold) and C.spike_info(node) is not None:
            if C.spike_info(node)["plane"] == 1:
                s.spike_layers += 1
                s.spike_neurons += int(np.prod(np.shape(node.threshold)))
    s.nodes_by_type = dict(types)
    return s
