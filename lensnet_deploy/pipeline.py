"""``run``: checkpoint → NIR → integer NIR → build → simulations → metrics → HTML report.

Each step is one function from its input artifacts to its output artifact in
the output folder; a step whose artifacts are newer than its inputs is
skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from . import interrupt
from .atomic import write_text_atomic
from .datasets import list_images, normalize, pair_files, read_image
from .errors import DatasetError

SAMPLES = Path(__file__).resolve().parent / "data" / "samples" / "orssd-test"


def fresh(outputs: list[Path], inputs: list[Path]) -> bool:
    """True when every output exists and is newer than every input."""
    if not all(p.exists() for p in outputs):
        return False
    newest_input = max((p.stat().st_mtime for p in inputs if p.exists()), default=0.0)
    return min(p.stat().st_mtime for p in outputs) >= newest_input


def _step(name: str, outputs: list[Path], inputs: list[Path], work: Callable[[], None],
          log: Callable[[str], None]) -> None:
    interrupt.check()
    if fresh(outputs, inputs):
        log(f"[skip] {name}: up to date")
        return
    log(f"[run ] {name}")
    work()
    interrupt.check()  # a Ctrl-C swallowed during the step (in a weakref callback) stops the run here


def run_pipeline(checkpoint: str, images: Path, gt: Path | None, out: Path, board: str = "auto",
                 target: str = "loihi2", log: Callable[[str], None] = print, backend: str = "fast",
                 cluster: str | None = None) -> dict:
    """Run every step into ``out``; returns the summary written to ``out/summary.json``.

    ``cluster`` (``local``, ``local:N`` or a Ray address) spreads the integer simulation's
    batches over Ray workers (``lensnet_deploy.cluster``); the maps are the same."""
    from . import compile as compile_build
    from . import export_nir, load_lensnet, prepare, quantize
    from .export import read_nir, write_nir
    from .export.summary import summarize
    from .metrics import evaluate_dirs
    from .predict import check_output_dir, write_maps

    out = check_output_dir(out, images, *( [gt] if gt else []))
    files = list_images(images)
    if gt is not None:
        pair_files(files, list_images(gt, "mask"))
    ckpt_path = Path(checkpoint)
    model = load_lensnet(checkpoint)
    size = model.input_size
    inputs = [ckpt_path] if ckpt_path.exists() else []
    float_nir, int_nir = out / "model.nir", out / "model.q.nir"

    def do_export() -> None:
        graph = export_nir(model, size)
        write_nir(graph, float_nir)
        write_text_atomic(out / "export-summary.json", json.dumps(summarize(graph).to_dict(), indent=1) + "\n")

    _step("export", [float_nir], inputs, do_export, log)

    def do_quantize() -> None:  # the integer graph depends on the weights alone (``quantize``)
        write_nir(quantize(read_nir(float_nir)), int_nir)

    _step("quantize", [int_nir], [float_nir], do_quantize, log)

    def do_float_maps() -> None:
        write_maps(files, size, out / "maps" / "float", lambda x: model(x)[0])

    _step("float maps", [out / "maps" / "float" / f"{p.stem}.png" for p in files], inputs, do_float_maps, log)

    prepared: dict = {}

    def integer_model():
        """The integer file, read and prepared once for the steps that need it."""
        if "model" not in prepared:
            prepared["model"] = prepare(read_nir(int_nir))
        return prepared["model"]

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
        try:
            write_maps(files, size, out / "maps" / "integer",
                       lambda x: integer_model().simulate(x, backend).logits[0], batch, run_batches=run_batches)
        finally:
            integer_model().close()

    where = f", cluster {cluster}" if cluster else ""
    _step(f"integer simulation ({backend}{where})", [out / "maps" / "integer" / f"{p.stem}.png" for p in files],
          [int_nir], do_int_maps, log)

    def do_compile() -> None:
        x = torch.stack([normalize(read_image(p), size) for p in files[:8]])
        compile_build(integer_model(), target, board, images=x).save(out / "build")

    _step(f"compile ({target}, {board})", [out / "build" / "build.json"], [int_nir], do_compile, log)

    metrics = {}
    if gt is not None:
        def do_metrics() -> None:
            rows = {kind: evaluate_dirs(out / "maps" / kind, gt, per_image=True)[0] for kind in ("float", "integer")}
            write_text_atomic(out / "metrics.json", json.dumps(rows, indent=1) + "\n")

        _step("evaluate", [out / "metrics.json"], [out / "maps" / "float", out / "maps" / "integer"], do_metrics, log)
        metrics = json.loads((out / "metrics.json").read_text())
    build_info = json.loads((out / "build" / "build.json").read_text())
    summary = {"checkpoint": str(checkpoint), "input_size": list(size), "images": len(files),
               "board": build_info["board"],
               "target": target, "backend": backend, "cluster": cluster, "metrics": metrics,
               "build": build_info}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    from .report import write_report

    write_report(out, files, gt, summary)
    log(f"[done] report: {out / 'report.html'}")
    return summary


def default_inputs() -> tuple[str, Path, Path]:
    if not SAMPLES.exists():
        raise DatasetError(f"{SAMPLES}: bundled samples are missing")
    return "lensnet-tiny", SAMPLES / "Image", SAMPLES / "GT"


