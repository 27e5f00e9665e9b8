"""Registering trained checkpoints in the model zoo: file, metrics, registry entry, model card.

``register_model`` copies a run's best checkpoint into ``model_zoo/``,
evaluates it on the ORSSD test set at its native size (float), and writes
the registry entry (variant, input size, D, data, epochs, wall time,
hardware, metrics, size, sha256) and a model card.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .checkpoint import GRID_TAG, load_lensnet, save_lensnet
from .datasets import resolve_layout
from .errors import LensNetDeployError
from .metrics import evaluate_dirs
from .model_zoo.registry import REGISTRY_FILE, ZOO_DIR, zoo_entries
from .predict import predict_dir

DATA_TERMS = (
    "ORSSD (Li et al., IEEE TGRS 2019) and EORSSD (Zhang et al., IEEE TIP 2021) are research "
    "benchmarks published without a licence file. These weights were trained on their training "
    "splits for research use; check the datasets' terms before any other use. ORSSD test, the "
    "benchmark, was never used for training or model selection."
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def evaluate_on_orssd(checkpoint: Path, data_root: Path, batch_size: int = 8) -> dict[str, float]:
    """Float metrics of a checkpoint on ORSSD test at its native input size."""
    model = load_lensnet(checkpoint)
    images, masks = resolve_layout(data_root / "ORSSD", "test")
    with tempfile.TemporaryDirectory() as tmp:
        predict_dir(model, images, tmp, batch_size=batch_size)
        metrics, _, _ = evaluate_dirs(tmp, masks)
    return metrics


def _card(name: str, entry: dict[str, Any], curves: str | None) -> str:
    m = entry["metrics"]
    cfg = entry["config"]
    h, w = entry["input_size"]
    lines = [
        f"# {name}",
        "",
        f"LENS-Net variant `{entry['variant']}` trained by lensnet-deploy. Status: **{entry['status']}**.",
        "",
        "| | |",
        "| --- | --- |",
        f"| architecture | widths {cfg['embed_dims']}, transformer blocks {cfg['transformer_blocks']}, "
        f"{cfg['heads']} heads, D = {cfg['max_count']} |",
        f"| parameters | {entry['parameters']:,} |",
        f"| input size | {h}×{w} |",
        f"| training data | {entry['training_data']} |",
        f"| epochs | {entry['epochs']} (best hold-out S-measure at epoch {entry['best_epoch']}) |",
        f"| wall time | {entry['wall_time_h']:.2f} h of training steps |",
        f"| hardware | {entry['hardware']} |",
        f"| file | `{entry['file']}`, {entry['file_size_bytes'] / 2**20:.2f} MB ({entry['dtype']}), "
        f"sha256 `{entry['sha256']}` |",
        *([f"| integer grid | weights and folded biases snapped to the loihi2 grid at {entry['snapped_at']}² "
           f"(`qat.snap`, docs/qat.md): the float model is the integer model up to the gate table |"]
          if entry.get("snapped_at") else []),
        "",
        "## ORSSD test (200 images, float model, native size)",
        "",
        "| S-measure | MAE | max F | mean E | weighted F |",
        "| --- | --- | --- | --- | --- |",
        f"| {m['smeasure']:.4f} | {m['mae']:.4f} | {m['max_fmeasure']:.4f} | {m['mean_emeasure']:.4f} "
        f"| {m['wfmeasure']:.4f} |",
        "",
        "The LENS-Net paper reports S 0.9279 / MAE 0.0109 for the full model at 352² trained for up to "
        "1000 epochs on a GPU; these are our own weights, trained on a CPU.",
        "",
        "## Reproduce or continue",
        "",
        "```bash",
        entry["command"],
        "```",
        "",
        "## Data terms",
        "",
        DATA_TERMS,
    ]
    if entry.get("notes"):
        at = lines.index("## Reproduce or continue")
        lines[at:at] = ["## Notes", "", entry["notes"], ""]
    if curves:
        lines[2:2] = [f"![learning curves]({curves})", ""]
    return "\n".join(lines) + "\n"


def register_model(name: str, run_dir: Path, data_root: Path, status: str, command: str,
                   hardware: str | None = None, half: bool = False, notes: str = "",
                   snap: int | None = None) -> dict[str, Any]:
    """Copy ``run_dir/best.safetensors`` into the zoo as ``name`` and describe it.

    ``snap``: first put the weights and biases on the loihi2 integer grid at ``snap``² input
    (``qat.snap``, what ``train --qat`` saves) and store them as int8 grid weights, which hold
    that grid exactly at a quarter of float32 (float16 does not)."""
    import torch

    from .train import load_run_state

    best = run_dir / "best.safetensors"
    state_path = run_dir / "state.pt"
    if not best.exists() or not state_path.exists():
        raise LensNetDeployError(f"{run_dir}: no best.safetensors/state.pt (not a training run folder)")
    state = load_run_state(state_path)
    cfg = state["config"]
    history = state["history"]
    best_row = max((h for h in history if "val_smeasure" in h), key=lambda h: h["val_smeasure"])
    model = load_lensnet(best)
    extra = {"epoch": str(best_row["epoch"]), "trained_by": "lensnet-deploy train"}
    if snap:
        from .qat import snap as snap_model

        if half:
            raise LensNetDeployError("--snap stores int8 grid weights; it cannot be combined with --half")
        model = snap_model(model, (snap, snap))
        extra["snapped_at"] = f"{snap}x{snap}"
    target = ZOO_DIR / f"{name}.safetensors"
    save_lensnet(model, target, variant=name, half=half, grid=bool(snap), extra=extra)
    metrics = evaluate_on_orssd(target, data_root)
    entry = {
        "file": target.name,
        "variant": cfg["variant"],
        "status": status,
        "config": model.config.to_dict(),
        "input_size": list(model.input_size),
        "D": model.config.max_count,
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_data": " + ".join(cfg["train_sets"]) + f" ({cfg['holdout']} pairs held out for validation)",
        "epochs": len(history),
        "best_epoch": best_row["epoch"],
        "wall_time_h": state["seconds"] / 3600,
        "hardware": hardware or f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "recipe": {k: cfg[k] for k in ("batch_size", "lr", "decay_rate", "decay_epochs", "clip", "seed",
                                         "schedule", "warmup_epochs", "min_lr", "augment") if k in cfg},
        "metrics": metrics,
        "file_size_bytes": target.stat().st_size,
        "dtype": "float16" if half else GRID_TAG if snap else "float32",
        "sha256": sha256(target),
        "command": command,
    }
    if snap:
        entry["snapped_at"] = snap
    if notes:
        entry["notes"] = notes
    cards = ZOO_DIR / "cards"
    cards.mkdir(exist_ok=True)
    curves = None
    if (run_dir / "curves.png").exists():
        shutil.copyfile(run_dir / "curves.png", cards / f"{name}-curves.png")
        curves = f"{name}-curves.png"
    _publish(name, entry, curves)
    return entry


def _publish(name: str, entry: dict[str, Any], curves: str | None) -> None:
    """Write ``name``'s model card (``curves``: its learning-curve image in cards/) and registry entry."""
    cards = ZOO_DIR / "cards"
    write_text_atomic(cards / f"{name}.md", _card(name, entry, curves))
    registry = {"format": 1, "models": {**zoo_entries(), name: entry}}
    write_text_atomic(REGISTRY_FILE, json.dumps(registry, indent=1) + "\n")


