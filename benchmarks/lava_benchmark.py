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
import os
import resource
import threading
import time
from pathlib import Path

import torch

import lensnet_deploy as L
from lensnet_deploy.datasets import list_images, load_images
from lensnet_deploy.hardware.loihi.lower import WARMUP

SAMPLES = Path(__file__).resolve().parents[1] / "lensnet_deploy" / "data" / "samples" / "orssd-test" / "Image"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def pss_mb() -> float:
    """Proportional set size of this process and its children (Lava's shared-memory manager is a
    fork: its resident pages are mostly the parent's, shared copy-on-write, which RSS counts twice)."""
    total = 0.0
    pids = [str(os.getpid())]
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids += (task / "children").read_text().split()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
        except (OSError, StopIteration):
            pass
    return total


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
        from lensnet_deploy.hardware import lava_network

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


def measure_one(name: str, size: int, runtime: str) -> None:
    """One real ORSSD image through the network at ``size``: build, compile/start and the image's
    steps timed, compared with the fast simulator (run first, then freed), peak memory printed."""
    import gc

    model = L.load_lensnet(name)
    paths = list_images(SAMPLES)
    calib = load_images(paths[:8], (size, size))
    t0 = time.perf_counter()
    q = L.prepare(L.quantize(L.export_nir(model, (size, size)), calib))
    t_quant = time.perf_counter() - t0
    x = calib[:1]
    fast = q.fast(x)
    reference = ([r.clone() for r in fast.raw], {k: v.clone() for k, v in fast.spike_counts.items()})
    del fast, model, calib
    gc.collect()
    print(f"{name} at {size}²: quantized in {t_quant:.1f} s; fast simulator done; peak so far {peak_mb()}", flush=True)
    t1 = time.perf_counter()
    from lensnet_deploy.hardware import lava_network

    net = q.__dict__["_lava"] = lava_network(q, capacity=1, runtime=runtime)
    procs = net.processes
    t_build = time.perf_counter() - t1
    neurons = sum(p.neurons for p in net.plan.procs.values())
    print(f"built {len(procs)} processes ({neurons / 1e6:.1f} M neurons, depth {net.plan.depth}) in {t_build:.1f} s; "
          f"peak so far {peak_mb()}", flush=True)
    stop = threading.Event()
    pss = [pss_mb()]

    def report() -> None:  # the step the readout has seen and the memory, every minute
        from lensnet_deploy.hardware.lava.buffers import open_array

        while not stop.wait(10):
            pss[0] = max(pss[0], pss_mb())
            if int(time.perf_counter() - t2) % 60 < 10:
                step = int(open_array(net.folder, "control")[2]) if net.folder else 0
                print(f"  {time.perf_counter() - t2:.0f} s: step {step} of {WARMUP + 1 + net.plan.depth}; "
                      f"resident {rss_mb():.0f} MB; parent and children (PSS) {pss[0]:.0f} MB at most", flush=True)

    try:
        t2 = time.perf_counter()
        threading.Thread(target=report, daemon=True).start()
        lava = net.run(x)
        t_run = time.perf_counter() - t2
    finally:
        stop.set()
        q.close()
    raw, counts = reference
    exact = all(torch.equal(a, b) for a, b in zip(lava.raw, raw)) and all(
        torch.equal(lava.spike_counts[k], counts[k]) for k in counts
    )
    steps = WARMUP + 1 + net.plan.depth
    print(
        f"{name} at {size}², one ORSSD image through Lava ({runtime}): build {t_build:.1f} s; compile, start and "
        f"the image's {steps} steps {t_run:.1f} s ({t_run / steps:.2f} s per step); bit-exact to the fast "
        f"simulator on every raw logit and spike count: {exact}; peak memory {peak_mb()}; parent and children "
        f"together (PSS, sampled every 10 s) {pss[0]:.0f} MB", flush=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--small", type=int, default=2)
    parser.add_argument("--large", type=int, default=8)
    parser.add_argument("--full", action="store_true", help="also the full lensnet at --size")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--runtime", choices=("threads", "processes"), default="threads")
    parser.add_argument("--one", metavar="MODEL", help="only one image of MODEL (e.g. lensnet) at --size")
    args = parser.parse_args()
    if args.one:
        measure_one(args.one, args.size, args.runtime)
        return
    if not args.skip_tiny:
        measure("lensnet-tiny", args.size, args.small, args.large, args.runtime)
    if args.full:
        measure("lensnet", args.size, args.small, args.large, args.runtime)


if __name__ == "__main__":
    main()
