"""The ``lensnet-deploy`` command line. Every subcommand fails with one line and a
non-zero exit code on bad input (exit codes: 0 ok, 1 internal error, 2 bad
input or usage, 3 resource limit (a model too big for a board), 130 interrupted).

Before a command runs, its output paths are checked against its inputs (``IO``:
no output may be an input or lie inside an input folder, symlinks resolved);
a command that fails removes the output folders it created and left empty.
Usage errors are one line too. Memory limits (``--max-memory``, ``export/limits.py``)
are bad input: exit 2."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .errors import ISSUES_URL, LensNetDeployError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_RESOURCE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MEMORY_ENV = "LENSNET_MAX_MEMORY"  # read by export/limits.py (set here without importing torch)


def _size(values: Sequence[int] | None) -> tuple[int, int] | None:
    return None if values is None else (int(values[0]), int(values[1]))


def _check_activations(model, size: tuple[int, int], batch: int, what: str) -> None:
    """Refuse an input size whose activations would not fit the memory limit (before allocating)."""
    from .export import limits
    from .model_zoo import check_input_size

    check_input_size(size)
    need = limits.activation_bytes(model.config.embed_dims[0], size[0], size[1], batch)
    limits.check_memory(need, f"{what} at {size[0]}x{size[1]}" + (f", {batch} images a batch," if batch > 1 else "")
                        + " needs activations of about")


def cmd_predict(args: argparse.Namespace) -> int:
    from .datasets import list_images

    count = len(list_images(args.images))  # a bad folder is one line before torch and the model load
    from . import load_lensnet
    from .predict import predict_dir
    from .progress import batch_bar

    model = load_lensnet(args.checkpoint, variant=args.variant)
    size = _size(args.size) or model.input_size
    _check_activations(model, size, min(args.batch_size, count), "predict")
    written = predict_dir(model, args.images, args.out, size=size, batch_size=args.batch_size,
                          progress=lambda g, n: batch_bar(g, n, "predict"))
    print(f"wrote {len(written)} saliency maps ({size[0]}x{size[1]} input) to {args.out}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .atomic import write_text_atomic
    from .metrics import evaluate_dirs, format_table
    from .progress import bar

    results, n, resized = evaluate_dirs(args.pred, args.gt, progress=lambda p: bar(p, "evaluate"))
    print(f"{n} image pairs: {args.pred} vs {args.gt}"
          + (f" ({resized} predictions resized to their mask)" if resized else ""))
    print(format_table({"score": results}))
    if args.json:
        payload = {**results, "pairs": n, "pred": str(args.pred), "gt": str(args.gt)}
        write_text_atomic(args.json, json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return EXIT_OK


def cmd_zoo(args: argparse.Namespace) -> int:
    from .model_zoo import VARIANTS
    from .model_zoo.registry import zoo_entries, zoo_entry

    if args.zoo_command == "register":
        from .zoo import register_model

        entry = register_model(args.name, args.run, args.data_root, args.status, args.command_line,
                               hardware=args.hardware, half=args.half, notes=args.notes,
                               snap=args.snap)
        m = entry["metrics"]
        print(f"registered {args.name}: {entry['file']} ({entry['file_size_bytes'] / 2**20:.2f} MB), ORSSD test "
              f"S {m['smeasure']:.4f} MAE {m['mae']:.4f}")
        return EXIT_OK
    if args.zoo_command == "snap":
        from .zoo import snap_entry

        entry = snap_entry(args.name, args.size, args.data_root, args.status, args.native, args.notes)
        m = entry["metrics"]
        print(f"snapped {args.name} at {args.size}²: {entry['file']} ({entry['file_size_bytes'] / 2**20:.2f} MB, "
              f"int8 grid), ORSSD test S {m['smeasure']:.4f} MAE {m['mae']:.4f}")
        return EXIT_OK
    if args.zoo_command == "info":
        entry = zoo_entry(args.name)
        if entry is None:
            if args.name in VARIANTS:
                cfg = VARIANTS[args.name]
                print(json.dumps({"variant": args.name, "trained": False, "config": cfg.to_dict()},
                                 indent=2))
                return EXIT_OK
            raise LensNetDeployError(f"{args.name!r}: no such zoo model (see `lensnet-deploy zoo list`)")
        print(json.dumps(entry, indent=2))
        return EXIT_OK
    entries = zoo_entries()
    print(f"{'name':<16}{'trained':<9}{'input':<10}{'params':>10}  metrics (ORSSD test, float)")
    for name, cfg in VARIANTS.items():
        entry = entries.get(name)
        from .model_zoo import LensNet

        params = sum(p.numel() for p in LensNet(cfg).parameters())
        h, w = cfg.input_size
        metrics = ""
        if entry and "metrics" in entry:
            m = entry["metrics"]
            metrics = f"S {m['smeasure']:.4f}  MAE {m['mae']:.4f}"
        print(f"{name:<16}{'yes' if entry else 'no':<9}{f'{h}x{w}':<10}{params / 1e6:>9.2f}M  {metrics}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .progress import bar
    from .train import TrainConfig, Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(variant=args.variant, data_root=str(args.data_root),
                      train_sets=tuple(args.sets), input_size=args.input_size or 0,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      decay_rate=args.decay_rate, decay_epochs=args.decay_epochs, clip=args.clip,
                      seed=args.seed, holdout=args.holdout, val_every=args.val_every,
                      save_every=args.save_every, max_pairs=args.max_pairs, init=str(args.init or ""),
                      schedule=args.schedule, warmup_epochs=args.warmup_epochs, min_lr=args.min_lr,
                      augment=args.augment, qat=args.qat)
    trainer = Trainer(cfg, args.out, cache_dir=str(args.cache or args.out),
                      progress=lambda it, desc, unit="img": bar(it, desc, unit=unit),
                      log=lambda s: print(s, flush=True))
    history = trainer.run(max_steps=args.max_steps)
    if history:
        last = history[-1]
        print(f"epoch {last['epoch']}: train loss {last['train_loss']:.4f}; best hold-out "
              f"S-measure {trainer.best:.4f}; run folder {args.out}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from . import load_lensnet
    from .errors import LensNetDeployError as Err

    model = load_lensnet(args.checkpoint, variant=args.variant)
    size = _size(args.input_size) or model.input_size
    _check_activations(model, size, 1, "export")
    out = Path(args.output)
    for target in (out, args.summary_json):  # both are written or neither: fail here, not between the two
        if target is not None and Path(target).is_dir():
            raise Err(f"{target}: is a folder; give a file name")
    if args.format == "onnx":
        from .export.onnx_export import compare_onnx, export_onnx

        export_onnx(model, size, out)
        import torch

        images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
        diff = compare_onnx(out, model, images)
        print(f"wrote {out} (ONNX, input {size[0]}x{size[1]}); onnxruntime vs PyTorch max |Δ| = {diff:.2e}")
        return EXIT_OK
    from .export import export_nir, write_nir
    from .export.summary import summarize

    if args.snap:
        from .qat import snap

        model = snap(model, size)
        print(f"snapped the weights and folded biases onto the loihi2 integer grid at {size[0]}x{size[1]} "
              f"(docs/qat.md): this float graph is its integer model's twin")
    graph = export_nir(model, size)
    summary = summarize(graph)
    from .atomic import atomic_path, write_text_atomic

    with atomic_path(out, suffix=".nir") as staged:  # the .nir lands only once the summary is written
        write_nir(graph, staged)
        if args.summary_json:
            write_text_atomic(args.summary_json, json.dumps(summary.to_dict(), indent=1) + "\n")
    print(f"wrote {out} (NIR {out.stat().st_size / 2**20:.1f} MB, input {size[0]}x{size[1]}, float64)")
    print(summary.format())
    if args.summary_json:
        print(f"wrote {args.summary_json}")
    return EXIT_OK


def _images_size(graph) -> tuple[int, int]:
    from .export import convention

    info = convention.model_info(graph) or {}
    size = info.get("input_size")
    if not size:
        raise LensNetDeployError("the NIR graph does not record its input size (not a lensnet graph?)")
    return int(size[0]), int(size[1])


def _read_integer(path: Path):
    """An integer NIR file, read and prepared once for every backend."""
    from .api import prepare
    from .export import read_nir

    return prepare(read_nir(path))


def cmd_quantize(args: argparse.Namespace) -> int:
    from .api import quantize_with_report
    from .datasets import list_images, load_images, pair_files, read_mask
    from .export import read_nir, write_nir

    graph = read_nir(args.graph)
    from . import temporal_cli

    # a graph with time, from snnTorch, Norse, SpikingJelly, … (a LENS-Net file is made of the same
    # primitives, Threshold included, but carries the lensnet convention)
    if temporal_cli.is_temporal_file(graph):
        temporal_cli.quantize(graph, args.calib, args.dt, args.method, args.reset, args.output)
        return EXIT_OK
    files = list_images(args.calib)[: args.calib_count]
    masks = None
    if args.gt is not None:
        pairs = pair_files(files, [p for p in list_images(args.gt, "mask") if p.stem in {f.stem for f in files}])
        masks = [read_mask(m) for _, m in pairs]
    images = load_images(files, _images_size(graph))
    q, report = quantize_with_report(graph, images, masks, target=args.target)
    write_nir(q, args.output)
    print(f"wrote {args.output} (integer NIR, calibrated on {len(files)} images)")
    print(report.format())
    return EXIT_OK


def _temporal_graph(args: argparse.Namespace):
    """The graph of a command given --inputs (a graph with time), else None."""
    if getattr(args, "inputs", None) is None:
        if getattr(args, "images", None) is None:
            raise LensNetDeployError("give --images (a folder of images) or --inputs (a .npy array, graphs with time)")
        return None
    from .export import read_nir

    return read_nir(args.graph)


def cmd_simulate(args: argparse.Namespace) -> int:
    graph = _temporal_graph(args)
    if graph is not None:
        from . import temporal_cli

        temporal_cli.simulate(graph, args.inputs, args.backend, args.dt, args.method, args.reset, args.out)
        return EXIT_OK
    if args.backend == "float":
        raise LensNetDeployError("--backend float runs graphs with time (give --inputs); for images use predict")
    from .datasets import list_images
    from .predict import check_output_dir, write_maps
    from .progress import batch_bar
    from .zoo import sha256

    model = _read_integer(args.graph)
    files = list_images(args.images)
    out = check_output_dir(args.out, args.images)
    # the Lava network takes one image per step: larger batches spend fewer steps filling it
    batch = args.batch_size or (16 if args.backend == "lava" else 8)
    run_batches = None
    if args.cluster:
        from .cluster import map_batches

        def run_batches(loaders):
            for index, result in map_batches(model, loaders, args.backend, args.cluster, full=False):
                yield index, result.logits[0]
    try:
        written = write_maps(files, model.input_size, out, lambda x: model.simulate(x, args.backend).logits[0],
                             batch, lambda g, n: batch_bar(g, n, f"simulate ({args.backend})"),
                             run_batches=run_batches, key=sha256(args.graph))
    finally:
        model.close()
    skipped = len(files) - len(written)
    where = f" on the cluster {args.cluster}" if args.cluster else ""
    print(f"wrote {len(written)} saliency maps from the integer model ({args.backend} backend{where}) to {out}"
          + (f"; {skipped} already there from the same model and image content, reused" if skipped else ""))
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from .hardware.build import compile_graph

    model = _read_integer(args.graph)
    images = None
    if args.images:
        from .datasets import list_images, load_images

        images = load_images(list_images(args.images)[: args.count], model.input_size)
    build = compile_graph(model, args.target, args.board, images=images, share_weights=args.share_weights)
    out = build.save(args.output)
    print(build.table())
    if build.energy is not None:
        print(build.energy.format())
    print(f"wrote build to {out}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import default_inputs, run_pipeline

    checkpoint, images, gt = args.checkpoint, args.images, args.gt
    if checkpoint is None and images is None:
        checkpoint, images, gt = default_inputs()
        print(f"bundled default: {checkpoint} on {images}")
    elif checkpoint is None or images is None:
        raise LensNetDeployError("give both CKPT_OR_NAME and --images, or neither for the bundled default")
    run_pipeline(checkpoint, images, gt, args.output, board=args.board, target=args.target,
                 log=lambda s: print(s, flush=True), backend=args.backend, cluster=args.cluster)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    graph = _temporal_graph(args)
    if graph is not None:
        from . import temporal_cli

        return EXIT_OK if temporal_cli.diff(graph, args.inputs, args.backends or ["fast", "reference"]) \
            else EXIT_INPUT
    args.backends = args.backends or ["fast", "lava"]
    from .datasets import list_images, load_images
    from .hardware.integer.reference import first_difference
    from .hardware.model import BACKENDS

    model = _read_integer(args.graph)
    files = list_images(args.images)[: args.count]
    x = load_images(files, model.input_size)
    a_name, b_name = args.backends
    for name in (a_name, b_name):
        if name not in BACKENDS:
            raise LensNetDeployError(f"unknown backend {name!r} (available: {', '.join(BACKENDS)})")
    try:
        values = {name: model.simulate(x, name, keep=True).values for name in (a_name, b_name)}
    finally:
        model.close()
    order = [n for n in model.layer_order if n in values[a_name] and n in values[b_name]]
    for i, path in enumerate(files):
        a = {k: v[i].numpy() for k, v in values[a_name].items()}
        b = {k: v[i].numpy() for k, v in values[b_name].items()}
        found = first_difference(a, b, order)
        if found is None:
            print(f"{path.name}: {a_name} and {b_name} equal on all {len(order)} layers both hold")
        else:
            name, count = found
            print(f"{path.name}: first difference at layer {name} ({count:,} values differ)")
            return EXIT_INPUT
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    from .hardware.deploy import deploy

    deploy(args.build)
    return EXIT_OK



def _time_flags(p: argparse.ArgumentParser) -> None:
    """The time step and discretisation of a NIR graph with time (it carries none: docs/nir.md)."""
    p.add_argument("--dt", type=float, help="graphs with time: seconds per step (a NIR graph carries none)")
    p.add_argument("--method", choices=("euler", "exact"), default="euler",
                   help="graphs with time: forward Euler (Norse, snnTorch) or exact zero-order hold (default euler)")
    p.add_argument("--reset", choices=("zero", "subtract"),
                   help="graphs with time: reset to v_reset, or subtract the threshold (default: the graph "
                        "metadata's, else zero)")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (exit 2); ``--help`` shows the usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, kind: type, low: float, strict: bool) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or value < low or (strict and value == low):
        sign = "positive" if strict else "non-negative"
        raise argparse.ArgumentTypeError(f"must be a {sign} {'integer' if kind is int else 'number'}, got {text!r}")
    return value


def _positive(text: str) -> int:
    return int(_number(text, int, 0, True))


def _natural(text: str) -> int:
    return int(_number(text, int, 0, False))


def _positive_real(text: str) -> float:
    return float(_number(text, float, 0.0, True))


def _real(text: str) -> float:
    return float(_number(text, float, 0.0, False))


def _leaves(parser: argparse.ArgumentParser) -> Iterable[argparse.ArgumentParser]:
    """The parsers of every (sub)command, nested ones included."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):
            yield from _leaves(child)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lensnet-deploy",
        description="LENS-Net from PyTorch to NIR, integers, Lava and Loihi.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="float inference: saliency PNGs for a folder of images")
    p.add_argument("checkpoint", metavar="CKPT_OR_NAME", help="checkpoint file or zoo model name")
    p.add_argument("--images", required=True, type=Path, help="folder of input images")
    p.add_argument("--out", required=True, type=Path, help="folder for the saliency PNGs")
    p.add_argument("--size", nargs=2, type=_positive, metavar=("H", "W"),
                   help="network input size (multiples of 16; default: the model's native size)")
    p.add_argument("--variant", help="LENS-Net variant of a .pth checkpoint (default: the full model)")
    p.add_argument("--batch-size", type=_positive, default=4)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="S-measure, MAE, F, E and weighted F of saliency maps")
    p.add_argument("--pred", required=True, type=Path, help="folder of predicted maps (PNG)")
    p.add_argument("--gt", required=True, type=Path, help="folder of ground-truth masks")
    p.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a checkpoint to an exact NIR graph (or ONNX)")
    p.add_argument("checkpoint", metavar="CKPT_OR_NAME", help="checkpoint file or zoo model name")
    p.add_argument("--input-size", nargs=2, type=_positive, metavar=("H", "W"),
                   help="input size (multiples of 16; default: the model's native size)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output file (.nir or .onnx)")
    p.add_argument("--format", choices=("nir", "onnx"), default="nir")
    p.add_argument("--variant", help="LENS-Net variant of a .pth checkpoint (default: the full model)")
    p.add_argument("--summary-json", type=Path, help="also write the export summary as JSON")
    p.add_argument("--snap", action="store_true",
                   help="first put weights and folded biases on the loihi2 integer grid (qat.snap), so that "
                        "the quantized model agrees with this float graph spike for spike (changes the float "
                        "model by under half a grid step per weight)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quantize", help="float NIR → integer NIR (int8 weights, 24-bit state), with a report")
    p.add_argument("graph", type=Path, help="float NIR file from `export`, or any NIR graph with time")
    p.add_argument("--calib", required=True, type=Path,
                   help="folder of calibration images; for a graph with time a .npy array B×T×(input shape)")
    p.add_argument("--calib-count", type=_positive, default=16, help="images used for the report (default 16)")
    p.add_argument("--gt", type=Path, help="masks of the calibration images: adds float vs integer SOD metrics")
    p.add_argument("--target", default="loihi2", help="target whose widths the integers fit (loihi2, loihi1)")
    _time_flags(p)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("simulate", help="run an integer NIR graph bit-exactly on a folder of images")
    p.add_argument("graph", type=Path, help="integer NIR file from `quantize` (or, with --backend float, a NIR "
                   "graph with time)")
    p.add_argument("--backend", choices=("fast", "reference", "lava", "float"), default="fast",
                   help="fast simulator, int64 reference, the Loihi 2 network on Lava's CPU simulator, or (graphs "
                        "with time) the float reference")
    p.add_argument("--images", type=Path, help="folder of images (LENS-Net graphs)")
    p.add_argument("--inputs", type=Path, help="graphs with time: a .npy array B×T×(input shape)")
    p.add_argument("--out", required=True, type=Path,
                   help="folder for the saliency PNGs (graphs with time: a .npz file, one array per Output node)")
    _time_flags(p)
    p.add_argument("--batch-size", type=_positive, help="images per batch (default 8; lava 16: one pipeline fill each)")
    p.add_argument("--cluster", metavar="SPEC",
                   help="spread the batches over Ray workers: local (one per core), local:N, or a cluster's address")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("compile", help="resources, placement and energy on a Loihi target and board")
    p.add_argument("graph", type=Path, help="integer NIR file from `quantize`")
    p.add_argument("--target", help="loihi2 or loihi1 (default: the target the graph was quantized for)")
    p.add_argument("--board", default="kapoho-point",
                   help="oheo-gulch (1 chip), kapoho-point (8), hala-point (1152), auto (the smallest that holds it)")
    p.add_argument("-o", "--output", required=True, type=Path, help="build folder")
    p.add_argument("--images", type=Path, help="images to measure spike counts for the energy report")
    p.add_argument("--count", type=_positive, default=8, help="how many of --images (default 8)")
    p.add_argument("--share-weights", action="store_true",
                   help="count convolution weights once (weight sharing) instead of per synapse")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="the whole pipeline to an HTML report (no arguments: the bundled default)")
    p.add_argument("checkpoint", metavar="CKPT_OR_NAME", nargs="?", help="checkpoint file or zoo model name")
    p.add_argument("--images", type=Path, help="folder of images")
    p.add_argument("--gt", type=Path, help="folder of ground-truth masks (metrics float vs integer)")
    p.add_argument("-o", "--output", type=Path, default=Path("out/run"), help="output folder (default out/run)")
    p.add_argument("--target", default="loihi2")
    p.add_argument("--board", default="auto", help="board to compile for (default: the smallest that holds the model)")
    p.add_argument("--backend", choices=("fast", "lava"), default="fast",
                   help="integer maps from the fast simulator or from the Loihi 2 network on Lava's CPU simulator")
    p.add_argument("--cluster", metavar="SPEC",
                   help="run the integer simulation on Ray workers: local (one per core), local:N, or an address")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("deploy", help="run a saved build on a Loihi 2 system (needs Intel's lava-loihi)")
    p.add_argument("build", type=Path, help="build folder from `compile`")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("diff", help="compare two backends layer by layer; name the first layer that differs")
    p.add_argument("graph", type=Path, help="integer NIR file")
    p.add_argument("--images", type=Path, help="folder of images (LENS-Net graphs)")
    p.add_argument("--inputs", type=Path, help="graphs with time: a .npy array B×T×(input shape)")
    p.add_argument("--count", type=_positive, default=1, help="how many images (default 1)")
    p.add_argument("--backends", nargs=2, metavar=("A", "B"), choices=("fast", "reference", "lava"),
                   help="the two backends (default: fast lava; graphs with time: fast reference)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("train", help="train a LENS-Net variant on ORSI data (resumable)")
    p.add_argument("--variant", default="lensnet-tiny", help="variant name (default lensnet-tiny)")
    p.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    p.add_argument("--sets", nargs="+", default=["ORSSD/train", "EORSSD/train"],
                   help="training sets as NAME/split under the data root")
    p.add_argument("--out", type=Path, required=True, help="run folder (resumed when it has state.pt)")
    p.add_argument("--cache", type=Path, help="folder for the decoded-image cache (default: --out)")
    p.add_argument("--input-size", type=_positive, help="square input side (default: the variant's)")
    p.add_argument("--epochs", type=_positive, default=100)
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument("--lr", type=_positive_real, default=1e-4)
    p.add_argument("--decay-rate", type=_positive_real, default=0.1)
    p.add_argument("--decay-epochs", type=_positive, default=30)
    p.add_argument("--schedule", choices=("step", "cosine"), default="step",
                   help="step: ×decay-rate every decay-epochs; cosine: from --lr to --min-lr over --epochs")
    p.add_argument("--warmup-epochs", type=_natural, default=0, help="linear warm-up epochs (cosine)")
    p.add_argument("--min-lr", type=_real, default=0.0, help="final learning rate (cosine)")
    p.add_argument("--augment", choices=("geometric", "full"), default="geometric",
                   help="geometric: crops, flips, rotations; full: + multi-scale crops and colour jitter")
    p.add_argument("--clip", type=_positive_real, default=0.5, help="element-wise gradient clamp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", type=_natural, default=100, help="training pairs held out for validation")
    p.add_argument("--val-every", type=_positive, default=1, help="validate every N epochs")
    p.add_argument("--save-every", type=_natural, default=50, help="save the resume state every N steps")
    p.add_argument("--max-steps", type=_natural, help="stop after this many steps (resume later)")
    p.add_argument("--max-pairs", type=_natural, default=0, help="use only the first N pairs (tests)")
    p.add_argument("--init", metavar="CKPT_OR_NAME",
                   help="start a new run from these weights (e.g. fine-tune at 352 a model pretrained at 128)")
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware fine-tuning of --init: weights on the loihi2 integer grid in the "
                        "forward pass, BatchNorm frozen; the saved weights are the grid's")
    p.add_argument("--threads", type=_positive, help="torch CPU threads")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("zoo", help="list or describe the model zoo")
    zsub = p.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    zsub.add_parser("list", help="variants and trained checkpoints")
    zi = zsub.add_parser("info", help="one model's registry entry")
    zi.add_argument("name")
    zr = zsub.add_parser("register", help="(maintainers) add a training run's best checkpoint to the zoo")
    zr.add_argument("name")
    zr.add_argument("--run", type=Path, required=True, help="training run folder")
    zr.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    zr.add_argument("--status", default="trained", help="e.g. 'training in progress (epoch 12 of 80)'")
    zr.add_argument("--command", dest="command_line", required=True, help="the command that trains/resumes it")
    zr.add_argument("--hardware", help="where it was trained (default: this machine)")
    zr.add_argument("--half", action="store_true", help="store float16 weights")
    zr.add_argument("--snap", type=_positive, metavar="SIZE",
                    help="snap weights and biases to the loihi2 integer grid at SIZE² first (qat.snap) and "
                         "store them as int8 grid weights")
    zr.add_argument("--notes", default="", help="a paragraph for the model card (e.g. what the metrics mean)")
    zs = zsub.add_parser("snap", help="(maintainers) put a zoo model's weights on the integer grid, int8 storage")
    zs.add_argument("name")
    zs.add_argument("--size", type=_positive, required=True, help="the input side it is deployed at")
    zs.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    zs.add_argument("--status", help="the registry's new status line")
    zs.add_argument("--native", action="store_true",
                    help="make SIZE² the model's native input too (evaluate, predict and the demo use it); "
                         "choose it on the hold-out split (benchmarks/holdout_sizes.py)")
    zs.add_argument("--notes", help="replace the model card's notes paragraph")
    p.set_defaults(func=cmd_zoo)
    for leaf in _leaves(parser):
        leaf.add_argument("--max-memory", type=_positive_real, metavar="GIB",
                          help=f"memory limit in GiB (default 4, or ${MEMORY_ENV}): a NIR file declaring more, "
                               "a larger input size or image is refused before anything is allocated")
    return parser


