"""Run an integer IR graph on Lava's CPU simulator (``Loihi2SimCfg(select_tag="fixed_pt")``).

Every IR node becomes one Lava process (``lava_backend``): residual joins are
identity processes whose input port sums every connection, as Lava sums
several OutPorts into one InPort. Each of our processes computes and sends
within the same timestep, so with them alone the feed-forward graph settles
in one step: the first valid output is step 1. With ``synapses="sparse"`` or
``"conv"`` the convolutions run as Lava's own synapse processes, one step of
latency each, and the run lasts ``settling_steps`` (computed from the graph).
Processes are stopped even when the run fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import LensNetDeployError
from ..export import ops as O
from ..export.ir import Graph
from . import ops as I
from .semantics import centred_pixels


@dataclass
class LavaRun:
    raw: tuple[np.ndarray, ...]
    spike_counts: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    processes: int = 0
    values: dict[str, np.ndarray] = field(default_factory=dict)  # every node (with keep=True)
    steps: int = 1  # timesteps run until every value settled


def settling_steps(graph: Graph, delayed: set[str]) -> int:
    """Steps until every node holds its final value: 1 + the most one-step-latency
    nodes (Lava synapses) on any path from the input. The source sends the same
    image every step and every other process is stateless, so a node is final one
    step after its slowest operand is."""
    latency: dict[str, int] = {}
    for n in graph:
        latency[n.name] = max((latency[i] for i in n.inputs), default=0) + (n.name in delayed)
    return 1 + max(latency.values(), default=0)


def simulate_lava(graph: Graph, image: torch.Tensor, keep: bool = False, synapses: str = "own",
                  steps: int | None = None) -> LavaRun:
    """One image (3×H×W or 1×3×H×W, ImageNet-normalised) through Lava, bit-exact to the integer semantics.

    ``synapses``: ``own`` runs every convolution in our fixed_pt process (no latency);
    ``sparse`` / ``conv`` run them as Lava's own ``Sparse`` / ``Conv`` processes
    (``lava_synapses``; one step of latency each, the bias added by a process after
    them) and the run lasts ``settling_steps`` (``steps`` overrides it, for tests)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from .. import lava_compat

    lava_compat.install()
    from .lava_backend.processes import IntOp1, IntOp2, IntOp3, IntSource
    from .lava_synapses import SYNAPSE_ROUTES, connect_synapse

    if graph.integer is None:
        raise LensNetDeployError("the Lava backend needs an integer graph: run quantize first")
    if synapses not in SYNAPSE_ROUTES:
        raise LensNetDeployError(f"unknown synapse route {synapses!r} (available: {', '.join(SYNAPSE_ROUTES)})")
    x = image if image.dim() == 4 else image[None]
    if x.shape[0] != 1:
        raise LensNetDeployError("the Lava backend runs one image at a time")
    pixels = centred_pixels(x)[0].numpy()
    procs: dict = {}
    extra = 0
    delayed = {n.name for n in graph.of(I.IntConv)} if synapses != "own" else set()
    kinds = {1: IntOp1, 2: IntOp2, 3: IntOp3}
    for n in graph:
        if isinstance(n.op, O.Input):
            procs[n.name] = IntSource(data=pixels, name="input")
        elif n.name in delayed:
            src = graph.nodes[n.inputs[0]]
            proc = IntOp1(in_shapes=[n.shape], out_shape=n.shape, op=("bias", n.op.b_int), name=n.name)
            connect_synapse(synapses, n, src.shape, procs[src.name].out, proc.in0)
            procs[n.name] = proc
            extra += 1
        elif not isinstance(n.op, I.IntOutput):
            join = isinstance(n.op, O.Add)
            in_shapes = [n.shape] if join else [graph.nodes[i].shape for i in n.inputs]
            proc = kinds[len(in_shapes)](in_shapes=in_shapes, out_shape=n.shape, op=n.op, name=n.name)
            ports = [proc.in0] * len(n.inputs) if join else [getattr(proc, f"in{k}") for k in range(len(n.inputs))]
            for src, port in zip(n.inputs, ports):
                procs[src].out.connect(port)
            procs[n.name] = proc
    steps = settling_steps(graph, delayed) if steps is None else steps
    start = time.perf_counter()
    anchor = procs["input"]
    try:
        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        counts = {n.name: procs[n.name].value.get().astype(np.int64) for n in graph.of(I.IntSpike)}
        raw = tuple(procs[o.inputs[0]].value.get().astype(np.int64) for o in graph.outputs())
        values = {name: p.value.get().astype(np.int64) for name, p in procs.items() if name != "input"} if keep else {}
    finally:
        anchor.stop()
    return LavaRun(raw, counts, time.perf_counter() - start, len(procs) + extra, values, steps)
