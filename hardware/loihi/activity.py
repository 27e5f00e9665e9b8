"""Per-layer firing rates, activation sparsity and synaptic operations (NeuroBench-style).

- firing rate of a layer: mean integer spike count per neuron divided by D
  (the LENS-Net paper's "firing rate"; × T gives the mean count);
- activation sparsity: the share of neurons that emit no spike (count 0);
- effective synaptic operations: accumulates triggered by non-zero inputs
  (a graded spike triggers its fan-out once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...atomic import atomic_path
from ...export.ir import Graph
from ..integer.ops import IntSpike


def layer_activity(graph: Graph, spike_counts: dict[str, torch.Tensor]) -> list[dict]:
    rows = []
    for n in graph.of(IntSpike):
        if n.name not in spike_counts:
            continue
        c = spike_counts[n.name].double()
        D = n.op.D  # type: ignore[attr-defined]
        rows.append({"layer": n.name, "neurons": int(np.prod(n.shape)), "firing_rate": float(c.mean()) / D,
                     "mean_count": float(c.mean()), "sparsity": float((c == 0).double().mean())})
    return rows


def plot_firing_rates(rows: list[dict], path: str | Path, title: str) -> Path:
    """A bar chart of per-layer firing rates in graph order (like the paper's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r["firing_rate"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.09), 3.6))
    ax.bar(range(len(rates)), rates, width=0.85, color="#3b7dd8")
    ax.set(xlabel="spike layer (graph order: encoder → decoder → heads)", ylabel="firing rate (mean count / D)",
           title=title, xlim=(-1, len(rates)))
    ax.axhline(float(np.mean(rates)) if rates else 0, color="#d8553b", lw=1, ls="--",
               label=f"mean {np.mean(rates):.3f}" if rates else None)
    ax.legend(loc="upper right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
