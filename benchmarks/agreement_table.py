"""Float vs integer, image by image (issue "integer model that agrees"): per-layer spike-count
agreement, ΔS of the means, per-image mean |ΔS| and the worst image, on real images.

For each model (zoo name or checkpoint) at its native size (or ``--size``), optionally with
its weights snapped to the integer grid first (``--snap``: the starting point of
``train --qat``), the integer model is quantized and both models run on the same images
(``quantize_with_report`` with the images and masks as calibration set). Goals: agreement
≥ 97 %, mean |ΔS| ≤ 0.01, worst ≤ 0.05, |ΔS| ≤ 0.003. Needs the dataset (``--data-root``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lensnet_deploy import load_lensnet
from lensnet_deploy.api import quantize_with_report
from lensnet_deploy.datasets import normalize, pair_dataset, read_image, read_mask, resolve_layout
from lensnet_deploy.export import export_nir

SNAPS = {"none": None, "weights": dict(biases=False), "biases": dict(tie_offset=0.0), "ties": {}}


def measure(model_name: str, pairs: list, size_arg: int, snap: str) -> dict:
    model = load_lensnet(model_name)
    size = (size_arg, size_arg) if size_arg else model.input_size
    if SNAPS[snap] is not None:
        from lensnet_deploy.qat import snap as snap_model

        model = snap_model(model, size, **SNAPS[snap])
    x = torch.stack([normalize(read_image(a), size) for a, _ in pairs])
    masks = [read_mask(b) for _, b in pairs]
    _, report = quantize_with_report(export_nir(model, size), x, masks)
    agree = np.array(list(report.spike_agreement.values()))
    d = np.array(report.per_image_delta_s)
    m = report.metrics
    label = model_name + ("" if snap == "none" else f", snapped: {snap}")
    return {"model": label, "size": size[0], "images": len(pairs),
            "agreement": 100 * agree.mean(), "agreement_min": 100 * agree.min(),
            "S_float": m["float"]["smeasure"], "dS": m["Δ (int − float)"]["smeasure"],
            "dMAE": m["Δ (int − float)"]["mae"], "mean_abs_dS": float(np.abs(d).mean()),
            "worst_dS": float(d[np.abs(d).argmax()])}


def local_flips(model_name: str, pairs: list, size_arg: int, snap: str, top: int) -> None:
    """Attribution: the float graph run with every spike layer's *integer* counts fed forward
    (teacher forcing), so a layer's disagreement is its own rounding, not inherited. Prints the
    layers whose own flips are most frequent."""
    from lensnet_deploy.export import ops as O
    from lensnet_deploy.export.from_nir import from_nir
    from lensnet_deploy.export.ir_exec import eval_node
    from lensnet_deploy.hardware.integer.quantize import quantize_ir
    from lensnet_deploy.hardware.model import IntegerModel

    model = load_lensnet(model_name)
    size = (size_arg, size_arg) if size_arg else model.input_size
    if SNAPS[snap] is not None:
        from lensnet_deploy.qat import snap as snap_model

        model = snap_model(model, size, **SNAPS[snap])
    ir = from_nir(export_nir(model, size))
    q, _ = quantize_ir(ir)
    flips: dict[str, int] = {}
    total: dict[str, int] = {}
    for a, _ in pairs:
        x = normalize(read_image(a), size)[None]
        counts = IntegerModel(q).fast(x).spike_counts
        values: dict[str, torch.Tensor] = {}
        for node in ir:
            if isinstance(node.op, O.Input):
                values[node.name] = x.to(torch.float64)
                continue
            out = eval_node(node, [values[i] for i in node.inputs])
            if isinstance(node.op, O.Spike):
                forced = counts[node.name].to(torch.float64)
                flips[node.name] = flips.get(node.name, 0) + int((out.round() != forced).sum())
                total[node.name] = total.get(node.name, 0) + forced.numel()
                out = forced
            values[node.name] = out
    worst = sorted(flips, key=lambda k: -flips[k] / total[k])[:top]
    print(f"own flips per layer (teacher-forced), {model_name}{'' if snap == 'none' else ', snapped: ' + snap}: "
          f"mean {100 * np.mean([flips[k] / total[k] for k in flips]):.3f} % of neurons")
    for k in worst:
        print(f"  {k:<52} {100 * flips[k] / total[k]:6.3f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", default=["lensnet-tiny"])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--dataset", default="ORSSD")
    parser.add_argument("--split", default="test", help="test, train, or holdout (the training runs' seeded "
                                                        "hold-out of ORSSD+EORSSD train, restricted to --dataset)")
    parser.add_argument("--offset", type=int, default=0, help="skip the first N images of the split")
    parser.add_argument("--limit", type=int, default=0, help="N images only (0: all)")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--snap", choices=list(SNAPS), default="none",
                        help="first put on the integer grid (lensnet_deploy.qat.snap): the weights; + the biases; "
                             "+ biases held above ties (what train --qat saves)")
    parser.add_argument("--attribution", type=int, default=0, metavar="TOP",
                        help="also list the TOP layers by their own (teacher-forced) flips")
    args = parser.parse_args()
    if args.split == "holdout":  # the training hold-out's members of --dataset: never trained on or calibrated with
        from lensnet_deploy.train import TrainConfig
        from lensnet_deploy.train_data import collect_pairs, split_holdout

        cfg = TrainConfig()
        held = split_holdout(collect_pairs(args.data_root, cfg.train_sets), cfg.holdout, cfg.seed)[1]
        pairs = [p for p in held if p[0].parent.parent.name == args.dataset][args.offset:]
    else:
        pairs = pair_dataset(*resolve_layout(args.data_root / args.dataset, args.split))[args.offset:]
    pairs = pairs[: args.limit or None]
    print(f"{args.dataset} {args.split}, images {args.offset + 1}..{args.offset + len(pairs)}")
    print("| model | input | S float | ΔS | ΔMAE | spike counts equal (min layer) | mean abs ΔS | worst ΔS |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models:
        t0 = time.perf_counter()
        r = measure(name, pairs, args.size, args.snap)
        print(f"| {r['model']} | {r['size']}² | {r['S_float']:.4f} | {r['dS']:+.4f} | {r['dMAE']:+.4f} | "
              f"{r['agreement']:.2f} % ({r['agreement_min']:.2f} %) | {r['mean_abs_dS']:.4f} | "
              f"{r['worst_dS']:+.4f} |  ({time.perf_counter() - t0:.0f} s)", flush=True)
        if args.attribution:
            local_flips(name, pairs, args.size, args.snap, args.attribution)


if __name__ == "__main__":
    main()
