"""A spiking CNN of ≥ 50,000 neurons with T = 100 on Lava: build time and time per step with the
project's threads runtime and with Lava's own multiprocessing runtime (one run, the ratio), and the
fast integer simulator's time per step; the Lava runs are checked equal to the fast simulator.

    .venv/bin/python benchmarks/temporal_lava_benchmark.py [--size 66] [--steps 100] [--samples 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from temporal_benchmark import DT, cnn  # noqa: E402

from lensnet_deploy.hardware.integer.temporal import quantize_temporal, run_fast, stream_period  # noqa: E402
from lensnet_deploy.hardware.lava.temporal import run_lava  # noqa: E402
from lensnet_deploy.hardware.loihi.temporal import temporal_plan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=66)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--samples", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    graph = cnn(rng, args.size)
    x = (rng.random((args.samples, args.steps, 2, args.size, args.size)) < 0.1).astype(np.float64)
    t0 = time.perf_counter()
    model = quantize_temporal(graph, x, DT)
    neurons = sum(layer.size for layer in model.layers.values())
    period = stream_period(model, x)
    plan = temporal_plan(model, args.steps, period)
    synapses = sum(int(p.weights.nnz) for p in plan.procs.values() if hasattr(p, "weights"))
    print(f"spiking CNN {args.size}x{args.size}: {neurons:,} neurons, {synapses:,} synapses, {len(plan.procs)} Lava "
          f"processes; quantized and planned in {time.perf_counter() - t0:.1f} s; {args.samples} samples of "
          f"{args.steps} steps streamed {period} steps apart")
    t0 = time.perf_counter()
    fast = run_fast(model, x)
    fast_step = (time.perf_counter() - t0) / (args.steps + model.latency)
    spikes = sum(int(fast.values[n].sum()) for n, layer in model.layers.items() if layer.spiking)
    print(f"fast integer simulator: {1000 * fast_step:8.2f} ms per step (batch {args.samples}); {spikes:,} spikes")
    rows = {}
    for runtime in ("threads", "processes"):
        seconds: dict = {}
        run = run_lava(model, x, period=period, runtime=runtime, seconds=seconds)
        equal = all(np.array_equal(run.values[n], fast.values[n]) for n in model.layers)
        rows[runtime] = (seconds["build"], seconds["run"] / seconds["steps"])
        print(f"Lava, {runtime:>9} runtime: build (processes, compile, start, first step) {seconds['build']:6.1f} s, "
              f"{1000 * rows[runtime][1]:8.2f} ms per step over the other {seconds['steps']} steps; equal to the "
              f"fast simulator: {equal}", flush=True)
    ratio = rows["processes"][1] / rows["threads"][1]
    print(f"Lava's multiprocessing runtime / the threads runtime, time per step: {ratio:.2f}; "
          f"threads runtime / fast simulator per chip step: {rows['threads'][1] / fast_step:.1f}")


if __name__ == "__main__":
    main()
