"""The float reference of NIR graphs with time: any graph of NIR's standard primitives over T steps.

A NIR graph carries no time step, so the caller gives ``dt`` and a discretisation (docs/nir.md):

- ``euler`` (what Norse's and snnTorch's importers do): one forward-Euler step,
  ``v ← v + dt/τ · (v_leak − v + R·I)``;
- ``exact`` (zero-order hold, the NIR paper's reference): the input held over the step,
  ``v ← v_leak + R·I + (v − v_leak − R·I) · exp(−dt/τ)``.

CubaLIF/CubaLI update the current first, ``I ← I + dt/τ_syn · (w_in·x − I)`` (or its exact form),
and the voltage reads the updated current (as Norse, snnTorch and Loihi's CUBA neuron do). IF and I
integrate ``v ← v + dt·R·x``. A spiking neuron fires where ``v > v_threshold`` and then resets to
``v_reset`` (0 when the graph has none), or subtracts ``v_threshold`` (``reset="subtract"``, or the
graph metadata ``{"reset": "subtract"}``). ``Delay`` delays by ``round(τ/dt)`` steps (τ must be a
whole number of steps). Within a step the graph runs feed-forward in topological order; an edge
that closes a cycle (a back edge) delivers its source's value of the previous step, as nirtorch
does. A cycle with no state on it (an algebraic loop) is refused.

``Flatten`` counts its dimensions without the batch, as NIR's own type inference does (a
``Flatten(start_dim=0)`` of C×H×W gives C·H·W); Norse passes them to ``torch.nn.Flatten`` as they
are, so it flattens the batch into such a file's vectors and cannot run it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GraphError

METHODS = ("euler", "exact")
RESETS = ("zero", "subtract")
STATEFUL = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I, nir.Delay)
SPIKING = (nir.LIF, nir.CubaLIF, nir.IF, nir.Threshold)
PRIMITIVES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d,
              nir.AvgPool2d, nir.Flatten, nir.Delay, nir.Threshold, nir.I, nir.IF, nir.LI, nir.LIF, nir.CubaLI,
              nir.CubaLIF)
TEMPORAL = STATEFUL  # a graph needs time when something in it keeps state (Threshold alone is static)


def is_temporal(graph: nir.NIRGraph) -> bool:
    """A graph of NIR's standard primitives with at least one neuron, integrator or delay (the graphs
    other tools write), as opposed to this tool's LENS-Net files and static graphs of convolutions and
    thresholds (``run_nir`` runs those in one pass)."""
    from .convention import uses_convention

    nodes = graph.nodes.values()
    return not uses_convention(graph) and any(isinstance(n, TEMPORAL) for n in nodes) and \
        all(isinstance(n, PRIMITIVES) for n in nodes)


@dataclass
class TemporalRun:
    """One run: every Output node's values (B×T×shape), every spiking node's spikes (B×T×shape),
    and every node's state variables at the last step when asked for."""

    outputs: dict[str, torch.Tensor]
    spikes: dict[str, torch.Tensor]
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    voltages: dict[str, torch.Tensor] = field(default_factory=dict)  # per neuron node, v after each step

    @property
    def spike_counts(self) -> dict[str, torch.Tensor]:
        """Per spiking node, spikes summed over time (B×shape)."""
        return {k: v.sum(dim=1) for k, v in self.spikes.items()}


# --- reading the graph ------------------------------------------------------------------------------
def _array(node_name: str, node: Any, key: str, dtype=np.float64) -> np.ndarray:
    value = getattr(node, key, None)
    if value is None:
        raise GraphError(f"node {node_name}: parameter {key} is missing")
    try:
        a = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise GraphError(f"node {node_name}: parameter {key} is not numeric ({type(value).__name__})") from None
    if not np.isfinite(a).all():
        raise GraphError(f"node {node_name}: parameter {key} is not finite (NaN or Inf)")
    return a


