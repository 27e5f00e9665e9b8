"""Float vs integer on NIR graphs with time: per graph and per spiking layer, the share of spike values
equal and the output spike-count error (mean |Δcount| / mean count) on random input sequences at
realistic rates, and what the roundings cost: the decay each layer realises (12-bit dv), its weights'
SQNR (16-bit weights as two 8-bit synapses per path, the default), and the count error with one
8-bit synapse per path instead. Prints a markdown table (docs/results.md).

    .venv/bin/python benchmarks/temporal_fidelity.py [--batch 16] [--steps 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nir_graphs import GRAPHS, spike_inputs  # noqa: E402

from lensnet_deploy.export.temporal import run_temporal  # noqa: E402
from lensnet_deploy.hardware.integer.temporal import quantize_temporal, run_fast  # noqa: E402

DT = 1e-3
RATE, AMPLITUDE = 0.2, 2.0  # input spikes per step, graded value of a spike


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    print("| graph | layer | kind | dv realised / ideal | weight SQNR (dB) | spikes equal | "
          "count error | with 8-bit weights |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in sorted(GRAPHS):
        rng = np.random.default_rng(0)
        graph = GRAPHS[name](rng)
        calib = spike_inputs(graph, rng, batch=args.batch, steps=args.steps, rate=RATE, amplitude=AMPLITUDE)
        test = spike_inputs(graph, rng, batch=args.batch, steps=args.steps, rate=RATE, amplitude=AMPLITUDE)
        try:
            model = quantize_temporal(graph, calib, DT)
        except Exception as err:  # noqa: BLE001 - the table names what has no Loihi form
            print(f"| {name} | — | — | — | — | refused: {str(err)[:90]} | | |")
            continue
        flt = run_temporal(graph, test, DT, record_voltages=True)
        run = run_fast(model, test)
        narrow = run_fast(quantize_temporal(graph, calib, DT, weight_bits=8), test)
        for lname, layer in model.layers.items():
            node = graph.nodes[lname]
            tau = getattr(node, "tau", getattr(node, "tau_mem", None))
            ideal = None if tau is None else np.broadcast_to(DT / np.asarray(tau, np.float64), layer.shape).reshape(-1)
            ratio = "—" if ideal is None else f"{float(np.mean(layer.dv / 4096 / ideal)):.5f}"
            q = layer.weight_sqnr()
            if layer.spiking:
                f, i = flt.spikes[lname].numpy(), run.values[lname]
                equal = f"{100 * float(np.mean(f == i)):.2f} %"
                fc, ic, nc = f.sum(axis=1), i.sum(axis=1), narrow.values[lname].sum(axis=1)
                err = f"{100 * float(np.abs(ic - fc).mean() / max(fc.mean(), 1e-9)):.2f} %" if fc.sum() else "silent"
                err += f" | {100 * float(np.abs(nc - fc).mean() / max(fc.mean(), 1e-9)):.2f} %"
            else:
                v = flt.voltages[lname].numpy()
                approx = run.values[lname] * layer.scale.reshape(layer.shape)
                equal = f"v within {float(np.abs(approx - v).max() / np.abs(v).max()):.3f} of max"
                err = " |"
            print(f"| {name} | {lname} | {layer.kind} | {ratio} | {q:.1f} | {equal} | {err} |")


if __name__ == "__main__":
    main()
