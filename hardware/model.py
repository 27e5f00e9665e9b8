"""An integer graph read and checked once, ready for every backend: ``IntegerModel``.

The CLI, the pipeline and the Python API read an integer NIR file once and
hand this object around: ``simulate`` and ``compile`` accept it, and it keeps
what each backend prepares (the fast simulator's typed steps, the Lava
network) for the next batch.
"""

from __future__ import annotations

from functools import cached_property

import nir
import numpy as np
import torch

from ..errors import LensNetDeployError
from ..export import ops as O
from ..export.ir import Graph
from . import ops as I
from .int_nir import from_int_nir, to_int_nir
from .result import SimResult
from .rules import check_integer_graph

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
        from .fast_sim import FastSimulator

        return FastSimulator(self.ir)

    def simulate(self, images: torch.Tensor, backend: str = "fast", keep: bool = False) -> SimResult:
        """Run ``images`` (ImageNet-normalised B×3×H×W) on ``backend``; ``keep`` returns every node's
        integers (the Lava network: every node it holds in a neuron or a process of ours)."""
        if backend not in BACKENDS:
            raise LensNetDeployError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
        if backend == "fast":
            return self.fast(images, keep=keep)
        if backend == "reference":
            from .reference import simulate_reference

            return simulate_reference(self.ir, images, keep=keep)
        return self.lava(capacity=len(images)).run(images, keep=keep)

    def lava(self, target: str = "loihi2", capacity: int = 8):
        """The Loihi 2 network of this graph on Lava's CPU simulator, built once and kept (closed
        when the program ends); a larger batch than it holds runs in several passes."""
        from .lava_run import lava_network

        net = self.__dict__.get("_lava")
        if net is None:
            net = self.__dict__["_lava"] = lava_network(self, target, capacity=max(1, capacity))
        return net

    def close(self) -> None:
        """Stop the Lava network, if one runs."""
        net = self.__dict__.pop("_lava", None)
        if net is not None:
            net.close()

    def node_values(self, image: torch.Tensor, backend: str) -> dict[str, np.ndarray]:
        """Every node's integers for one image on ``backend``."""
        x = image if image.dim() == 4 else image[None]
        run = self.simulate(x[:1], backend, keep=True)
        return {k: v[0].numpy() for k, v in run.values.items()}
