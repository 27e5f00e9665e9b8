"""Float vs integer saliency quality on ORSSD test (issue "Quantize", acceptance 1).

For a zoo model (or checkpoint) at its native size (or ``--size``): predicts every ORSSD
test image with the float PyTorch model and with the integer model (fast
simulator), evaluates both against the masks and prints the table with the
deltas. Needs the dataset (``--data-root``, default ../shared/datasets).
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    model = load_lensnet(args.model)
    size = (args.size, args.size) if args.size else model.input_size
    calib_dir, _ = resolve_layout(args.data_root / "ORSSD", "train")
    calib = torch.stack([normalize(read_image(p), size) for p in list_images(calib_dir)[: args.calib]])
    int_graph, report = quantize_with_report(export_nir(model, size), calib)
    int_model = prepare(int_graph)
    print(report.format())
    images, masks = resolve_layout(args.data_root / "ORSSD", "test")
    pairs = pair_dataset(images, masks)[: args.limit or None]
    scores = {"float": SODMetrics(), "integer": SODMetrics()}
    for group in batch_bar(list(batches(pairs, args.batch_size)), len(pairs), "float vs integer"):
        rgbs = [read_image(a) for a, _ in group]
        x = torch.stack([normalize(img, size) for img in rgbs])
        with torch.no_grad():
            float_p1 = model(x)[0]
        int_p1 = int_model.simulate(x).logits[0]
        for (_, mask_path), fl, it in zip(group, float_p1, int_p1):
            gt = read_mask(mask_path)
            scores["float"].step(saliency_map(fl, gt.shape), gt)
            scores["integer"].step(saliency_map(it.float(), gt.shape), gt)
    rows = {k: v.results() for k, v in scores.items()}
    rows["Δ (int − float)"] = {k: rows["integer"][k] - rows["float"][k] for k in METRIC_KEYS}
    print(f"{args.model} at {size[0]}x{size[1]} on ORSSD test ({len(pairs)} images)")
    print(format_table(rows))


if __name__ == "__main__":
    main()