FILE_INPUTS = ("checkpoint", "init", "graph", "inputs")
# Per command: the arguments it writes, and the arguments it reads with their nouns.
IO: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "predict": (("out",), (("checkpoint", "checkpoint"), ("images", "image folder"))),
    "evaluate": (("json",), (("pred", "prediction folder"), ("gt", "mask folder"))),
    "export": (("output", "summary_json"), (("checkpoint", "checkpoint"),)),
    "quantize": (("output",), (("graph", "graph"), ("calib", "calibration data"), ("gt", "mask folder"))),
    "simulate": (("out",), (("graph", "graph"), ("images", "image folder"), ("inputs", "input array"))),
    "compile": (("output",), (("graph", "graph"), ("images", "image folder"))),
    "run": (("output",), (("checkpoint", "checkpoint"), ("images", "image folder"), ("gt", "mask folder"))),
    "train": (("out", "cache"), (("sets", "training set"), ("init", "checkpoint"))),
    "zoo": ((), (("run", "run folder"), ("data_root", "data root"))),
}


def _inputs(args: argparse.Namespace) -> list[tuple[str, str | os.PathLike[str] | None]]:
    """What a command reads, as ``(noun, path)`` (``IO``); a zoo name stands for its checkpoint file."""
    found = []
    for attr, noun in IO.get(args.command, ((), ()))[1]:
        value = getattr(args, attr, None)
        if attr == "sets":  # train: the training sets under the data root
            found += [("training set", Path(args.data_root) / s) for s in (value or [])]
            continue
        if attr in ("checkpoint", "init") and value is not None and not Path(value).exists():
            from .model_zoo.registry import zoo_checkpoint

            value = zoo_checkpoint(str(value))
        if attr in FILE_INPUTS and value is not None and Path(value).is_dir():
            continue  # not the file it should be: the command says so; no folder to keep outputs out of
        found.append((noun, value))
    return found


