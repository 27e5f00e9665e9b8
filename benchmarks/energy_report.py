"""Energy per image and resources of a zoo model on ORSSD test (issue "Loihi targets").

Quantizes the model at its native size (or ``--size``), simulates every ORSSD test image
with the fast integer simulator, and prints the energy per image by the
LENS-Net paper's 45 nm convention and the Loihi-style estimate (from the
real spike counts), plus the resources and which boards hold it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lensnet_deploy import ResourceError, compile, export_nir, load_lensnet, load_target, prepare, quantize
from lensnet_deploy.datasets import list_images, load_images, resolve_layout
from lensnet_deploy.hardware.energy import estimate_energy
from lensnet_deploy.predict import batches
from lensnet_deploy.progress import batch_bar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", default="lensnet-tiny")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=0, help="square input side (0: the model's native size)")
    args = parser.parse_args()
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
    images, _ = resolve_layout(args.data_root / "ORSSD", "test")
    files = list_images(images)[: args.limit or None]
    totals = {"paper": 0.0, "loihi": 0.0}
    for group in batch_bar(list(batches(files, args.batch_size)), len(files), "energy"):
        x = load_images(group, size)
        report = estimate_energy(ir, int_graph.simulate(x).spike_counts, target)
        totals["paper"] += report.paper_mj * len(group)
        totals["loihi"] += report.loihi_mj * len(group)
    print(report.format())
    print(f"{args.model} at {size[0]}x{size[1]}, mean over {len(files)} ORSSD test images: "
          f"{totals['paper'] / len(files):.4f} mJ (paper convention), {totals['loihi'] / len(files):.4f} mJ "
          f"(Loihi-style) per image; the paper reports 11.48 mJ for its own full model at 352² (other weights)")


if __name__ == "__main__":
    main()
