"""Energy per image and resources of a zoo model on ORSSD test (issue "Loihi targets").

Quantizes the model at its native size (or ``--size``), simulates every ORSSD test image
with the fast integer simulator, and prints the energy per image by the
LENS-Net paper's 45 nm convention and the Loihi-style estimate (from the
real spike counts), plus the resources and which boards hold it. ``--datasets ORSSD EORSSD
--split train`` takes the 2,000 training images instead; ``--cluster local:2`` (or a Ray
address) simulates the batches on Ray workers, which send back their spike counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

from tqdm import tqdm

from lensnet_deploy import ResourceError, compile, export_nir, load_lensnet, load_target, prepare, quantize
from lensnet_deploy.datasets import list_images, load_images, resolve_layout
from lensnet_deploy.hardware.loihi.energy import estimate_energy
from lensnet_deploy.predict import batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", default="lensnet-tiny")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=0, help="square input side (0: the model's native size)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--datasets", nargs="+", default=["ORSSD"], help="ORSSD and/or EORSSD")
    parser.add_argument("--cluster", help="simulate on Ray: local, local:N or an address")
    args = parser.parse_args()
    start = time.perf_counter()
    model = load_lensnet(args.model)
    size = (args.size, args.size) if args.size else model.input_size
    int_graph = prepare(quantize(export_nir(model, size)))
    ir = int_graph.ir
    target = load_target("loihi2")
    for board in ("oheo-gulch", "kapoho-point", "hala-point"):
        try:
            print(f"{board}: fits, {compile(int_graph, board=board).summary()}")
        except ResourceError as err:
            print(f"{board}: does not fit: {err}")
    files = []
    for name in args.datasets:
        files += list_images(resolve_layout(args.data_root / name, args.split)[0])
    files = files[: args.limit or None]
    groups = list(batches(files, args.batch_size))
    if args.cluster:
        from lensnet_deploy.cluster import map_batches

        runs = map_batches(int_graph, [partial(load_images, g, size) for g in groups], "fast", args.cluster)
        results = ((groups[i], r.spike_counts) for i, r in runs)
    else:
        results = ((g, int_graph.simulate(load_images(g, size)).spike_counts) for g in groups)
    totals = {"paper": 0.0, "loihi": 0.0}
    bar = tqdm(total=len(files), desc="energy", unit="img", file=sys.stderr, disable=None)
    for group, counts in results:
        report = estimate_energy(ir, counts, target)
        totals["paper"] += report.paper_mj * len(group)
        totals["loihi"] += report.loihi_mj * len(group)
        bar.update(len(group))
    bar.close()
    print(report.format())
    where = f", on the cluster {args.cluster}" if args.cluster else ""
    print(f"{args.model} at {size[0]}x{size[1]}, mean over {len(files)} {' + '.join(args.datasets)} {args.split} "
          f"images{where}: {totals['paper'] / len(files):.4f} mJ (paper convention), "
          f"{totals['loihi'] / len(files):.4f} mJ (Loihi-style) per image; the paper reports 11.48 mJ for its own "
          f"full model at 352² (other weights); {time.perf_counter() - start:.0f} s")

if __name__ == "__main__":
    main()