def _positive(node_name: str, node: Any, key: str) -> np.ndarray:
    a = _array(node_name, node, key)
    if (a <= 0).any():
        raise GraphError(f"node {node_name}: {key} must be > 0, got {float(a.min()):g}")
    return a


def _shape(t: Any) -> tuple[int, ...] | None:
    """A NIR port's shape (an input_type/output_type entry), or None when the file has none."""
    if t is None:
        return None
    a = np.asarray(t).reshape(-1)
    return tuple(int(x) for x in a) if a.size else None


def _edges(graph: nir.NIRGraph) -> list[tuple[str, str]]:
    out = []
    for src, dst in graph.edges:
        s, d = src.split(".")[0], dst.split(".")[0]
        for name in (s, d):
            if name not in graph.nodes:
                raise GraphError(f"edge {src} -> {dst}: no node {name}")
        out.append((s, d))
    return out


def _order(graph: nir.NIRGraph, edges: list[tuple[str, str]]) -> tuple[list[str], set[tuple[str, str]]]:
    """A topological order of the graph without its back edges, and the back edges (depth-first
    from the inputs, in the file's node order)."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for s, d in edges:
        succ[s].append(d)
    state: dict[str, int] = {}
    post: list[str] = []
    back: set[tuple[str, str]] = set()
    starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)] + list(graph.nodes)
    for start in starts:
        if start in state:
            continue
        stack = [(start, iter(succ[start]))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                post.append(node)
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return post[::-1], back


def _check_loops(graph: nir.NIRGraph, edges: list[tuple[str, str]]) -> None:
    """Refuse a cycle with no state on it: without stateful nodes, the rest must be acyclic."""
    stateless = {n for n, node in graph.nodes.items() if not isinstance(node, STATEFUL)}
    succ: dict[str, list[str]] = {n: [] for n in stateless}
    indeg = dict.fromkeys(stateless, 0)
    for s, d in edges:
        if s in stateless and d in stateless:
            succ[s].append(d)
            indeg[d] += 1
    ready = [n for n, k in indeg.items() if k == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for d in succ[n]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    if seen < len(stateless):
        loop = sorted(n for n, k in indeg.items() if k > 0)
        raise GraphError(f"nodes {', '.join(loop[:4])}: an algebraic loop (a cycle with no neuron, "
                         "integrator or delay on it)")


# --- one step per primitive -----------------------------------------------------------------------
class _Node:
    """A primitive's step: ``step(x, state) -> (y, state)`` on batched tensors."""

    spiking = False

    def __init__(self, name: str, node: Any, dt: float, method: str, reset: str) -> None:
        self.name, self.node, self.dt, self.method, self.reset = name, node, dt, method, reset

    def t(self, key: str, positive: bool = False) -> torch.Tensor:
        a = _positive(self.name, self.node, key) if positive else _array(self.name, self.node, key)
        return torch.from_numpy(a)

    def init(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def step(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        raise NotImplementedError


class _Identity(_Node):
    def step(self, x, state):
        return x


class _Affine(_Node):
    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.w = self.t("weight")
        if self.w.ndim != 2:
            raise GraphError(f"node {self.name}: weight must be 2-D (out × in), got shape {tuple(self.w.shape)}")
        self.b = self.t("bias") if isinstance(self.node, nir.Affine) else None
        if self.b is not None and self.b.shape[-1] != self.w.shape[0]:
            raise GraphError(f"node {self.name}: bias of {self.b.shape[-1]} for {self.w.shape[0]} outputs")

    def step(self, x, state):
        if x.shape[-1] != self.w.shape[1]:
            raise GraphError(f"node {self.name}: weight takes {self.w.shape[1]} inputs, gets {x.shape[-1]} "
                             f"(input shape {tuple(x.shape[1:])})")
        y = x @ self.w.T
        return y + self.b if self.b is not None else y


class _Scale(_Node):
    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.s = self.t("scale")

    def step(self, x, state):
        return x * self.s


def _pair(v: Any, n: int) -> tuple[int, ...]:
    a = np.asarray(v).reshape(-1)
    return tuple(int(x) for x in (np.repeat(a, n) if a.size == 1 else a[:n]))


class _Conv(_Node):
    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.w, self.b = self.t("weight"), self.t("bias")
        self.dims = 1 if isinstance(self.node, nir.Conv1d) else 2
        if self.w.ndim != self.dims + 2:
            raise GraphError(f"node {self.name}: a Conv{self.dims}d weight must be {self.dims + 2}-D, "
                             f"got shape {tuple(self.w.shape)}")
        self.stride = _pair(self.node.stride, self.dims)
        self.dilation = _pair(self.node.dilation, self.dims)
        self.groups = int(self.node.groups)
        pad = self.node.padding
        self.padding = pad if isinstance(pad, str) else _pair(pad, self.dims)

    def step(self, x, state):
        if x.shape[1] != self.w.shape[1] * self.groups:
            raise GraphError(f"node {self.name}: weight takes {self.w.shape[1] * self.groups} channels, "
                             f"gets {x.shape[1]} (input shape {tuple(x.shape[1:])})")
        conv = F.conv1d if self.dims == 1 else F.conv2d
        b = self.b.reshape(-1) if self.b.numel() == self.w.shape[0] else None
        y = conv(x, self.w, b, self.stride, self.padding, self.dilation, self.groups)
        return y if b is not None else y + self.b


class _Pool(_Node):
    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.k = _pair(self.node.kernel_size, 2)
        self.s = _pair(self.node.stride, 2)
        self.p = _pair(self.node.padding, 2)

    def step(self, x, state):
        y = F.avg_pool2d(x, self.k, self.s, self.p, count_include_pad=True)
        return y * (self.k[0] * self.k[1]) if isinstance(self.node, nir.SumPool2d) else y


class _Flatten(_Node):
    def step(self, x, state):
        start, end = int(self.node.start_dim), int(self.node.end_dim)
        return torch.flatten(x, start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)


class _Threshold(_Node):
    spiking = True

    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.theta = self.t("threshold")

    def step(self, x, state):
        return (x > self.theta).to(x.dtype)


class _Delay(_Node):
    def __init__(self, *a) -> None:
        super().__init__(*a)
        tau = _array(self.name, self.node, "delay")
        if (tau < 0).any():
            raise GraphError(f"node {self.name}: delay must be ≥ 0, got {float(tau.min()):g}")
        steps = tau / self.dt
        self.steps = np.rint(steps).astype(np.int64)
        if not np.allclose(steps, self.steps, rtol=0, atol=1e-6):
            raise GraphError(f"node {self.name}: delay {float(tau.reshape(-1)[0]):g} is not a whole number of "
                             f"steps of dt = {self.dt:g}")
        self.depth = int(self.steps.max(initial=0))

    def init(self, x):
        return {"fifo": torch.zeros((self.depth + 1, *x.shape), dtype=x.dtype)}

    def step(self, x, state):
        fifo = torch.roll(state["fifo"], 1, dims=0)
        fifo[0] = x
        state["fifo"] = fifo
        if self.steps.size == 1:
            return fifo[int(self.steps.reshape(-1)[0])]
        idx = torch.from_numpy(np.broadcast_to(self.steps, x.shape[1:]).copy())
        return torch.gather(fifo, 0, idx.expand(x.shape)[None]).squeeze(0)


class _Neuron(_Node):
    """LI, LIF, I, IF, CubaLI, CubaLIF: a current stage (Cuba), a voltage stage, optional spikes."""

    def __init__(self, *a) -> None:
        super().__init__(*a)
        n = self.node
        self.cuba = isinstance(n, nir.CubaLI | nir.CubaLIF)
        self.leaky = not isinstance(n, nir.I | nir.IF)
        self.spiking = isinstance(n, nir.LIF | nir.CubaLIF | nir.IF)
        self.r = self.t("r")
        if self.cuba:
            self.w_in = self.t("w_in")
            self.tau_syn = self.t("tau_syn", positive=True)
        if self.leaky:
            self.tau = self.t("tau_mem" if self.cuba else "tau", positive=True)
            self.v_leak = self.t("v_leak")
        if self.spiking:
            self.theta = self.t("v_threshold")
            self.v_reset = self.t("v_reset") if getattr(n, "v_reset", None) is not None else torch.zeros(())

    def init(self, x):
        z = torch.zeros_like(x)
        return {"v": z.clone(), **({"i": z.clone()} if self.cuba else {})}

    def _decay(self, tau: torch.Tensor, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One step of ``τ·dv/dt = target − v`` from ``value``."""
        if self.method == "exact":
            return target + (value - target) * torch.exp(-self.dt / tau)
        return value + self.dt / tau * (target - value)

    def step(self, x, state):
        if self.cuba:
            state["i"] = self._decay(self.tau_syn, state["i"], self.w_in * x)
            x = state["i"]
        if self.leaky:
            v = self._decay(self.tau, state["v"], self.v_leak + self.r * x)
        else:
            v = state["v"] + self.dt * self.r * x
        if not self.spiking:
            state["v"] = v
            return v
        z = (v > self.theta).to(v.dtype)
        if self.reset == "subtract":
            state["v"] = v - z * self.theta
        else:
            state["v"] = torch.where(z > 0, self.v_reset.to(v.dtype).expand_as(v), v)
        return z


STEPS: dict[type, type[_Node]] = {
    nir.Input: _Identity, nir.Output: _Identity, nir.Affine: _Affine, nir.Linear: _Affine, nir.Scale: _Scale,
    nir.Conv1d: _Conv, nir.Conv2d: _Conv, nir.SumPool2d: _Pool, nir.AvgPool2d: _Pool, nir.Flatten: _Flatten,
    nir.Delay: _Delay, nir.Threshold: _Threshold, nir.I: _Neuron, nir.IF: _Neuron, nir.LI: _Neuron,
    nir.LIF: _Neuron, nir.CubaLI: _Neuron, nir.CubaLIF: _Neuron,
}


def graph_reset(graph: nir.NIRGraph, reset: str | None) -> str:
    """The reset a run uses: the caller's, else the graph metadata's ``reset``, else to ``v_reset``."""
    chosen = reset or str((graph.metadata or {}).get("reset", "zero"))
    if chosen not in RESETS:
        raise GraphError(f"unknown reset {chosen!r} (available: {', '.join(RESETS)})")
    return chosen


def input_nodes(graph: nir.NIRGraph) -> list[str]:
    names = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if not names:
        raise GraphError("the graph has no Input node")
    return names


def input_shape(graph: nir.NIRGraph, name: str) -> tuple[int, ...] | None:
    node = graph.nodes[name]
    return _shape(next(iter(node.input_type.values()), None))


def run_temporal(graph: nir.NIRGraph, inputs: torch.Tensor | np.ndarray | Mapping[str, Any], dt: float,
                 method: str = "euler", reset: str | None = None, keep_states: bool = False,
                 record_voltages: bool = False) -> TemporalRun:
    """Run ``graph`` on ``inputs`` (B×T×(input shape), or one such array per Input node) with time
    step ``dt``; float64 throughout. ``record_voltages``: every neuron's v after each step."""
    if method not in METHODS:
        raise GraphError(f"unknown method {method!r} (available: {', '.join(METHODS)})")
    if not (np.isfinite(dt) and dt > 0):
        raise GraphError(f"dt must be a positive number, got {dt}")
    reset = graph_reset(graph, reset)
    for name, node in graph.nodes.items():
        if not isinstance(node, PRIMITIVES):
            raise GraphError(f"node {name}: {type(node).__name__} is not a primitive this tool runs in time "
                             f"({', '.join(sorted(p.__name__ for p in PRIMITIVES))})")
    names = input_nodes(graph)
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise GraphError(f"the graph has {len(names)} Input nodes: give one array per node")
        inputs = {names[0]: inputs}
    xs: dict[str, torch.Tensor] = {}
    for name in names:
        if name not in inputs:
            raise GraphError(f"no input for Input node {name}")
        x = torch.as_tensor(np.asarray(inputs[name]), dtype=torch.float64)
        want = input_shape(graph, name)
        if want is not None and len(want) > 1 and want[0] == 1 and tuple(x.shape[2:]) == want[1:]:
            want = want[1:]  # an exporter that kept its example's batch of 1 in the Input (Norse 1.1.0)
        if x.ndim < 2 or (want is not None and tuple(x.shape[2:]) != want):
            raise GraphError(f"input {name}: expected B×T×{'×'.join(map(str, want or ()))}, got "
                             f"{'×'.join(map(str, x.shape))}")
        if not torch.isfinite(x).all():
            raise GraphError(f"input {name}: not finite (NaN or Inf)")
        xs[name] = x
    steps_T = {x.shape[1] for x in xs.values()}
    batch = {x.shape[0] for x in xs.values()}
    if len(steps_T) != 1 or len(batch) != 1:
        raise GraphError("inputs of different batch sizes or lengths")
    T, B = steps_T.pop(), batch.pop()
    edges = _edges(graph)
    _check_loops(graph, edges)
    order, back = _order(graph, edges)
    preds: dict[str, list[tuple[str, bool]]] = {n: [] for n in graph.nodes}
    for s, d in edges:
        preds[d].append((s, (s, d) in back))
    steps = {n: STEPS[type(graph.nodes[n])](n, graph.nodes[n], float(dt), method, reset) for n in order}
    value: dict[str, torch.Tensor] = {}
    prev: dict[str, torch.Tensor] = {}
    states: dict[str, dict] = {}
    outputs = {n: [] for n, node in graph.nodes.items() if isinstance(node, nir.Output)}
    spikes = {n: [] for n in order if steps[n].spiking or isinstance(graph.nodes[n], nir.Threshold)}
    voltages = {n: [] for n in order if record_voltages and isinstance(steps[n], _Neuron)}
    for t in range(T):
        value = {}
        for n in order:
            node = graph.nodes[n]
            if isinstance(node, nir.Input):
                x = xs[n][:, t]
            else:
                parts = []
                for s, is_back in preds[n]:
                    src = prev if is_back else value
                    if s not in src:
                        if not is_back:
                            raise GraphError(f"node {n}: its input {s} has no value (unconnected?)")
                        continue  # a back edge at the first step: zeros, once the shape is known
                    parts.append(src[s])
                if not parts:
                    raise GraphError(f"node {n}: no input (an unconnected node, or a loop with no entry)")
                try:
                    x = parts[0] if len(parts) == 1 else torch.stack(torch.broadcast_tensors(*parts)).sum(0)
                except RuntimeError:
                    shapes = ", ".join("×".join(map(str, p.shape[1:])) for p in parts)
                    raise GraphError(f"node {n}: its inputs have different shapes ({shapes})") from None
            if n not in states:
                states[n] = steps[n].init(x)
            try:
                y = steps[n].step(x, states[n])
            except RuntimeError as err:
                raise GraphError(f"node {n}: {type(node).__name__} cannot take an input of shape "
                                 f"{'×'.join(map(str, x.shape[1:]))} ({str(err).splitlines()[0][:120]})") from None
            value[n] = y
            if n in outputs:
                outputs[n].append(y)
            if n in spikes:
                spikes[n].append(y)
            if n in voltages:
                voltages[n].append(states[n]["v"].clone())
        prev = value
    done = {k: torch.stack(v, dim=1) if v else torch.zeros((B, 0)) for k, v in outputs.items()}
    return TemporalRun(done, {k: torch.stack(v, dim=1) for k, v in spikes.items() if v},
                       {k: {s: v.clone() for s, v in st.items()} for k, st in states.items()} if keep_states else {},
                       {k: torch.stack(v, dim=1) for k, v in voltages.items() if v})