def _outputs(args: argparse.Namespace) -> list[Path]:
    if args.command == "zoo" and getattr(args, "zoo_command", None) in ("register", "snap"):
        from importlib.util import find_spec

        spec = find_spec("lensnet_deploy.model_zoo")  # its folder, without importing it (and torch)
        return [Path(next(iter(spec.submodule_search_locations or []))).resolve()] if spec else []
    return [Path(v) for v in (getattr(args, a, None) for a in IO.get(args.command, ((), ()))[0]) if v is not None]


def _check_io(args: argparse.Namespace) -> list[Path]:
    """Refuse outputs that are inputs, lie inside input folders, or name one file twice; return the
    outputs' topmost folders that do not exist yet (removed again if the command fails, when empty)."""
    from .datasets import check_outputs_apart

    outputs = _outputs(args)
    resolved = [o.resolve() for o in outputs]
    for i, o in enumerate(resolved):
        if o in resolved[:i] and not (args.command == "train" and o == resolved[0]):
            raise LensNetDeployError(f"{outputs[i]}: given for two outputs; give each its own path")
    check_outputs_apart(outputs, _inputs(args))
    created = []
    for out in outputs:
        top = None
        for folder in [out, *out.parents]:
            if folder.exists() or folder.is_symlink():
                break
            top = folder
        if top is not None:
            created.append(top)
    return created


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove folders a failed command created and left holding nothing but empty folders."""
    for top in folders:
        if top.is_dir() and not top.is_symlink() and all(p.is_dir() for p in top.rglob("*")):
            shutil.rmtree(top, ignore_errors=True)


def run(argv: Sequence[str] | None = None,
        parser_factory: Callable[[], argparse.ArgumentParser] = build_parser) -> int:
    from . import interrupt

    parser = parser_factory()
    args = parser.parse_args(argv)
    interrupt.install()
    memory_env = os.environ.get(MEMORY_ENV)
    if getattr(args, "max_memory", None) is not None:
        os.environ[MEMORY_ENV] = repr(args.max_memory)
    created: list[Path] = []
    code = EXIT_INTERNAL
    try:
        created = _check_io(args)
        code = int(args.func(args))
        return code
    except LensNetDeployError as err:
        print(f"lensnet-deploy {args.command}: error: {err}", file=sys.stderr)
        code = int(getattr(err, "exit_code", EXIT_INPUT))
        return code
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"lensnet-deploy {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        code = EXIT_INPUT
        return code
    except KeyboardInterrupt:
        print(f"lensnet-deploy {args.command}: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
        return code
    except Exception as err:  # noqa: BLE001 - anything else is our bug, said so in one line
        where = _innermost_frame(err)
        print(f"lensnet-deploy {args.command}: internal error (a bug in lensnet-deploy, please report it at "
              f"{ISSUES_URL} with this line): {type(err).__name__}: {err}{where}", file=sys.stderr)
        code = EXIT_INTERNAL
        return code
    finally:
        if code not in (EXIT_OK, EXIT_INTERRUPTED):  # a failed command leaves no empty output folders
            _remove_empty(created)
        if memory_env is None:
            os.environ.pop(MEMORY_ENV, None)
        else:
            os.environ[MEMORY_ENV] = memory_env


def _innermost_frame(err: BaseException) -> str:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    return f" (at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno})"


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))
