"""Graph rewrite passes: each takes an IR graph and returns a new, equivalent one.

``DEFAULT_PIPELINE`` is the order :func:`lensnet_deploy.export_nir` applies.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir import Graph
from .commute_spike import commute_spike
from .dedupe_spikes import dedupe_spikes
from .fold_batchnorm import fold_batchnorm
from .fold_layer_scale import fold_layer_scale
from .fold_shuffle import fold_shuffle
from .fold_spike_scale import fold_spike_scale

Pass = Callable[[Graph], Graph]

DEFAULT_PIPELINE: tuple[Pass, ...] = (
    fold_batchnorm,
    fold_layer_scale,
    commute_spike,
    dedupe_spikes,
    fold_shuffle,
    fold_spike_scale,
)


def run_passes(graph: Graph, passes: tuple[Pass, ...] = DEFAULT_PIPELINE) -> Graph:
    for p in passes:
        graph = p(graph)
        graph.validate()
    return graph


__all__ = ["DEFAULT_PIPELINE", "commute_spike", "dedupe_spikes", "fold_batchnorm", "fold_layer_scale",
           "fold_shuffle", "fold_spike_scale", "run_passes"]
