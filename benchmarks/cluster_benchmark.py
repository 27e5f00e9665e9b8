"""Throughput of the Lava backend on a local Ray cluster, 1 worker vs N (issue 14, acceptance 4).

``lensnet-tiny`` at ``--size`` (default 128²) on ``--count`` ORSSD test images: each worker
builds the Loihi 2 network once and streams its batches. Prints wall time, images per
second and the ratio, and checks the merged result against the fast simulator bit for bit.
On a 2-core machine the ratio is bounded by the cores (each worker runs Lava's process models
in threads of one Python process, and the driver shares the same cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import lensnet_deploy as L
from lensnet_deploy.datasets import list_images, load_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", default="lensnet-tiny")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", default="lava", choices=("lava", "fast"))
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    args = parser.parse_args()
    folder = args.data_root / "ORSSD" / "test-images"
    files = list_images(folder if folder.exists() else Path(L.__file__).parent / "data/samples/orssd-test/Image")
    x = load_images(files[: args.count], (args.size, args.size))
    q = L.prepare(L.quantize(L.export_nir(L.load_lensnet(args.model), (args.size, args.size)), x[:16]))
    fast = q.fast(x)
    seconds = {}
    for n in args.workers:
        start = time.perf_counter()
        run = L.simulate(q, x, backend=args.backend, cluster=f"local:{n}", batch_size=max(1, len(x) // n))
        seconds[n] = time.perf_counter() - start
        exact = all(torch.equal(a, b) for a, b in zip(run.raw, fast.raw))
        print(f"{n} worker(s): {seconds[n]:.1f} s for {len(x)} images ({len(x) / seconds[n]:.3f} img/s, "
              f"build included), bit-exact to the fast simulator: {exact}", flush=True)
    if len(seconds) > 1:
        first, last = args.workers[0], args.workers[-1]
        print(f"throughput ratio {last} vs {first} worker(s): {seconds[first] / seconds[last]:.2f}")


if __name__ == "__main__":
    main()
