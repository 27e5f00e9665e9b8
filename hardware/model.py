"""An integer graph read and checked once, ready for every backend: ``IntegerModel``.

The CLI, the pipeline and the Python API read an integer NIR file once and
hand this object around: ``simulate`` and ``compile`` accept it, and it keeps
what each backend prepares (the fast simulator's typed steps, the Lava
network) for the next batch.
"""

from __future__ import annotations

from functools import cached_property

import nir
import torch

from ..errors import LensNetDeployError
from ..export import ops as O
from ..export.ir import Graph
from .integer import ops as I
from .integer.int_nir import from_int_nir, to_int_nir
from .integer.result import SimResult
from .integer.rules import check_integer_graph
from .loihi.plan import NetworkPlan
from .target.chips import Target, load_target

BACKENDS = ("fast", "reference", "lava")


class IntegerModel:
    """An integer IR graph (from a NIR graph or from ``quantize``) with its backends."""

    def __init__(self, graph: nir.NIRGraph | Graph) -> None:
        if isinstance(graph, Graph):
            self.ir, self._nir = graph, None
        else:
            self.ir, self._nir = from_int_nir(graph), graph
        check_integer_graph(self.ir)

    @classmethod
    def of(cls, graph: IntegerModel | nir.NIRGraph | Graph) -> IntegerModel:
        return graph if isinstance(graph, IntegerModel) else cls(graph)

    @property
    def nir(self) -> nir.NIRGraph:
        if self._nir is None:
            self._nir = to_int_nir(self.ir)
        return self._nir

    @property
    def input_size(self) -> tuple[int, int]:
        _, h, w = self.ir.nodes["input"].shape
        return h, w

    @property
    def layer_order(self) -> list[str]:
        """Every computing node in graph order (for layer-by-layer comparisons)."""
        return [n.name for n in self.ir if not isinstance(n.op, O.Input | I.IntOutput)]

    @cached_property
    def fast(self):
        from .integer.fast_sim import FastSimulator

        return FastSimulator(self.ir)

    def simulate(self, images: torch.Tensor, backend: str = "fast", keep: bool = False) -> SimResult:
        """Run ``images`` (ImageNet-normalised B×3×H×W) on ``backend``; ``keep`` returns every node's
        integers (the Lava network: every node it holds in a neuron or a process of ours)."""
        if backend not in BACKENDS:
            raise LensNetDeployError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
        if backend == "fast":
            return self.fast(images, keep=keep)
        if backend == "reference":
            from .integer.reference import simulate_reference

            return simulate_reference(self.ir, images, keep=keep)
        return self.lava(capacity=len(images)).run(images, keep=keep)

    @property
    def target(self) -> str:
        """The target the graph was quantized for (recorded by ``quantize``)."""
        return str((self.ir.integer or {}).get("target", "loihi2"))

    def plan(self, target: str | Target | None = None) -> NetworkPlan:
        """The graph's Loihi network (``loihi.lower``) for ``target`` (default: the graph's own),
        built once and shared by ``compile``, the Lava backend and ``deploy``."""
        from .loihi.lower import build_plan

        spec = load_target(self.target if target is None else target)
        plans = self.__dict__.setdefault("_plans", {})
        held = plans.get(spec.name)
        if held is None or held[0] != spec:
            held = plans[spec.name] = (spec, build_plan(self.ir, spec))
        return held[1]

    def use_plan(self, plan: NetworkPlan) -> None:
        """Adopt a plan read back from a build folder (``load_build``) instead of lowering again."""
        self.__dict__.setdefault("_plans", {})[plan.target] = (load_target(plan.target), plan)

    def lava(self, target: str | None = None, capacity: int = 8):
        """The Loihi 2 network of this graph on Lava's CPU simulator, built once and kept (closed
        when the program ends); a larger batch than it holds runs in several passes."""
        from .lava.runner import LavaNetwork

        net = self.__dict__.get("_lava")
        if net is None:
            net = self.__dict__["_lava"] = LavaNetwork(self.plan(target), capacity=max(1, capacity))
        return net

    def close(self) -> None:
        """Stop the Lava network, if one runs."""
        net = self.__dict__.pop("_lava", None)
        if net is not None:
            net.close()


def lava_network(
    int_graph: IntegerModel | nir.NIRGraph | Graph,
    target: str | Target | None = None,
    capacity: int = 8,
    runtime: str = "threads",
    progress=None,
):
    """The Loihi 2 network of an integer graph (a NIR graph, an IR graph or an ``IntegerModel``) on
    Lava's CPU simulator: Lava's library processes on neuro-cores, ours on embedded cores and the
    host (its plan: ``IntegerModel.plan``, for ``target`` or the one the graph was quantized for).
    Importing Lava waits until the network is first run or its ``processes`` are asked for."""
    from .lava.runner import LavaNetwork

    return LavaNetwork(IntegerModel.of(int_graph).plan(target), capacity, runtime, progress)


class TemporalModel:
    """An integer model of a NIR graph with time (integer semantics v4) with the same doors as
    ``IntegerModel``: ``simulate`` on every backend, the Loihi network ``plan``, its ``target``."""

    def __init__(self, graph) -> None:
        from .integer.temporal import TemporalIntModel
        from .integer.temporal_nir import from_nir

        self.int = graph if isinstance(graph, TemporalIntModel) else from_nir(graph)
        self._nir = None if isinstance(graph, TemporalIntModel) else graph

    @property
    def nir(self) -> nir.NIRGraph:
        if self._nir is None:
            from .integer.temporal_nir import to_nir

            self._nir = to_nir(self.int)
        return self._nir

    @property
    def target(self) -> str:
        return "loihi2"

    @property
    def input_size(self) -> tuple[int, ...]:
        """The input's shape (one input) or its neurons (several)."""
        shapes = list(self.int.inputs.values())
        return tuple(shapes[0]) if len(shapes) == 1 else (sum(int(torch.tensor(s).prod()) for s in shapes),)

    def simulate(self, inputs, backend: str = "fast", period: int | None = None, runtime: str = "threads",
                 seconds: dict | None = None, progress=None):
        """Input sequences (B×T×shape) on ``backend``: an ``IntRun`` (every layer's values per step)."""
        from .integer import temporal as T

        if backend not in BACKENDS:
            raise LensNetDeployError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
        if backend == "lava":
            from .lava.temporal import run_lava

            return run_lava(self.int, inputs, period=period, runtime=runtime, seconds=seconds, progress=progress)
        return (T.run_fast if backend == "fast" else T.run_reference)(self.int, inputs, period=period)

    def plan(self, steps: int, period: int | None = None, target: str | Target | None = None,
             bits: int = 0) -> NetworkPlan:
        """The Loihi 2 network that streams samples of ``steps`` steps (``loihi.temporal``)."""
        from .loihi.temporal import temporal_plan

        return temporal_plan(self.int, steps, period, load_target(self.target if target is None else target), bits)
