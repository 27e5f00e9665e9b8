"""The Loihi 2 network on Lava's CPU simulator: build time, steady-state time per image, memory.

For the zoo's lensnet-tiny at 128² (and, with ``--full``, the zoo's full lensnet at 128²): the
network is built once (plan, Lava processes, compile, runtime start: "build"), then two batches
of images stream through it one per step. Each batch costs ``images + depth`` steps (the
pipeline fills and drains once), so the steady-state time per image is the difference of the
two batches' times over the difference of their image counts, and it is checked bit for bit
against the fast simulator. Goal (issue "Loihi 2 network"): ≤ 5 s per image after the build.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

import lensnet_deploy as L
from lensnet_deploy.datasets import list_images, load_images

SAMPLES = Path(__file__).resolve().parents[1] / "lensnet_deploy" / "data" / "samples" / "orssd-test" / "Image"


def peak_mb() -> str:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"{own:.0f} MB (largest child {kids:.0f} MB)"


def measure(name: str, size: int, small: int, large: int, runtime: str) -> None:
    model = L.load_lensnet(name)
    x = load_images(list_images(SAMPLES)[:large] * (1 + large // 12), (size, size))[:large]
    q = L.prepare(L.quantize(L.export_nir(model, (size, size)), x[:8]))
    t0 = time.perf_counter()
    net = q.lava(capacity=large) if runtime == "threads" else None
    if net is None:
        from lensnet_deploy.hardware.lava_run import lava_network

        net = q.__dict__["_lava"] = lava_network(q, capacity=large, runtime=runtime)
    procs = net.processes  # builds the Lava processes
    t_plan = time.perf_counter() - t0
    fast = q.fast(x)
    try:
        t1 = time.perf_counter()
        first = net.run(x[:1])  # compile, start the runtime, one image through
        t_start = time.perf_counter() - t1
        t2 = time.perf_counter()
        a = net.run(x[:small])
        t_small = time.perf_counter() - t2
        t3 = time.perf_counter()
        b = net.run(x[:large])
        t_large = time.perf_counter() - t3
    finally:
        q.close()
    exact = all(torch.equal(r, f[: len(r)]) for run in (first, a, b) for r, f in zip(run.raw, fast.raw)) and all(
        torch.equal(b.spike_counts[k], fast.spike_counts[k][:large]) for k in fast.spike_counts
    )
    steps_small, steps_large = small + net.plan.depth, large + net.plan.depth
    per_step = (t_large - t_small) / (steps_large - steps_small)
    print(
        f"{name} at {size}² ({runtime}): {len(procs)} processes, pipeline depth {net.plan.depth} steps; build "
        f"{t_plan:.1f} s + compile/start/first image {t_start:.1f} s; batches of {small} and {large} images: "
        f"{t_small:.1f} s and {t_large:.1f} s; steady state {per_step:.2f} s per step = per image "
        f"(goal ≤ 5 s); bit-exact to the fast simulator: {exact}; peak memory {peak_mb()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--small", type=int, default=2)
    parser.add_argument("--large", type=int, default=8)
    parser.add_argument("--full", action="store_true", help="also the full lensnet at --size")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--runtime", choices=("threads", "processes"), default="threads")
    args = parser.parse_args()
    if not args.skip_tiny:
        measure("lensnet-tiny", args.size, args.small, args.large, args.runtime)
    if args.full:
        measure("lensnet", args.size, args.small, args.large, args.runtime)


if __name__ == "__main__":
    main()
