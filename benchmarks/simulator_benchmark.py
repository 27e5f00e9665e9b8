"""Fast integer simulator vs the float PyTorch forward, measured in one run.

Full LENS-Net at 352² (random weights with realistic statistics), batch 1
and 8; best of ``--repeat`` timings after a warm-up. Target (issue
"Quantize"): the fast simulator within 1.5× of the float forward.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from lensnet_deploy.api import quantize
from lensnet_deploy.export import export_nir
from lensnet_deploy.hardware.integer.fast_sim import FastSimulator
from lensnet_deploy.hardware.integer.int_nir import from_int_nir
from lensnet_deploy.model_zoo import LensNet, variant_config
from lensnet_deploy.model_zoo.random_weights import randomize_


def best_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="lensnet")
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = randomize_(LensNet(variant_config(args.variant)), seed=0).eval()
    size = (args.size, args.size)
    ir = from_int_nir(quantize(export_nir(model, size)))
    t0 = time.perf_counter()
    simulator = FastSimulator(ir)  # like the float model, its weights are prepared once
    t_prepare = time.perf_counter() - t0
    print(f"{args.variant} at {args.size}², {args.threads} threads; best of {args.repeat} "
          f"(simulator prepared once in {t_prepare:.2f} s)")
    for batch in args.batches:
        x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            t_float = best_time(lambda x=x: model(x), args.repeat)
            t_fast = best_time(lambda x=x: simulator(x), args.repeat)
        print(f"  batch {batch}: float PyTorch {t_float:.3f} s, fast integer simulator {t_fast:.3f} s, "
              f"ratio {t_fast / t_float:.2f} (target ≤ 1.5)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak resident memory of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
