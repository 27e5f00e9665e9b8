"""Float vs integer saliency quality on ORSSD test (issue "Quantize", acceptance 1).

For a zoo model (or checkpoint) at its native size (or ``--size``): predicts every ORSSD
test image with the float PyTorch model and with the integer model (fast
simulator), evaluates both against the masks and prints the table with the
deltas. Needs the dataset (``--data-root``, default ../shared/datasets).

Dataset scale: ``--split train --datasets ORSSD EORSSD`` (2,000 images) with
``--cluster local:2`` (or a Ray address) runs the integer model on the cluster's
workers while the driver runs the float model; the wall time is printed.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import torch

from lensnet_deploy import load_lensnet
from lensnet_deploy.api import prepare, quantize_with_report
from lensnet_deploy.datasets import list_images, normalize, pair_dataset, read_image, read_mask, resolve_layout
from lensnet_deploy.export import export_nir
from lensnet_deploy.metrics import METRIC_KEYS, SODMetrics, format_table
from lensnet_deploy.predict import batches, saliency_map
from lensnet_deploy.progress import batch_bar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", default="lensnet-tiny")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--limit", type=int, default=0, help="first N test images only (0: all 200)")
    parser.add_argument("--calib", type=int, default=16, help="ORSSD train images for the quantization report")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=0, help="square input side (0: the model's native size)")
    parser.add_argument("--split", default="test", help="test (default) or train")
    parser.add_argument("--datasets", nargs="+", default=["ORSSD"], help="ORSSD and/or EORSSD")
    parser.add_argument("--cluster", help="run the integer model on Ray: local, local:N or an address")
    args = parser.parse_args()
    start = time.perf_counter()
    model = load_lensnet(args.model)
    size = (args.size, args.size) if args.size else model.input_size
    calib_dir, _ = resolve_layout(args.data_root / "ORSSD", "train")
    calib = torch.stack([normalize(read_image(p), size) for p in list_images(calib_dir)[: args.calib]])
    int_graph, report = quantize_with_report(export_nir(model, size), calib)
    int_model = prepare(int_graph)
    print(report.format())
    pairs = []
    for name in args.datasets:
        pairs += pair_dataset(*resolve_layout(args.data_root / name, args.split))
    pairs = pairs[: args.limit or None]
    groups = list(batches(pairs, args.batch_size))

    def load(group) -> torch.Tensor:
        return torch.stack([normalize(read_image(a), size) for a, _ in group])

    if args.cluster:
        from lensnet_deploy.cluster import map_batches

        runs = map_batches(int_model, [partial(load, g) for g in groups], "fast", args.cluster, full=False)
        results = ((i, r.logits[0]) for i, r in runs)
    else:
        results = ((i, int_model.simulate(load(g)).logits[0]) for i, g in enumerate(groups))
    scores = {"float": SODMetrics(), "integer": SODMetrics()}
    done = ([(groups[i], logits)] for i, logits in results)
    for [(group, int_p1)] in batch_bar(done, len(pairs), "float vs integer"):
        with torch.no_grad():
            float_p1 = model(load(group))[0]
        for (_, mask_path), fl, it in zip(group, float_p1, int_p1):
            gt = read_mask(mask_path)
            scores["float"].step(saliency_map(fl, gt.shape), gt)
            scores["integer"].step(saliency_map(it.float(), gt.shape), gt)
    rows = {k: v.results() for k, v in scores.items()}
    rows["Δ (int − float)"] = {k: rows["integer"][k] - rows["float"][k] for k in METRIC_KEYS}
    where = f", integer model on the cluster {args.cluster}" if args.cluster else ""
    sets = " + ".join(args.datasets)
    print(f"{args.model} at {size[0]}x{size[1]} on {sets} {args.split} ({len(pairs)} images{where})"
          f" in {time.perf_counter() - start:.1f} s")
    print(format_table(rows))


if __name__ == "__main__":
    main()
