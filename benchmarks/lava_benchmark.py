"""Lava CPU simulation vs the fast integer simulator on the same input: seconds per image and ratio.

Default: lensnet-micro (random weights) at 32² and the zoo's lensnet-tiny at 64², one image each
(each Lava process is an OS process; see docs/hardware.md).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from lensnet_deploy import load_lensnet
from lensnet_deploy.export.capture import capture_lensnet
from lensnet_deploy.export.passes import run_passes
from lensnet_deploy.hardware.fast_sim import FastSimulator
from lensnet_deploy.hardware.lava_sim import simulate_lava
from lensnet_deploy.hardware.quantize import quantize_ir
from lensnet_deploy.model_zoo import VARIANTS, LensNet
from lensnet_deploy.model_zoo.random_weights import randomize_


def measure(model: LensNet, size: int, label: str) -> None:
    q, _ = quantize_ir(run_passes(capture_lensnet(model, (size, size))))
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    fast = FastSimulator(q)(x)
    t_fast = time.perf_counter() - t0
    lava = simulate_lava(q, x)
    same = all(bool((torch.from_numpy(a) == b[0]).all()) for a, b in zip(lava.raw, fast.raw))
    print(f"{label} at {size}²: fast {t_fast:.3f} s/image, Lava {lava.seconds:.1f} s/image ({lava.processes} "
          f"processes), ratio {lava.seconds / t_fast:.0f}x, bit-exact: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    measure(randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=0).eval(), 32, "lensnet-micro")
    measure(load_lensnet("lensnet-tiny"), 64, "lensnet-tiny")
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(children: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
