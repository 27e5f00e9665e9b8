"""``run``: checkpoint → NIR → integer NIR → build → simulations → metrics → HTML report.

Each step is one function from its input artifacts to its output artifacts in the output
folder, and records what made them in ``OUT/.provenance/<step>.json`` (``provenance``): the
sha256 of every input file, the arguments that change the outputs and the versions. A step is
skipped only when that record matches and its outputs exist, so an interrupted run resumes
where it stopped; otherwise it removes its stale outputs and runs again, saying why. A step
that runs removes the summary and report first: a run that fails never leaves a report of
another model, other images or another board. The maps are kept per image (``predict``'s
manifest): a changed image is simulated again, the others are reused. ``times`` receives each
step's seconds (``None``: skipped), which the CLI prints at the end with the metrics.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import interrupt
from .atomic import write_text_atomic
from .datasets import list_images, normalize, pair_files, read_image
from .errors import DatasetError
from .provenance import Hashes, read_record, record, remove_record, why_rerun, write_record

SAMPLES = Path(__file__).resolve().parent / "data" / "samples" / "orssd-test"
REPORT_OUTPUTS = ("summary.json", "report.html", "report")
COMPILE_IMAGES = 8  # images whose spike counts give the build's energy per image


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_report(out: Path) -> None:
    """Remove the summary and the report (their record stays, to say later what changed)."""
    for name in REPORT_OUTPUTS:
        _remove(out / name)


def _step(name: str, rec: dict[str, Any], work: Callable[[], None], log: Callable[[str], None], out: Path,
          stale: Callable[[], list[Path]] = lambda: [], times: dict[str, float | None] | None = None) -> None:
    """Run ``work`` unless ``rec`` is the step's record on disk and its outputs exist; before
    running, remove the record, the paths ``stale`` names and the report. ``times[name]``: the
    step's seconds, ``None`` when skipped."""
    interrupt.check()
    reason = why_rerun(read_record(out, rec["step"]), rec, out)
    if reason is None:
        log(f"[skip] {name}: up to date")
        if times is not None:
            times[name] = None
        return
    log(f"[run ] {name}: {reason}")
    t0 = time.perf_counter()
    remove_record(out, rec["step"])  # a step half done never looks finished
    _remove_report(out)
    for path in stale():
        _remove(path)
    work()
    interrupt.check()  # a Ctrl-C swallowed during the step (in a weakref callback) stops the run here
    write_record(out, rec)
    if times is not None:
        times[name] = time.perf_counter() - t0


def _other_maps(folder: Path, files: list[Path]) -> list[Path]:
    """Maps in ``folder`` of images that are not in this run's input set."""
    keep = {f"{p.stem}.png" for p in files}
    return [p for p in folder.glob("*.png") if p.name not in keep] if folder.is_dir() else []


def checkpoint_file(checkpoint: str) -> Path:
    """The file a checkpoint argument names: the path itself, or a zoo model's safetensors file."""
    from .model_zoo.registry import zoo_checkpoint

    path = Path(checkpoint)
    if path.exists():
        return path
    zoo = zoo_checkpoint(checkpoint)
    if zoo is None:
        raise DatasetError(f"{checkpoint}: no such checkpoint file or zoo model")
    return zoo


