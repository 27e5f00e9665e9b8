"""Time per step of a spiking CNN (NIR graph with time): our integer fast simulator against Norse's
float simulation of the same graph (its NIR import), at batch 1 and 32, one run, as ratios.

    .venv/bin/python benchmarks/temporal_benchmark.py [--size 32] [--steps 50]
"""

from __future__ import annotations

import argparse
import logging
import time

import nir
import numpy as np
import torch

from lensnet_deploy.hardware.integer.temporal import quantize_temporal, run_fast

DT = 1e-3


def cnn(rng, size: int) -> nir.NIRGraph:
    """Conv2d(2→8) → IF → SumPool2d(2) → Conv2d(8→16) → IF: Norse loads it (no Flatten)."""
    r, half = 1.0 / DT, size // 2
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([2, size, size])}),
        "conv1": nir.Conv2d(input_shape=(size, size), weight=rng.normal(0, 0.5, (8, 2, 3, 3)), stride=1, padding=1,
                            dilation=1, groups=1, bias=np.zeros(8)),
        "if1": nir.IF(r=np.full((8, size, size), r), v_threshold=np.full((8, size, size), 1.0)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv2": nir.Conv2d(input_shape=(half, half), weight=rng.normal(0, 0.4, (16, 8, 3, 3)), stride=1, padding=1,
                            dilation=1, groups=1, bias=np.zeros(16)),
        "if2": nir.IF(r=np.full((16, half, half), r), v_threshold=np.full((16, half, half), 1.0)),
        "output": nir.Output(output_type={"output": np.array([16, half, half])})},
        edges=[("input", "conv1"), ("conv1", "if1"), ("if1", "pool"), ("pool", "conv2"), ("conv2", "if2"),
               ("if2", "output")])


def norse_per_step(graph: nir.NIRGraph, x: np.ndarray) -> float:
    from norse.torch.utils.import_nir import from_nir

    logging.disable(logging.WARNING)
    module = from_nir(graph, dt=DT)
    xs = torch.from_numpy(x).float()
    state = None
    with torch.no_grad():
        t0 = time.perf_counter()
        for t in range(xs.shape[1]):
            _, state = module(xs[:, t], state)
        return (time.perf_counter() - t0) / xs.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    graph = cnn(rng, args.size)
    neurons = 8 * args.size**2 + 16 * (args.size // 2) ** 2
    calib = (rng.random((4, args.steps, 2, args.size, args.size)) < 0.2).astype(np.float64) * 2
    t0 = time.perf_counter()
    model = quantize_temporal(graph, calib, DT)
    print(f"spiking CNN {args.size}x{args.size}: {neurons:,} neurons; quantized in {time.perf_counter() - t0:.2f} s "
          f"(threads: {torch.get_num_threads()})")
    for batch in (1, 32):
        x = (rng.random((batch, args.steps, 2, args.size, args.size)) < 0.2).astype(np.float64) * 2
        t0 = time.perf_counter()
        run_fast(model, x)
        ours = (time.perf_counter() - t0) / (args.steps + model.latency)
        theirs = norse_per_step(graph, x)
        print(f"batch {batch:>2}: fast integer simulator {1000 * ours:8.2f} ms/step, Norse float "
              f"{1000 * theirs:8.2f} ms/step, ratio {ours / theirs:6.2f}")


if __name__ == "__main__":
    main()
