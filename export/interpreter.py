"""``run_nir``: execute a NIR graph on torch in float64.

Runs our graphs (standard primitives plus the lensnet convention) and plain
static NIR graphs written by other tools (Affine, Linear, Scale, Conv1d/2d,
Flatten, pooling, Threshold). Every node's value is the sum of its incoming
edges (in a fixed order, so results do not depend on the edge order of a
file), then the node's operation. Stateful neurons (LIF, IF, CubaLIF, …) need
a time axis and are refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
import torch
import torch.nn.functional as F

from . import convention as C
from . import kernels as K
from .to_nir import dense_to_grouped

STATEFUL = (nir.LIF, nir.IF, nir.LI, nir.CubaLIF, nir.CubaLI, nir.I, nir.Delay)


@dataclass
class NIRRun:
    """Outputs in order, plus spike counts per neuron layer (when the graph names them)."""

    outputs: tuple[torch.Tensor, ...]
    spike_counts: dict[str, torch.Tensor] = field(default_factory=dict)


def _t(a: np.ndarray) -> torch.Tensor:
    arr = np.asarray(a)
    return torch.from_numpy(np.array(arr, dtype=np.float64, copy=not arr.flags.writeable or arr.dtype != np.float64))


def _pair(v) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return (arr[0], arr[0]) if len(arr) == 1 else (arr[0], arr[1])


def _conv_padding(node, kernel: tuple[int, ...]):
    pad = node.padding
    if isinstance(pad, (str, bytes, np.bytes_)):
        pad = pad.decode() if isinstance(pad, (bytes, np.bytes_)) else pad
        return pad
    return _pair(pad) if len(kernel) == 2 else int(np.atleast_1d(pad)[0])


def _conv2d_weight(node: nir.Conv2d) -> tuple[torch.Tensor, int]:
    """The weight and group count to run: a dense block-diagonal conv marked with
    ``lensnet.groups`` runs grouped (same products, no zero terms)."""
    groups = int((getattr(node, "metadata", None) or {}).get(C.GROUPS_KEY, 1))
    if groups > 1 and int(node.groups) == 1:
        return _t(dense_to_grouped(np.asarray(node.weight), groups)), groups
    return _t(node.weight), int(node.groups)


def _apply(name: str, node: nir.NIRNode, x: torch.Tensor) -> torch.Tensor:
    if isinstance(node, nir.Conv2d):
        w, groups = _conv2d_weight(node)
        return F.conv2d(x, w, _t(node.bias), stride=_pair(node.stride), padding=_conv_padding(node, w.shape[2:]),
                        dilation=_pair(node.dilation), groups=groups)
    if isinstance(node, nir.Conv1d):
        w = _t(node.weight)
        return F.conv1d(x, w, _t(node.bias), stride=int(np.atleast_1d(node.stride)[0]),
                        padding=_conv_padding(node, w.shape[2:]), dilation=int(np.atleast_1d(node.dilation)[0]),
                        groups=int(node.groups))
    if isinstance(node, nir.Threshold):
        return (x > _t(node.threshold)).to(torch.float64)
    if isinstance(node, nir.Affine):
        return x @ _t(node.weight).T + _t(node.bias)
    if isinstance(node, nir.Linear):
        return x @ _t(node.weight).T
    if isinstance(node, nir.Scale):
        return x * _t(node.scale)
    if isinstance(node, nir.Flatten):
        start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return torch.flatten(x, start, end)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        y = F.avg_pool2d(x, k, s, p, count_include_pad=True)
        return y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y
    if isinstance(node, nir.Output):
        return x
    if isinstance(node, STATEFUL):
        raise C.NIRConventionError(f"node {name} is a stateful {type(node).__name__}; run_nir executes static "
                                   f"(single-step) graphs")
    raise C.NIRConventionError(f"node {name}: run_nir cannot execute a {type(node).__name__}")


def _extension(name: str, ext: dict, operands: list[torch.Tensor]) -> torch.Tensor:
    op = ext["op"]
    if op == "attention":
        return K.attention(*operands, heads=int(ext["heads"]), scale=float(ext["scale"]))
    if op == "sigmoid":
        return torch.sigmoid(operands[0])
    if op == "gate":
        return K.gate(operands[0], operands[1], float(ext["scale"]))
    if op == "upsample_nearest":
        return K.upsample_nearest(operands[0], int(ext["factor"]))
    if op == "bilinear":
        return K.bilinear(operands[0], int(ext["factor"]))
    if op == "global_maxpool":
        return K.global_maxpool(operands[0])
    raise C.NIRConventionError(f"node {name}: unknown extension op {op!r}")


def _model_io(graph: nir.NIRGraph) -> tuple[list[str], list[str]]:
    info = C.model_info(graph)
    ports = {n for n, node in graph.nodes.items() if C.port_info(node) is not None}
    exts = {n for n, node in graph.nodes.items() if C.ext_info(node) is not None}
    if info and info.get("outputs"):
        outputs = list(info["outputs"])
    else:
        outputs = sorted(n for n, node in graph.nodes.items() if isinstance(node, nir.Output) and n not in ports)
    inputs = sorted(n for n, node in graph.nodes.items() if isinstance(node, nir.Input) and n not in exts)
    return inputs, outputs


def run_nir_full(graph: nir.NIRGraph, images: torch.Tensor, spikes: bool = True,
                 force: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> NIRRun:
    """Run ``graph`` on ``images`` (B × input shape); outputs in model order plus spike counts.

    ``force`` maps a spike layer to ``(mask, counts)``: where ``mask`` is true
    the layer emits ``counts`` instead of its own. Comparisons use it to
    replay PyTorch's choice at exact rounding ties, so that one tie does not
    change every neuron after it.
    """
    force = force or {}
    if C.INTEGER_KEY in (graph.metadata or {}):
        raise C.NIRConventionError("run_nir executes float graphs; an integer graph runs with "
                                   "lensnet_deploy.simulate")
    inputs, outputs = _model_io(graph)
    if len(inputs) != 1:
        raise C.NIRConventionError(f"run_nir needs exactly one model input node, found {len(inputs)} "
                                   f"({', '.join(inputs) or 'none'})")
    incoming: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        incoming[dst].append(src)
    uses = {name: 0 for name in graph.nodes}
    for src, _ in graph.edges:
        uses[src] += 1
    exts = {name: C.ext_info(node) for name, node in graph.nodes.items()}
    for ext in exts.values():
        for p in (ext or {}).get("operands", []):
            uses[p] += 1
    keep = set(outputs)
    plane_layer = {}
    if spikes or force:
        for name, node in graph.nodes.items():
            info = C.spike_info(node)
            if info is not None:
                plane_layer[name] = info["layer"]
    values: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    images = images.to(torch.float64)

    def release(name: str) -> None:
        uses[name] -= 1
        if uses[name] == 0 and name not in keep:
            values.pop(name, None)

    for name in C.topological_order(graph):
        node = graph.nodes[name]
        ext = exts[name]
        if ext is not None:
            args = [values[p] for p in ext["operands"]]
            values[name] = _extension(name, ext, args)
            for p in ext["operands"]:
                release(p)
            continue
        if name in inputs:
            values[name] = images
            continue
        srcs = sorted(incoming[name])
        if not srcs:
            raise C.NIRConventionError(f"node {name} has no input")
        total = values[srcs[0]]
        for s in srcs[1:]:
            total = total + values[s]
        for s in srcs:
            release(s)
        values[name] = _apply(name, node, total)
        if name in plane_layer and plane_layer[name] in force:
            mask, forced = force[plane_layer[name]]
            k = int(C.spike_info(node)["plane"])
            values[name] = torch.where(mask, (forced >= k).to(torch.float64), values[name])
        if name in plane_layer and spikes:
            layer = plane_layer[name]
            plane = values[name].to(torch.int64)
            counts[layer] = counts[layer] + plane if layer in counts else plane
    return NIRRun(tuple(values[o] for o in outputs), counts)


def run_nir(graph: nir.NIRGraph, images: torch.Tensor, dt: float | None = None, method: str = "euler",
            reset: str | None = None):
    """Execute ``graph`` in float64 on ``images``; for LENS-Net the logits ``(p1, p2, p3, p4)``. A NIR
    graph with time runs on input sequences (B×T×shape) with time step ``dt`` (``export.temporal``):
    the result is a ``TemporalRun`` (every Output node per step, every spiking node's spikes)."""
    from .temporal import is_temporal, run_temporal

    if is_temporal(graph):
        if dt is None:
            raise C.NIRConventionError("a NIR graph with time carries no time step: give dt")
        return run_temporal(graph, images, dt, method, reset)
    with torch.no_grad():
        return run_nir_full(graph, images, spikes=False).outputs