def snap_entry(name: str, size: int, data_root: Path, status: str | None = None, native: bool = False,
               notes: str | None = None) -> dict[str, Any]:
    """Put an existing zoo model's weights on the loihi2 integer grid at ``size``² (``qat.snap``)
    and store it as int8 grid weights, keeping its training record; the metrics are measured
    again. For entries whose run folder is gone (``register --snap`` does this for a new run).

    ``native``: ``size``² also becomes the input the model is evaluated and deployed at (a
    convolutional model runs at any multiple of 16; pick the size on the hold-out split)."""
    from .qat import snap as snap_model

    entry = zoo_entries().get(name)
    if entry is None:
        raise LensNetDeployError(f"{name!r}: no such zoo model (see `lensnet-deploy zoo list`)")
    model = snap_model(load_lensnet(ZOO_DIR / entry["file"]), (size, size))
    if native:
        model.set_input_size((size, size))
    target = ZOO_DIR / entry["file"]
    save_lensnet(model, target, variant=name, grid=True,
                 extra={"trained_by": "lensnet-deploy train", "snapped_at": f"{size}x{size}"})
    flag = " --native" if native else ""
    entry = {**entry, "metrics": evaluate_on_orssd(target, data_root), "file_size_bytes": target.stat().st_size,
             "dtype": GRID_TAG, "sha256": sha256(target), "snapped_at": size,
             "config": model.config.to_dict(), "input_size": list(model.input_size),
             "command": f"{entry['command']} && lensnet-deploy zoo snap {name} --size {size}{flag}"}
    if status:
        entry["status"] = status
    if notes:
        entry["notes"] = notes
    cards = ZOO_DIR / "cards"
    _publish(name, entry, f"{name}-curves.png" if (cards / f"{name}-curves.png").exists() else None)
    return entry

