"""The ``lensnet-deploy`` command line. Every subcommand fails with one line and a
non-zero exit code on bad input (exit codes: 0 ok, 1 internal error, 2 bad
input or usage, 3 resource limit (a model too big for a board), 4 unavailable (valid input
this machine cannot run: ``deploy`` without Intel's lava-loihi), 130 interrupted).

Flags follow one vocabulary (``VOCABULARY``: ``-o/--out`` for what a command writes, ``--size``
for the input size, ``--count`` for how many images); earlier spellings stay as hidden aliases
(``DEPRECATED``). Known third-party warnings are filtered where they arise (``quiet``) unless
``-v/--verbose``; ``command_table`` renders the README's command table from these parsers.

Before a command runs, its output paths are checked against its inputs (``IO``:
no output may be an input or lie inside an input folder, symlinks resolved);
a command that fails removes the output folders it created and left empty.
Usage errors are one line too. Memory limits (``--max-memory``, ``export/limits.py``)
are bad input: exit 2."""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .errors import LensNetDeployError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_RESOURCE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
DEMO_OUT, RUN_OUT = Path("out/demo"), Path("out/run")  # `run`'s folder: bundled default, or the user's model
EXPORT_FORMATS = {".nir": "nir", ".onnx": "onnx"}  # export: the output's extension names its format
DIFF_BACKENDS = ("fast", "reference")  # diff's default pair: seconds (with lava: a minute or more per image)
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

    model = load_lensnet(args.checkpoint, variant=args.variant, strict=not args.non_strict)
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

        snap = args.snap
        if snap is True:  # `--snap --size N` (`--snap N` is the earlier spelling)
            if args.size is None:
                raise LensNetDeployError("--snap needs --size N: the input side the grid is fitted at")
            snap = args.size[0]
        entry = register_model(args.name, args.run, args.data_root, args.status, args.command_line,
                               hardware=args.hardware, half=args.half, notes=args.notes,
                               snap=snap)
        m = entry["metrics"]
        print(f"registered {args.name}: {entry['file']} ({entry['file_size_bytes'] / 2**20:.2f} MB), ORSSD test "
              f"S {m['smeasure']:.4f} MAE {m['mae']:.4f}")
        return EXIT_OK
    if args.zoo_command == "snap":
        from .zoo import snap_entry

        side = args.size[0]
        entry = snap_entry(args.name, side, args.data_root, args.status, args.native, args.notes)
        m = entry["metrics"]
        print(f"snapped {args.name} at {side}²: {entry['file']} ({entry['file_size_bytes'] / 2**20:.2f} MB, "
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
    print(f"{'name':<16}{'trained':<9}{'native':<10}{'params':>10}  metrics (ORSSD test, float, native size)")
    for name, cfg in VARIANTS.items():
        entry = entries.get(name)
        from .model_zoo import LensNet

        params = sum(p.numel() for p in LensNet(cfg).parameters())
        h, w = entry.get("input_size", cfg.input_size) if entry else cfg.input_size  # the zoo's, else the variant's
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
                      train_sets=tuple(args.sets), input_size=args.input_size[0] if args.input_size else 0,
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

    fmt = _export_format(Path(args.output), args.format)  # before the model loads: a mismatch is one line
    model = load_lensnet(args.checkpoint, variant=args.variant, strict=not args.non_strict)
    size = _size(args.input_size) or model.input_size
    _check_activations(model, size, 1, "export")
    out = Path(args.output)
    for target in (out, args.summary_json):  # both are written or neither: fail here, not between the two
        if target is not None and Path(target).is_dir():
            raise Err(f"{target}: is a folder; give a file name")
    if fmt == "onnx":
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
    report.image_names = [f.name for f in files]  # the worst image by its file name
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
    phases = None
    if args.backend == "lava" and not args.cluster:  # bars for the network's build, start and steps
        from .progress import Phases

        phases = Phases("Lava")
        model.lava(capacity=batch).progress = phases
    try:
        written = write_maps(files, model.input_size, out, lambda x: model.simulate(x, args.backend).logits[0],
                             batch, lambda g, n: batch_bar(g, n, f"simulate ({args.backend})"),
                             run_batches=run_batches, key=sha256(args.graph))
    finally:
        if phases is not None:
            phases.close()
        model.close()
    skipped = len(files) - len(written)
    where = f" on the cluster {args.cluster}" if args.cluster else ""
    print(f"wrote {len(written)} saliency maps from the integer model ({args.backend} backend{where}) to {out}"
          + (f"; {skipped} already there from the same model and image content, reused" if skipped else ""))
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from . import temporal_cli
    from .export import read_nir
    from .hardware.build import compile_graph

    graph = read_nir(args.graph)
    if temporal_cli.is_temporal_file(graph):  # a graph with time: the network that streams its samples
        build, out = temporal_cli.compile_build(graph, args.inputs, args.steps, args.target, args.board, args.output)
        _print_build(build, out, _verbose(args))
        return EXIT_OK
    if args.inputs is not None:
        raise LensNetDeployError("--inputs is for graphs with time; a LENS-Net graph takes --images")
    model = _read_integer(args.graph)
    images = None
    if args.images:
        from .datasets import list_images, load_images

        images = load_images(list_images(args.images)[: args.count], model.input_size)
    shared = None if args.weights is None else args.weights == "shared"  # None: the target file's cited model
    from .progress import phase

    with phase("compile"):
        build = compile_graph(model, args.target, args.board, images=images, share_weights=shared)
        out = build.save(args.output)
    _print_build(build, out, _verbose(args))
    return EXIT_OK


def _print_build(build, out: Path, verbose: bool) -> None:
    """The build's totals and energy first; its per-process table (hundreds of lines) is in
    ``resources.txt``, printed here only with -v."""
    table = build.table().splitlines()
    totals = [line for line in table if line.startswith(("total:", "network:"))]
    print("\n".join(totals or table))
    if build.energy is not None:
        print(build.energy.format())
    if verbose and totals:
        print("\n".join(line for line in table if line not in totals))
    listed = out / "resources.txt"
    print(f"wrote build to {out}" + (f"; every process's neurons, synapses, cores and work: {listed}"
                                     if listed.exists() else ""))


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import default_inputs, run_pipeline

    checkpoint, images, gt = args.checkpoint, args.images, args.gt
    if args.inputs is not None:  # a NIR graph with time and its input sequences
        from .temporal_cli import _need_dt
        from .temporal_run import run_temporal

        if checkpoint is None:
            raise LensNetDeployError("give the NIR graph with time: lensnet-deploy run G.nir --inputs X.npy --dt DT")
        metrics = run_temporal(Path(checkpoint), args.inputs, _need_dt(args.dt), args.method, args.reset, gt,
                               args.output, board=args.board, target=args.target, log=lambda s: print(s, flush=True))
        for name, e in metrics["outputs"].items():
            err = f"count error {100 * e['count_error']:.2f} %" if e["spiking"] else \
                f"max |Δv| {e['max_abs_error']:.4g}"
            acc = f", accuracy float {100 * e['float_accuracy']:.1f} % / integer {100 * e['integer_accuracy']:.1f} %" \
                if "float_accuracy" in e else ""
            print(f"output {name}: float vs integer {err}, predictions agree {100 * e['prediction_agreement']:.1f} %"
                  f"{acc}")
        lava = metrics["lava"]
        print(f"Lava check: {lava['samples']} samples through one network "
              + ("equal to the fast simulator" if lava["equal"] else "DIFFERENT from the fast simulator"))
        print(f"wrote {args.output / 'report.html'}")
        return EXIT_OK if lava["equal"] else EXIT_INPUT
    if checkpoint is None and images is None:
        checkpoint, images, gt = default_inputs()
        print(f"bundled default: {checkpoint} on {images}")
    elif checkpoint is None or images is None:
        raise LensNetDeployError("give both CKPT_OR_NAME and --images, or neither for the bundled default")
    times: dict[str, float | None] = {}
    summary = run_pipeline(checkpoint, images, gt, args.output, board=args.board, target=args.target,
                           log=lambda s: print(s, flush=True), backend=args.backend, cluster=args.cluster,
                           size=args.size, times=times, strict=not args.non_strict)
    _print_run(summary, times)
    return EXIT_OK


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _print_run(summary: dict, times: dict[str, float | None]) -> None:
    """A run's last words: each step's time, then the float and integer metrics side by side."""
    width = max([len(name) for name in times] + [5])
    print("time per step:")
    for name, seconds in times.items():
        print(f"  {name:<{width}}  {'up to date, skipped' if seconds is None else _duration(seconds)}")
    print(f"  {'total':<{width}}  {_duration(sum(s for s in times.values() if s))}")
    metrics = summary.get("metrics") or {}
    if not metrics:
        print("no metrics: give --gt (the images' masks) to compare the float and integer maps")
        return
    from .metrics import format_table

    keys = ("smeasure", "mae", "max_fmeasure", "mean_emeasure", "wfmeasure")
    rows = {"float": metrics["float"], "integer": metrics["integer"],
            "integer − float": {k: metrics["integer"][k] - metrics["float"][k] for k in keys}}
    h, w = summary["input_size"]
    print(f"metrics on {summary.get('images', '?')} images ({h}x{w} input):")
    print(format_table(rows, keys))


def cmd_diff(args: argparse.Namespace) -> int:
    graph = _temporal_graph(args)
    if graph is not None:
        from . import temporal_cli

        return EXIT_OK if temporal_cli.diff(graph, args.inputs, args.backends or ["fast", "reference"]) \
            else EXIT_INPUT
    args.backends = args.backends or list(DIFF_BACKENDS)
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
    print(f"comparing {a_name} with {b_name} layer by layer on {len(files)} image{'s' if len(files) != 1 else ''} "
          f"at {model.input_size[0]}x{model.input_size[1]}")
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



def _non_strict_flag(p: argparse.ArgumentParser) -> None:
    """``--non-strict`` on the commands that load a checkpoint (``checkpoint.load_lensnet``)."""
    p.add_argument("--non-strict", action="store_true",
                   help="load the checkpoint as the authors' inference does (strict=False): keys the model lacks "
                        "are ignored and missing ones keep their initial values, each listed; a shape mismatch "
                        "is still refused")


def _time_flags(p: argparse.ArgumentParser) -> None:
    """The time step and discretisation of a NIR graph with time (it carries none: docs/nir.md)."""
    p.add_argument("--dt", type=float, help="graphs with time: seconds per step (a NIR graph carries none)")
    p.add_argument("--method", choices=("euler", "exact"), default="euler",
                   help="graphs with time: forward Euler (Norse, snnTorch) or exact zero-order hold (default euler)")
    p.add_argument("--reset", choices=("zero", "subtract"),
                   help="graphs with time: reset to v_reset, or subtract the threshold (default: the graph "
                        "metadata's, else zero)")


# The flag vocabulary: every command spells one notion one way, and every flag a command shows is
# here (tests/test_cli_vocabulary.py runs each command's --help against it).
VOCABULARY: dict[str, str] = {
    "-h/--help": "show the command's help",
    "-v/--verbose": "show third-party warnings, the full compile table and tracebacks of internal errors",
    "--max-memory": "the memory an input may make a command allocate",
    "-o/--out": "what the command writes: a file or a folder",
    "--size": "the network's input size: H W, or N for N×N",
    "--count": "how many of the given images to use",
    "--images": "a folder of images",
    "--gt": "a folder of ground-truth masks",
    "--pred": "a folder of predicted maps",
    "--calib": "calibration data",
    "--inputs": "input sequences of a graph with time (.npy)",
    "--variant": "a LENS-Net variant",
    "--non-strict": "load a checkpoint whose keys do not all match",
    "--batch-size": "images per batch",
    "--format": "the output's format",
    "--summary-json": "export's summary as JSON",
    "--snap": "weights onto the loihi2 integer grid",
    "--target": "the Loihi generation",
    "--board": "the Loihi board",
    "--backend": "the simulator that runs the integers",
    "--backends": "the two simulators diff compares",
    "--cluster": "Ray workers",
    "--weights": "how convolution synapses are stored",
    "--steps": "steps per sample of a graph with time",
    "--dt": "seconds per step of a graph with time",
    "--method": "discretisation of a graph with time",
    "--reset": "reset of a graph with time",
    "--data-root": "the folder holding the datasets",
    "--sets": "training sets",
    "--cache": "decoded-image cache",
    "--epochs": "training epochs",
    "--lr": "learning rate",
    "--decay-rate": "step schedule factor",
    "--decay-epochs": "step schedule period",
    "--schedule": "learning-rate schedule",
    "--warmup-epochs": "warm-up epochs",
    "--min-lr": "final learning rate",
    "--augment": "augmentation",
    "--clip": "gradient clamp",
    "--seed": "random seed",
    "--holdout": "hold-out pairs",
    "--val-every": "validation period",
    "--save-every": "resume-state period",
    "--max-steps": "stop after this many steps",
    "--max-pairs": "use only the first pairs",
    "--init": "initial weights",
    "--qat": "quantization-aware training",
    "--threads": "torch CPU threads",
    "--run": "a training run folder",
    "--status": "a registry status line",
    "--command": "the command that trains a zoo model",
    "--hardware": "where a model was trained",
    "--half": "float16 storage",
    "--notes": "the model card's notes",
    "--native": "make the size the model's native one",
}
# earlier spellings, accepted and hidden from --help, the usage and error lines: old → new
DEPRECATED: dict[str, str] = {"--output": "-o/--out", "--input-size": "--size", "--calib-count": "--count",
                              "--json": "-o/--out", "--share-weights": "--weights shared"}
# one metavar per kind of value (argparse would show the flag's name in capitals)
METAVARS = {"graph": "GRAPH", "build": "BUILD_DIR", "name": "NAME", "images": "DIR", "gt": "DIR", "pred": "DIR",
            "calib": "PATH", "inputs": "X.npy", "summary_json": "FILE",
            "cache": "DIR", "run": "DIR", "variant": "NAME", "target": "NAME", "board": "NAME", "status": "TEXT",
            "notes": "TEXT", "hardware": "TEXT", "command_line": "TEXT", "cluster": "SPEC", "dt": "SECONDS",
            "steps": "N", "holdout": "N", "val_every": "N", "save_every": "N", "warmup_epochs": "N",
            "lr": "X", "min_lr": "X", "decay_rate": "X", "clip": "X", "seed": "N", "sets": "SET"}
SIZE_NARGS = "1 or 2"  # --size takes H W, or N for N×N
SIZE_HELP = "input size H W, or N for N×N (multiples of 16; default: the model's native size)"
VERBOSE_HELP = "show third-party warnings, the full tables and, on an internal error, its traceback"


class _SizeAction(argparse.Action):
    """``--size H W`` or ``--size N`` (N×N), stored as ``(H, W)``; ``square`` commands refuse H ≠ W."""

    def __init__(self, option_strings: list[str], dest: str, square: bool = False, **kwargs) -> None:
        self.square = square
        super().__init__(option_strings, dest, nargs=SIZE_NARGS, type=_positive, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        h, w = (values[0], values[0]) if len(values) == 1 else values
        if self.square and h != w:
            raise argparse.ArgumentError(self, f"takes one side N (square inputs), got {h} {w}")
        setattr(namespace, self.dest, (h, w))


class _Help(argparse.HelpFormatter):
    """Help that states every default, hides deprecated spellings and shows ``--size H [W]``."""

    def __init__(self, prog: str, **kwargs) -> None:
        kwargs.setdefault("max_help_position", 32)
        super().__init__(prog, **kwargs)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [s for s in action.option_strings if s not in DEPRECATED]
        if shown != action.option_strings:
            action = copy.copy(action)
            action.option_strings = shown
        return super()._format_action_invocation(action)

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if action.nargs == SIZE_NARGS:
            return "N" if getattr(action, "square", False) else "H [W]"
        return super()._format_args(action, default_metavar)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and not action.required and action.nargs != 0 and "default" not in text
                and default is not argparse.SUPPRESS):
            if default in (None, ""):
                shown = "none"
            elif isinstance(default, list | tuple):
                shown = " ".join(map(str, default))
            else:
                shown = str(default)
            text += f" (default: {shown.replace('%', '%%')})"
        return text


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (exit 2), naming flags by their current
    spelling; ``--help`` shows the usage and every default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        for old in DEPRECATED:
            message = message.replace(f"/{old}", "")
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _get_nargs_pattern(self, action: argparse.Action) -> str:
        if action.nargs == SIZE_NARGS:  # one or two values (argparse knows no such count)
            return "(-*A-*A?-*)" if not action.option_strings else "(AA?)"
        return super()._get_nargs_pattern(action)


def _size_flag(p: argparse.ArgumentParser, *aliases: str, dest: str = "size", square: bool = False,
               required: bool = False, help: str = SIZE_HELP) -> None:
    """``--size`` (and its earlier spellings ``aliases``) on a command."""
    p.add_argument("--size", *aliases, dest=dest, action=_SizeAction, square=square, required=required, help=help)


def _export_format(out: Path, asked: str | None) -> str:
    """``export``'s format: the output's extension decides (``EXPORT_FORMATS``); ``--format`` must
    agree with it, or names the format of a file with another extension (default nir)."""
    implied = EXPORT_FORMATS.get(out.suffix.lower())
    if asked is not None and implied is not None and asked != implied:
        raise LensNetDeployError(f"--format {asked} does not match the output {out.name} ({out.suffix} is {implied}): "
                                 f"drop --format, or name the file .{asked}")
    return asked or implied or "nir"


def _verbose(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "verbose", False))


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
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="float inference: saliency PNGs for a folder of images")
    p.add_argument("checkpoint", metavar="CKPT_OR_NAME", help="checkpoint file or zoo model name")
    p.add_argument("--images", required=True, type=Path, help="folder of input images")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="DIR", help="folder for the saliency PNGs")
    _size_flag(p)
    p.add_argument("--variant", help="LENS-Net variant of a .pth checkpoint (default: the full model)")
    _non_strict_flag(p)
    p.add_argument("--batch-size", type=_positive, default=4, metavar="N", help="images per batch")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="S-measure, MAE, F, E and weighted F of saliency maps")
    p.add_argument("--pred", required=True, type=Path, help="folder of predicted maps (PNG)")
    p.add_argument("--gt", required=True, type=Path, help="folder of ground-truth masks")
    p.add_argument("-o", "--out", "--json", dest="json", type=Path, metavar="FILE",
                   help="also write the metrics to this JSON file (default: print them only)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a checkpoint to an exact NIR graph (or ONNX)")
    p.add_argument("checkpoint", metavar="CKPT_OR_NAME", help="checkpoint file or zoo model name")
    _size_flag(p, "--input-size", dest="input_size")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, type=Path, metavar="FILE",
                   help="output file: .nir writes NIR (HDF5), .onnx writes ONNX")
    p.add_argument("--format", choices=("nir", "onnx"),
                   help="nir or onnx; must agree with the extension of -o (default: the extension's, nir for "
                        "any other)")
    p.add_argument("--variant", help="LENS-Net variant of a .pth checkpoint (default: the full model)")
    _non_strict_flag(p)
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
    p.add_argument("--count", "--calib-count", dest="calib_count", type=_positive, default=16, metavar="N",
                   help="how many of the calibration images the report uses")
    p.add_argument("--gt", type=Path, help="masks of the calibration images: adds float vs integer SOD metrics")
    p.add_argument("--target", default="loihi2", help="target whose widths the integers fit (loihi2, loihi1)")
    _time_flags(p)
    p.add_argument("-o", "--out", "--output", dest="output", required=True, type=Path, metavar="FILE",
                   help="the integer NIR file to write")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("simulate", help="run an integer NIR graph bit-exactly on a folder of images")
    p.add_argument("graph", type=Path, help="integer NIR file from `quantize` (or, with --backend float, a NIR "
                   "graph with time)")
    p.add_argument("--backend", choices=("fast", "reference", "lava", "float"), default="fast",
                   help="fast simulator, int64 reference, the Loihi 2 network on Lava's CPU simulator, or (graphs "
                        "with time) the float reference")
    p.add_argument("--images", type=Path, help="folder of images (LENS-Net graphs)")
    p.add_argument("--inputs", type=Path, help="graphs with time: a .npy array B×T×(input shape)")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="PATH",
                   help="folder for the saliency PNGs (graphs with time: a .npz file, one array per Output node)")
    _time_flags(p)
    p.add_argument("--batch-size", type=_positive, metavar="N",
                   help="images per batch (default 8; lava 16: one pipeline fill each)")
    p.add_argument("--cluster", metavar="SPEC",
                   help="spread the batches over Ray workers: local (one per core), local:N, or a cluster's address "
                        "(default: none, this process)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("compile", help="resources, placement and energy on a Loihi target and board")
    p.add_argument("graph", type=Path, help="integer NIR file from `quantize`")
    p.add_argument("--target", help="loihi2 or loihi1 (default: the target the graph was quantized for)")
    p.add_argument("--board", default="kapoho-point",
                   help="oheo-gulch (1 chip), kapoho-point (8), hala-point (1152), auto (the smallest that holds it)")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, type=Path, metavar="DIR",
                   help="build folder (the full per-process table lands in DIR/resources.txt)")
    p.add_argument("--images", type=Path, help="images to measure spike counts for the energy report")
    p.add_argument("--count", type=_positive, default=8, metavar="N", help="how many of --images")
    p.add_argument("--inputs", type=Path, help="graphs with time: input sequences (.npy B×T×shape) for the stream "
                   "period, energy and firing rates")
    p.add_argument("--steps", type=_positive, help="graphs with time without --inputs: steps per sample (default 100)")
    p.add_argument("--weights", choices=("shared", "dense"),
                   help="how a Conv's synapses are stored: shared (its kernel per core, Loihi 2's Conv: the default "
                        "from the target file) or dense (one synapse per source-destination pair)")
    p.add_argument("--share-weights", dest="weights", action="store_const", const="shared",
                   help=argparse.SUPPRESS)  # the earlier spelling of --weights shared, hidden
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="the whole pipeline to an HTML report (no arguments: the bundled default)")
    p.add_argument("checkpoint", metavar="CKPT_OR_NAME", nargs="?", help="checkpoint file or zoo model name")
    p.add_argument("--images", type=Path, help="folder of images")
    p.add_argument("--gt", type=Path, help="folder of ground-truth masks (metrics float vs integer)")
    p.add_argument("-o", "--out", "--output", dest="output", type=Path, metavar="DIR",
                   help=f"output folder (default: {DEMO_OUT} for the bundled default, else {RUN_OUT})")
    _size_flag(p)
    p.add_argument("--target", default="loihi2", help="the Loihi generation to build for (loihi2, loihi1)")
    p.add_argument("--board", default="auto", help="board to compile for (default: the smallest that holds the model)")
    p.add_argument("--backend", choices=("fast", "lava"), default="fast",
                   help="integer maps from the fast simulator or from the Loihi 2 network on Lava's CPU simulator")
    p.add_argument("--cluster", metavar="SPEC",
                   help="run the integer simulation on Ray workers: local (one per core), local:N, or an address "
                        "(default: none, this process)")
    p.add_argument("--inputs", type=Path, help="a NIR graph with time (CKPT_OR_NAME: its .nir file): input "
                   "sequences .npy B×T×(input shape); --gt then names a .npy of one class per sample")
    _time_flags(p)
    _non_strict_flag(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("deploy", help="run a saved build on a Loihi 2 system (needs Intel's lava-loihi)")
    p.add_argument("build", type=Path, help="build folder from `compile`")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("diff", help="compare two backends layer by layer; name the first layer that differs")
    p.add_argument("graph", type=Path, help="integer NIR file")
    p.add_argument("--images", type=Path, help="folder of images (LENS-Net graphs)")
    p.add_argument("--inputs", type=Path, help="graphs with time: a .npy array B×T×(input shape)")
    p.add_argument("--count", type=_positive, default=1, metavar="N", help="how many images")
    p.add_argument("--backends", nargs=2, metavar=("A", "B"), choices=("fast", "reference", "lava"),
                   help="the two backends compared: fast, reference (the int64 oracle) or lava (the Loihi 2 "
                        "network on Lava's CPU simulator, a minute or more per image) (default: fast reference)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("train", help="train a LENS-Net variant on ORSI data (resumable)")
    p.add_argument("--variant", default="lensnet-tiny", help="variant name (default lensnet-tiny)")
    p.add_argument("--data-root", type=Path, default=Path("../shared/datasets"), metavar="DIR",
                   help="folder holding ORSSD/ and EORSSD/")
    p.add_argument("--sets", nargs="+", default=["ORSSD/train", "EORSSD/train"],
                   help="training sets as NAME/split under the data root")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DIR",
                   help="run folder (resumed when it has state.pt)")
    p.add_argument("--cache", type=Path, metavar="DIR", help="folder for the decoded-image cache (default: --out)")
    _size_flag(p, "--input-size", dest="input_size", square=True,
               help="square input side N (multiples of 16; default: the variant's)")
    p.add_argument("--epochs", type=_positive, default=100, metavar="N", help="training epochs")
    p.add_argument("--batch-size", type=_positive, default=8, metavar="N", help="images per step")
    p.add_argument("--lr", type=_positive_real, default=1e-4, help="learning rate (Adam)")
    p.add_argument("--decay-rate", type=_positive_real, default=0.1,
                   help="step schedule: the learning rate's factor every --decay-epochs")
    p.add_argument("--decay-epochs", type=_positive, default=30, metavar="N", help="step schedule: epochs per decay")
    p.add_argument("--schedule", choices=("step", "cosine"), default="step",
                   help="step: ×decay-rate every decay-epochs; cosine: from --lr to --min-lr over --epochs")
    p.add_argument("--warmup-epochs", type=_natural, default=0, help="linear warm-up epochs (cosine)")
    p.add_argument("--min-lr", type=_real, default=0.0, help="final learning rate (cosine)")
    p.add_argument("--augment", choices=("geometric", "full"), default="geometric",
                   help="geometric: crops, flips, rotations; full: + multi-scale crops and colour jitter")
    p.add_argument("--clip", type=_positive_real, default=0.5, help="element-wise gradient clamp")
    p.add_argument("--seed", type=int, default=0, help="random seed (hold-out split, order, augmentation)")
    p.add_argument("--holdout", type=_natural, default=100, help="training pairs held out for validation")
    p.add_argument("--val-every", type=_positive, default=1, help="validate every N epochs")
    p.add_argument("--save-every", type=_natural, default=50, help="save the resume state every N steps")
    p.add_argument("--max-steps", type=_natural, metavar="N",
                   help="stop after this many steps, to resume later (default: none, train every epoch)")
    p.add_argument("--max-pairs", type=_natural, default=0, metavar="N",
                   help="use only the first N pairs, for tests (default: 0, all)")
    p.add_argument("--init", metavar="CKPT_OR_NAME",
                   help="start a new run from these weights (e.g. fine-tune at 352 a model pretrained at 128) "
                        "(default: none, random initial weights)")
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware fine-tuning of --init: weights on the loihi2 integer grid in the "
                        "forward pass, BatchNorm frozen; the saved weights are the grid's")
    p.add_argument("--threads", type=_positive, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("zoo", help="list or describe the model zoo")
    zsub = p.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    zsub.add_parser("list", help="variants and trained checkpoints")
    zi = zsub.add_parser("info", help="one model's registry entry")
    zi.add_argument("name", help="a zoo model or variant name")
    zr = zsub.add_parser("register", help="(maintainers) add a training run's best checkpoint to the zoo")
    zr.add_argument("name", help="the zoo model's name")
    zr.add_argument("--run", type=Path, required=True, help="training run folder")
    zr.add_argument("--data-root", type=Path, default=Path("../shared/datasets"), metavar="DIR",
                    help="folder holding ORSSD/ (its test split is evaluated)")
    zr.add_argument("--status", default="trained", help="e.g. 'training in progress (epoch 12 of 80)'")
    zr.add_argument("--command", dest="command_line", required=True, help="the command that trains/resumes it")
    zr.add_argument("--hardware", help="where it was trained (default: this machine)")
    zr.add_argument("--half", action="store_true", help="store float16 weights")
    zr.add_argument("--snap", nargs="?", const=True, type=_positive, metavar="SIZE",
                    help="snap weights and biases to the loihi2 integer grid at --size N first (qat.snap; "
                         "`--snap N` also works) and store them as int8 grid weights (default: stored as trained)")
    _size_flag(zr, square=True, help="the input side N --snap fits the grid at (default: none)")
    zr.add_argument("--notes", default="", help="a paragraph for the model card (e.g. what the metrics mean)")
    zs = zsub.add_parser("snap", help="(maintainers) put a zoo model's weights on the integer grid, int8 storage")
    zs.add_argument("name", help="the zoo model's name")
    _size_flag(zs, square=True, required=True, help="the input side N it is deployed at")
    zs.add_argument("--data-root", type=Path, default=Path("../shared/datasets"), metavar="DIR",
                    help="folder holding ORSSD/ (its test split is evaluated)")
    zs.add_argument("--status", help="the registry's new status line (default: keep the current one)")
    zs.add_argument("--native", action="store_true",
                    help="make SIZE² the model's native input too (evaluate, predict and the demo use it); "
                         "choose it on the hold-out split (benchmarks/holdout_sizes.py)")
    zs.add_argument("--notes", help="replace the model card's notes paragraph (default: keep it)")
    p.set_defaults(func=cmd_zoo)
    for leaf in _leaves(parser):
        leaf.add_argument("--max-memory", type=_positive_real, metavar="GIB",
                          help=f"memory limit in GiB (default 4, or ${MEMORY_ENV}): a NIR file declaring more, "
                               "a larger input size or image is refused before anything is allocated")
        # SUPPRESS: a -v before the command name is not reset by the command's own default
        leaf.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        leaf.description = DESCRIPTIONS.get(leaf.prog.removeprefix("lensnet-deploy "), leaf.description)
        for action in leaf._actions:  # one metavar per kind of value, not the flag's name in capitals
            if action.metavar is None and action.dest in METAVARS:
                action.metavar = METAVARS[action.dest]
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
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser: `lensnet-deploy <command>: error: …`
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    verbose = _verbose(args)
    if not verbose:
        from . import quiet

        quiet.install()
    _default_out(args)
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
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"lensnet-deploy {args.command}: internal error (a bug in lensnet-deploy, please report it with "
              f"the traceback that -v/--verbose prints): {type(err).__name__}: {err}{where}", file=sys.stderr)
        code = EXIT_INTERNAL
        return code
    finally:
        if code not in (EXIT_OK, EXIT_INTERRUPTED):  # a failed command leaves no empty output folders
            _remove_empty(created)
        if memory_env is None:
            os.environ.pop(MEMORY_ENV, None)
        else:
            os.environ[MEMORY_ENV] = memory_env


