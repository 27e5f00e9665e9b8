"""Which input size to deploy a model at, chosen on the training runs' hold-out split, never on
the test set: the model is snapped onto the loihi2 integer grid at each size (what
``zoo snap --size N --native`` stores) and its float metrics are measured on the seeded hold-out
(``split_holdout``, 100 pairs of ORSSD+EORSSD train) at that size.

    python benchmarks/holdout_sizes.py lensnet 224 256 288 --data-root ../shared/datasets
"""

from __future__ import annotations

import argparse
import time

import torch

from lensnet_deploy import load_lensnet
from lensnet_deploy.qat import snap
from lensnet_deploy.train import PairCache, TrainConfig, collect_pairs, split_holdout, validate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="zoo name or checkpoint")
    ap.add_argument("sizes", type=int, nargs="+", help="square input sides to try")
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--no-snap", action="store_true", help="measure the weights as stored")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(data_root=args.data_root)
    _, held = split_holdout(collect_pairs(cfg.data_root, cfg.train_sets), cfg.holdout, cfg.seed)
    print(f"{args.model}: hold-out of {len(held)} pairs (seed {cfg.seed}), "
          f"{'as stored' if args.no_snap else 'snapped at each size'}")
    print("| size | S-measure | MAE | max F | mean E | seconds |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        start = time.perf_counter()
        model = load_lensnet(args.model)
        if not args.no_snap:
            model = snap(model, (size, size))
        m = validate(model, PairCache(held, size, None, None), size)
        print(f"| {size}² | {m['smeasure']:.4f} | {m['mae']:.4f} | {m['max_fmeasure']:.4f} | "
              f"{m['mean_emeasure']:.4f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