def run_pipeline(checkpoint: str, images: Path, gt: Path | None, out: Path, board: str = "auto",
                 target: str = "loihi2", log: Callable[[str], None] = print, backend: str = "fast",
                 cluster: str | None = None, size: tuple[int, int] | None = None,
                 times: dict[str, float | None] | None = None, strict: bool = True) -> dict:
    """Run every step into ``out``; returns the summary written to ``out/summary.json``.

    ``strict=False`` loads the checkpoint as the authors' inference does (``load_lensnet``).
    ``size``: the input size (default: the model's native one). ``cluster`` (``local``,
    ``local:N`` or a Ray address) spreads the integer simulation's batches over Ray workers
    (``lensnet_deploy.cluster``); the maps are the same, so it is not part of the maps' record
    (the summary names it). ``times`` (a dict) receives each step's seconds, ``None`` if skipped."""
    from . import compile as compile_build
    from . import export_nir, load_lensnet, prepare, quantize
    from .export import read_nir, write_nir
    from .export.summary import summarize
    from .hardware.target.chips import load_target
    from .metrics import evaluate_dirs
    from .predict import check_output_dir, write_maps
    from .progress import Phases, batch_bar, phase

    out = check_output_dir(out, images, *([gt] if gt else []))
    files = list_images(images)
    masks = [m for _, m in pair_files(files, list_images(gt, "mask"))] if gt is not None else []
    model = load_lensnet(checkpoint, strict=strict)
    if size is not None:  # refused in one line before anything is allocated
        from .export import limits
        from .model_zoo import check_input_size

        check_input_size(size)
        limits.check_memory(limits.activation_bytes(model.config.embed_dims[0], size[0], size[1], 8),
                            f"run at {size[0]}x{size[1]} needs activations of about")
    size = list(size or model.input_size)
    hashes = Hashes()
    ckpt_sha = hashes(checkpoint_file(checkpoint))
    image_shas = hashes.names(files)
    float_nir, int_nir = out / "model.nir", out / "model.q.nir"
    float_dir, int_dir = out / "maps" / "float", out / "maps" / "integer"
    maps_of = [f"{p.stem}.png" for p in files]
    model_args = {"model": str(checkpoint), "input_size": size, **({} if strict else {"strict": False})}

    def do_export() -> None:
        with phase("export"):
            graph = export_nir(model, tuple(size))
        write_text_atomic(out / "export-summary.json", json.dumps(summarize(graph).to_dict(), indent=1) + "\n")
        write_nir(graph, float_nir)  # last: the file an interrupted run is resumed after

    _step("export", record("export", model_args, {"checkpoint": ckpt_sha}, ["model.nir", "export-summary.json"]),
          do_export, log, out, lambda: [float_nir, out / "export-summary.json"], times)

    # the integer graph depends on the weights alone (``quantize``); it is made for loihi2 whatever
    # ``target`` the build is for
    quantize_target = "loihi2"

    def do_quantize() -> None:
        with phase("quantize"):
            write_nir(quantize(read_nir(float_nir), target=quantize_target), int_nir)

    _step("quantize", record("quantize", {"target": quantize_target}, {"model.nir": hashes(float_nir)},
                             ["model.q.nir"]), do_quantize, log, out, lambda: [int_nir], times)

    def do_float_maps() -> None:
        write_maps(files, tuple(size), float_dir, lambda x: model(x)[0], key=f"float {ckpt_sha} {size[0]}x{size[1]}",
                   hashes=hashes, progress=lambda g, n: batch_bar(g, n, "float maps"))

    _step("float maps", record("float maps", model_args, {"checkpoint": ckpt_sha, "images": image_shas},
                               [f"maps/float/{m}" for m in maps_of]),
          do_float_maps, log, out, lambda: _other_maps(float_dir, files), times)

    prepared: dict = {}

    def integer_model():
        """The integer file, read and prepared once for the steps that need it."""
        if "model" not in prepared:
            prepared["model"] = prepare(read_nir(int_nir))
        return prepared["model"]

    int_sha = hashes(int_nir)

    def do_int_maps() -> None:
        # the Lava network takes one image per step: one batch fills its pipeline once (on a
        # cluster each worker builds it once and streams its batches)
        batch = len(files) if backend == "lava" and not cluster else 8
        run_batches = None
        if cluster:
            from .cluster import map_batches

            def run_batches(loaders):
                for index, result in map_batches(integer_model(), loaders, backend, cluster, full=False):
                    yield index, result.logits[0]
        phases = None
        if backend == "lava" and not cluster:  # bars for the network's build, start and steps
            phases = Phases("Lava")
            integer_model().lava(capacity=batch).progress = phases
        try:
            write_maps(files, tuple(size), int_dir, lambda x: integer_model().simulate(x, backend).logits[0], batch,
                       progress=lambda g, n: batch_bar(g, n, f"integer maps ({backend})"),
                       run_batches=run_batches, key=f"integer {int_sha} {backend}", hashes=hashes)
        finally:
            if phases is not None:
                phases.close()
            integer_model().close()

    where = f", cluster {cluster}" if cluster else ""
    _step(f"integer simulation ({backend}{where})",
          record("integer simulation", {"backend": backend}, {"model.q.nir": int_sha, "images": image_shas},
                 [f"maps/integer/{m}" for m in maps_of]),
          do_int_maps, log, out, lambda: _other_maps(int_dir, files), times)

    def do_compile() -> None:
        x = torch.stack([normalize(read_image(p), tuple(size)) for p in files[:COMPILE_IMAGES]])
        with phase("compile"):
            compile_build(integer_model(), target, board, images=x).save(out / "build")

    _step(f"compile ({target}, {board})",
          record("compile", {"target": target, "board": board, "conv_weights": load_target(target).conv_weights},
                 {"model.q.nir": int_sha, "images": hashes.names(files[:COMPILE_IMAGES])}, ["build/build.json"]),
          do_compile, log, out, lambda: [out / "build"], times)

    metrics: dict = {}
    map_shas = {"float maps": hashes.names(float_dir / m for m in maps_of),
                "integer maps": hashes.names(int_dir / m for m in maps_of)}
    if gt is not None:
        def do_metrics() -> None:
            rows = {kind: evaluate_dirs(out / "maps" / kind, gt, per_image=True)[0] for kind in ("float", "integer")}
            write_text_atomic(out / "metrics.json", json.dumps(rows, indent=1) + "\n")

        _step("evaluate", record("evaluate", {}, {**map_shas, "masks": hashes.names(masks)}, ["metrics.json"]),
              do_metrics, log, out, lambda: [out / "metrics.json"], times)
        metrics = json.loads((out / "metrics.json").read_text())
    elif (out / "metrics.json").exists() or read_record(out, "evaluate"):  # no masks this time: no metrics
        remove_record(out, "evaluate")
        _remove(out / "metrics.json")
        _remove_report(out)

    build = out / "build"
    report_inputs = {"images": image_shas, "masks": hashes.names(masks), **map_shas,
                     "build files": hashes.names(p for p in (build / "build.json", build / "energy.txt",
                                                        build / "resources.txt", build / "firing_rates.png")
                                           if p.exists()),
                     "export-summary.json": hashes(out / "export-summary.json")}
    if gt is not None:
        report_inputs["metrics.json"] = hashes(out / "metrics.json")
    report_args = {**model_args, "target": target, "board": board, "backend": backend,
                   "cluster": cluster}

    def do_report() -> None:
        from .report import write_report

        build_info = json.loads((build / "build.json").read_text())
        summary = {"checkpoint": str(checkpoint), "checkpoint_sha256": ckpt_sha, "input_size": size,
                   "images": len(files), "board": build_info["board"], "target": target, "backend": backend,
                   "cluster": cluster, "metrics": metrics, "build": build_info}
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
        write_report(out, files, gt, summary)

    _step("report", record("report", report_args, report_inputs, ["summary.json", "report.html"]),
          do_report, log, out, times=times)
    log(f"[done] report: {out / 'report.html'}")
    return json.loads((out / "summary.json").read_text())


def default_inputs() -> tuple[str, Path, Path]:
    if not SAMPLES.exists():
        raise DatasetError(f"{SAMPLES}: bundled samples are missing")
    return "lensnet-tiny", SAMPLES / "Image", SAMPLES / "GT"