def _default_out(args: argparse.Namespace) -> None:
    """``run``'s folder when -o is not given: out/demo for the bundled default (the README's
    quick start), out/run for the user's own model."""
    if args.command == "run" and getattr(args, "output", "") is None:
        args.output = DEMO_OUT if args.checkpoint is None else RUN_OUT


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``args`` holds (``zoo list`` included)."""
    for dest in ("command", "zoo_command"):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction) and a.dest == dest]
        name = getattr(args, dest, None)
        if not subs or name not in subs[0].choices:
            break
        parser = subs[0].choices[name]
    return parser


def _innermost_frame(err: BaseException) -> str:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    return f" (at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno})"


# Each command's description: its --help and the README's command table (``command_table``).
DESCRIPTIONS: dict[str, str] = {
    "predict": "Float inference: one grayscale PNG per image, the authors' way: sigmoid of p1, bilinear to the "
               "image size, min-max to 0..255. The output folder may not be the input folder.",
    "evaluate": "S-measure, MAE, weighted F, max/mean/adaptive F, max/mean/adaptive E (pysodmetrics); predictions "
                "and masks pair by file stem; JSON keys `smeasure mae wfmeasure max_fmeasure mean_fmeasure "
                "adp_fmeasure max_emeasure mean_emeasure adp_emeasure`.",
    "export": "Exact float64 NIR graph (standard primitives + the `lensnet` metadata convention for attention, "
              "gating, sigmoid and resizing); prints nodes by type, parameters, neurons, synaptic operations, the "
              "share in standard NIR and the extension nodes. The extension of -o picks the format: `.nir` writes "
              "NIR (HDF5), `.onnx` writes ONNX and checks it with onnxruntime; a --format that disagrees with it "
              "is refused. `--snap` first puts your checkpoint's weights and folded biases on the loihi2 integer "
              "grid (`qat.snap`, docs/qat.md), so that the quantized model agrees with the exported float graph "
              "spike for spike (99.9 % of spike counts instead of ~88–91 %); the zoo's models are stored snapped "
              "already.",
    "quantize": "Integer NIR (int8 weights with per-layer exponents, per-channel shifts per residual stream, integer "
                "thresholds, 24-bit state proven by a static bound); prints per-layer bound, observed maximum, "
                "weight SQNR, the share of spike counts equal to the float model, saturation counts (weights "
                "clipped, neurons at the top count, sigmoid inputs beyond the gate table) and, with the calibration "
                "images' masks (`--gt`), float vs integer SOD metrics with their deltas and the worst image by name. "
                "Any NIR graph with time (LIF, CubaLIF, IF, LI, CubaLI, I, Affine, Linear, Scale, Conv1d/2d, "
                "SumPool2d/AvgPool2d, Flatten, Delay, recurrence; written by Norse, snnTorch, SpikingJelly or the "
                "`nir` package): `quantize G.nir --calib X.npy --dt DT [--method euler|exact] [--reset "
                "zero|subtract] -o Q.nir` gives its integer model in Loihi 2's CUBA formats (integer semantics "
                "v4) with a per-layer report (docs/nir.md).",
    "simulate": "Bit-exact integer simulation → saliency PNGs (fast: exact integers carried in float32, each node's "
                "type chosen from a static bound, `hardware/integer/fast_sim.py`; reference: the int64 numpy "
                "oracle; lava: the Loihi 2 network of Lava library processes on Lava's CPU simulator, built once, "
                "images streamed one per step, `docs/lava.md`). `--cluster local[:N]|ADDRESS` spreads the batches "
                "over Ray workers; a rerun into the same folder reuses the maps the same model wrote from the same "
                "image content (`OUT/.lensnet-maps.json`) and says how many it reused. Graphs with time: "
                "`simulate G.nir --inputs X.npy --dt DT --backend float -o F.npz` runs the float reference, "
                "`simulate Q.nir --inputs X.npy [--backend fast|reference|lava] -o Y.npz` the integers (one array "
                "per Output node); lava streams the samples through one network, `period` steps apart.",
    "compile": "Builds the Loihi 2 network (`docs/lava.md`), audits every process against the chip's formats, "
               "counts neurons, synapses and cores per process, places them on cores and chips against a lower "
               "bound and prints the totals first: cores, chips, the neuro-core share of synaptic operations and, "
               "when images are given, the energy per image (paper convention and Loihi-style); the per-process "
               "table (every process off the neuro-cores with its work per image too) goes to "
               "`OUT/resources.txt` (-v prints it). Exit code 3 names the layer and rule (design rules) or the "
               "layer, limit, smallest board and largest input (board too small). Graphs with time: `compile Q.nir "
               "[--inputs X.npy | --steps N] --board auto -o BUILD` builds the network of Lava library processes "
               "only (LIFReset per (du, dv) group, Sparse, DelaySparse, RingBuffer sources) that streams samples "
               "through one build, audits it, places it and, with `--inputs`, adds energy and firing rates "
               "(docs/nir.md).",
    "run": "The whole pipeline (export → quantize → float and integer maps → compile → evaluate) into one folder: "
           "`OUT/report.html` (self-contained: saliency grid, float vs integer metrics, resources, energy, firing "
           "rates) with every artifact beside it; each step is skipped when its provenance record matches. Ends "
           "with each step's time and the float and integer metrics. No arguments: the zoo's `lensnet-tiny` on "
           "the twelve bundled ORSSD test images, into `out/demo`. Graphs with time: `run G.nir --inputs X.npy "
           "--dt DT [--gt LABELS.npy] -o OUT` quantizes, runs the float reference and the fast simulator, streams 4 "
           "samples through the Lava network and checks them equal, compiles, and writes `OUT/report.html` "
           "(rasters, per-layer rates, float vs integer agreement, accuracy with labels, resources, energy).",
    "deploy": "Run a saved build on a Loihi 2 system with `Loihi2HwCfg`. Without Intel's (non-public) lava-loihi "
              "extension it says exactly that and exits 4 (unavailable: the build is fine, this machine cannot run "
              "it); the build stays complete (its network described in `network.json`). Builds of graphs with time "
              "hold Lava library processes only.",
    "diff": "Compare two backends layer by layer, by default fast with reference (seconds); `--backends fast lava` "
            "compares with the Loihi 2 network on Lava's CPU simulator (a minute or more per image). Prints the "
            "pair it compares, then the first layer that differs and how many values (exit 2), or that all layers "
            "are equal. Graphs with time (`--inputs X.npy`) are compared every step.",
    "train": "The authors' recipe (0.3·BCE + 0.7·IoU on four outputs, Adam, step decay, element-wise gradient clamp "
             "0.5, sigmoid surrogate) with flips, 90° rotations and crops; validates on a seeded hold-out of the "
             "training data; resumes from `RUN/state.pt` to the step; writes `steps.csv`, `history.json`, "
             "`curves.png`, `best.safetensors`. `--qat --init CKPT_OR_NAME`: quantization-aware fine-tuning, every "
             "convolution weight on the loihi2 integer grid in the forward pass (straight-through gradient, "
             "BatchNorm frozen); the saved model is snapped (docs/qat.md).",
    "zoo list": "Variants and trained checkpoints with their native input size and metrics.",
    "zoo info": "One model's registry entry (a variant's configuration when it has no checkpoint).",
    "zoo register": "(maintainers) Copy a run's best checkpoint into `model_zoo/`, evaluate it on ORSSD test, write "
                    "the registry entry and model card. `--snap --size N` puts it on the integer grid at N² first "
                    "and stores int8 weights with a float32 scale per output channel (\"int8-grid\": exact for a "
                    "snapped model, half of float16's size; float16 cannot hold the grid).",
    "zoo snap": "(maintainers) Put a model already in the zoo on the integer grid at N², int8 storage, keeping its "
                "training record.",
}
COMMON_FLAGS = ("help", "max_memory", "verbose")  # on every command: left out of the table's rows


def _table_usage(p: argparse.ArgumentParser) -> str:
    """One command's usage, positionals first, without the flags every command has."""
    fmt = _Help(p.prog, width=10_000)
    actions = [a for a in p._actions if a.dest not in COMMON_FLAGS and a.help is not argparse.SUPPRESS]
    positionals = [a for a in actions if not a.option_strings]
    optionals = [a for a in actions if a.option_strings]
    fmt.add_usage(None, positionals, [], prefix="")
    head = fmt.format_help().strip()
    fmt = _Help(p.prog, width=10_000)
    fmt.add_usage(None, optionals, [], prefix="")
    tail = fmt.format_help().strip().removeprefix(p.prog).strip()
    return f"{head} {tail}".strip()


def command_table(parser: argparse.ArgumentParser | None = None) -> str:
    """The README's command table (Markdown), rendered from the parsers: one row per command with
    its usage and description (``scripts/cli_table.py`` writes it into README.md)."""
    parser = parser or build_parser()
    rows = ["| command | what it does |", "| --- | --- |"]
    for leaf in _leaves(parser):
        usage = _table_usage(leaf).replace("|", "\\|")
        text = " ".join((leaf.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{usage}` | {text} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))
