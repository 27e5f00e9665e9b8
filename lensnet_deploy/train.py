"""Training LENS-Net with the authors' recipe, resumable to the step.

Recipe (LENSNET.md): 0.3·BCE + 0.7·IoU on all four outputs, Adam, lr decayed
×``decay_rate`` every ``decay_epochs`` epochs, gradients clamped element-wise
to ±``clip``, the sigmoid soft surrogate in the spike function's backward.
A run folder holds ``state.pt`` (resume point), ``best.safetensors`` (best
validation S-measure), ``steps.csv``, ``history.json`` and ``curves.png``.
Batches depend only on (seed, epoch, step), so an interrupted run resumed
from ``state.pt`` computes the same losses as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_path, write_text_atomic
from .checkpoint import save_lensnet
from .errors import LensNetDeployError
from .losses import hybrid_loss
from .metrics import SODMetrics
from .model_zoo import LensNet, variant_config
from .predict import saliency_map
from .train_data import CROP_MARGINS, PairCache, augment_batch, collect_pairs, plain_batch, split_holdout


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in ``state.pt``)."""

    variant: str = "lensnet-tiny"
    data_root: str = "../shared/datasets"
    train_sets: tuple[str, ...] = ("ORSSD/train", "EORSSD/train")
    input_size: int = 0  # 0: the variant's native size
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-4
    decay_rate: float = 0.1
    decay_epochs: int = 30
    clip: float = 0.5
    seed: int = 0
    holdout: int = 100
    val_every: int = 1
    save_every: int = 50
    max_pairs: int = 0  # 0: all pairs (a small number makes quick tests)
    init: str = ""  # checkpoint or zoo name whose weights a new run starts from (fine-tuning)
    schedule: str = "step"  # "step": ×decay_rate every decay_epochs; "cosine": lr → min_lr over the run
    warmup_epochs: int = 0  # linear warm-up (cosine schedule) from lr/10
    min_lr: float = 0.0
    augment: str = "geometric"  # "geometric": crops, flips, rotations; "full": + multi-scale and colour
    qat: bool = False  # quantization-aware: weights on the integer grid in the forward pass (lensnet_deploy.qat)
    qat_refresh: int = 50  # re-read the grid's exponents from the quantizer every N steps
    extra: dict = field(default_factory=dict)

    def size(self) -> int:
        return self.input_size or variant_config(self.variant).input_size[0]


SCHEDULES = ("step", "cosine")


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (constant within an epoch, so a resume needs no sub-epoch state)."""
    if cfg.schedule == "step":
        return cfg.lr * cfg.decay_rate ** (epoch // cfg.decay_epochs)
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (0.1 + 0.9 * epoch / cfg.warmup_epochs)
    span = max(1, cfg.epochs - cfg.warmup_epochs)
    t = min(1.0, (epoch - cfg.warmup_epochs) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


def _rng(cfg: TrainConfig, epoch: int, step: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, epoch, step])


def _order(cfg: TrainConfig, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([cfg.seed, epoch, 1 << 30]).permutation(n)


def validate(model: LensNet, cache: PairCache, size: int, batch_size: int = 16) -> dict[str, float]:
    """S-measure, MAE and the rest on the hold-out at the training input size."""
    model.eval()
    metrics = SODMetrics()
    with torch.no_grad():
        for start in range(0, len(cache), batch_size):
            imgs = cache.images[start:start + batch_size]
            masks = cache.masks[start:start + batch_size]
            x, _ = plain_batch(imgs, masks, size)
            for logits, mask in zip(model(x)[0], masks):
                metrics.step(saliency_map(logits, mask.shape), mask)
    model.train()
    return metrics.results()


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [h["train_loss"] for h in history], marker=".")
    axes[0].set(title="training loss (4 outputs)", xlabel="epoch")
    val = [h for h in history if "val_smeasure" in h]
    axes[1].plot([h["epoch"] for h in val], [h["val_smeasure"] for h in val], marker=".", color="C1")
    axes[1].set(title="hold-out S-measure", xlabel="epoch")
    axes[2].plot([h["epoch"] for h in val], [h["val_mae"] for h in val], marker=".", color="C2")
    axes[2].set(title="hold-out MAE", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _plain(value):
    """Numbers as Python floats/ints, so the state loads with ``weights_only=True``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_run_state(path: Path) -> dict:
    """A run's ``state.pt``, read with ``weights_only=True``: a file that needs code to unpickle is refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it needs code execution to load (only tensors and plain data are accepted)"
        raise LensNetDeployError(f"{path}: not a safe training state: {reason}") from None
    if not isinstance(state, dict) or not {"config", "model", "optim", "history"} <= set(state):
        raise LensNetDeployError(f"{path}: not a training state (missing config/model/optim/history)")
    return state


class Trainer:
    """One run folder: builds or resumes the state, trains, validates, checkpoints."""

    def __init__(self, cfg: TrainConfig, out: str | os.PathLike[str], cache_dir: str | None = None,
                 progress: Callable | None = None, log: Callable[[str], None] = print) -> None:
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.progress = progress
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        # The checkpoint records the size it was trained at, which `evaluate` and the zoo use as native.
        self.model = LensNet(replace(variant_config(cfg.variant), input_size=(cfg.size(), cfg.size())))
        self.model.train()
        self.optim = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.best = -math.inf
        self.history: list[dict] = []
        self.seconds = 0.0
        self.qat = None
        self._qat_exponents: dict | None = None
        resumed = self._resume()
        if not resumed and cfg.init:
            self._initialise(cfg.init)
        if cfg.qat:
            self._start_qat(resumed)
        pairs = collect_pairs(cfg.data_root, cfg.train_sets)
        if cfg.max_pairs:
            pairs = pairs[: cfg.max_pairs]
        holdout = min(cfg.holdout, len(pairs) // 5)
        train_pairs, val_pairs = split_holdout(pairs, holdout, cfg.seed)
        size = cfg.size()
        side = int(round(size * CROP_MARGINS[cfg.augment]))
        self.train_cache = PairCache(train_pairs, side, cache_dir, progress)
        self.val_cache = PairCache(val_pairs, size, cache_dir, progress) if val_pairs else None
        self.steps_per_epoch = len(self.train_cache) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise LensNetDeployError(f"{len(self.train_cache)} training pairs are fewer than one batch")

    def _start_qat(self, resumed: bool) -> None:
        """Fine-tuning through the integer grid starts from trained weights, not from scratch."""
        from .qat import QAT

        if not resumed and not self.cfg.init:
            raise LensNetDeployError("train --qat fine-tunes trained weights: give --init CKPT_OR_NAME")
        size = self.cfg.size()
        self.qat = QAT(self.model, (size, size))
        if self._qat_exponents is not None:
            self.qat.refresh({k: np.asarray(v, dtype=np.int64) for k, v in self._qat_exponents.items()})
        self._train_mode()
        self.log(f"QAT: {len(self.qat.convs)} convolutions on the integer grid of the loihi2 target")

    def _train_mode(self) -> None:
        self.model.train()
        if self.qat is not None:
            from .qat import freeze

            freeze(self.model)

    def _plain_model(self):
        return self.qat.snapped() if self.qat is not None else self.model

    @property
    def state_path(self) -> Path:
        return self.out / "state.pt"

    def _initialise(self, source: str) -> None:
        """Start from another run's weights (e.g. pretrained at a smaller size, fine-tuned at a larger one)."""
        from .checkpoint import check_state_dict, load_lensnet

        weights = load_lensnet(source).state_dict()
        check_state_dict(weights, self.model, f"--init {source}", self.cfg.variant)
        self.model.load_state_dict(weights)
        self.log(f"initialised from {source}")

    def _resume(self) -> bool:
        if not self.state_path.exists():
            return False
        state = load_run_state(self.state_path)
        saved = state["config"]
        mine, defaults = asdict(self.cfg), asdict(TrainConfig())
        # settings added after a run started count as their default
        differ = [k for k in mine if k not in ("epochs", "data_root", "extra") and saved.get(k, defaults[k]) != mine[k]]
        if differ:
            raise LensNetDeployError(f"{self.state_path}: run was started with other settings "
                                     f"({', '.join(differ)}); use another --out folder")
        self.model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        self.epoch, self.step, self.global_step = state["epoch"], state["step"], state["global_step"]
        self.best, self.history, self.seconds = state["best"], state["history"], state["seconds"]
        self._qat_exponents = state.get("qat_exponents")
        self._truncate_log(self.global_step)
        self.log(f"resumed {self.state_path} at epoch {self.epoch + 1}, step {self.step}")
        return True

    def _truncate_log(self, global_step: int) -> None:
        """Drop step rows logged after the saved state (a run killed between two saves)."""
        path = self.out / "steps.csv"
        if not path.exists():
            return
        rows = list(csv.reader(path.open()))
        kept = [rows[0]] + [r for r in rows[1:] if int(r[2]) < global_step]
        if len(kept) != len(rows):
            with atomic_path(path, suffix=".csv") as tmp:
                with tmp.open("w", newline="") as f:
                    csv.writer(f).writerows(kept)

    def _save_state(self) -> None:
        model = self.qat.plain_state() if self.qat is not None else self.model.state_dict()
        state = {"config": asdict(self.cfg), "model": model,
                 "optim": self.optim.state_dict(), "epoch": self.epoch, "step": self.step,
                 "global_step": self.global_step, "best": float(self.best),
                 "history": _plain(self.history), "seconds": float(self.seconds)}
        if self.qat is not None:
            state["qat_exponents"] = {k: v.tolist() for k, v in self.qat.exponents.items()}
        with atomic_path(self.state_path, suffix=".pt") as tmp:
            torch.save(state, tmp)

    def _log_step(self, loss: float, lr: float) -> None:
        path = self.out / "steps.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["epoch", "step", "global_step", "loss", "lr", "seconds"])
            w.writerow([self.epoch, self.step, self.global_step, f"{loss:.8f}", lr, f"{self.seconds:.1f}"])

    def train_step(self, indices: np.ndarray, lr: float) -> float:
        rng = _rng(self.cfg, self.epoch, self.step)
        if self.qat is not None and self.global_step and self.global_step % self.cfg.qat_refresh == 0:
            self.qat.refresh()
        x, y = augment_batch(self.train_cache.images[indices], self.train_cache.masks[indices],
                             self.cfg.size(), rng, self.cfg.augment)
        for group in self.optim.param_groups:
            group["lr"] = lr
        self.optim.zero_grad(set_to_none=True)
        loss = hybrid_loss(self.model(x), y)
        loss.backward()
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.clamp_(-self.cfg.clip, self.cfg.clip)
        self.optim.step()
        return loss.item()

    def run(self, max_steps: int | None = None) -> list[dict]:
        """Train until ``cfg.epochs`` (or ``max_steps`` more steps); returns the epoch history."""
        cfg = self.cfg
        budget = max_steps if max_steps is not None else math.inf
        done = 0
        while self.epoch < cfg.epochs and done < budget:
            order = _order(cfg, self.epoch, len(self.train_cache))
            lr = lr_at(cfg, self.epoch)
            steps = range(self.step, self.steps_per_epoch)
            bar = self.progress(steps, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="step") \
                if self.progress else steps
            for _ in bar:
                if done >= budget:
                    break
                t0 = time.perf_counter()
                idx = order[self.step * cfg.batch_size:(self.step + 1) * cfg.batch_size]
                loss = self.train_step(idx, lr)
                self.seconds += time.perf_counter() - t0
                self._log_step(loss, lr)
                self.step += 1
                self.global_step += 1
                done += 1
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self._save_state()
            if self.step < self.steps_per_epoch:
                self._save_state()
                break
            self._end_epoch()
        return self.history

    def _epoch_loss(self) -> float:
        rows = list(csv.DictReader((self.out / "steps.csv").open()))
        vals = [float(r["loss"]) for r in rows if int(r["epoch"]) == self.epoch]
        return float(np.mean(vals)) if vals else float("nan")

    def _end_epoch(self) -> None:
        row: dict = {"epoch": self.epoch + 1, "train_loss": self._epoch_loss(),
                     "lr": lr_at(self.cfg, self.epoch), "seconds": round(self.seconds, 1)}
        if self.val_cache is not None and (self.epoch + 1) % self.cfg.val_every == 0:
            m = validate(self.model, self.val_cache, self.cfg.size())
            self._train_mode()
            row.update({f"val_{k}": v for k, v in m.items()})
            if m["smeasure"] > self.best:
                self.best = m["smeasure"]
                save_lensnet(self._plain_model(), self.out / "best.safetensors", self.cfg.variant,
                             {"epoch": str(self.epoch + 1), "val_smeasure": f"{m['smeasure']:.5f}"})
            self.log(f"epoch {self.epoch + 1}: loss {row['train_loss']:.4f}  hold-out S "
                     f"{m['smeasure']:.4f}  MAE {m['mae']:.4f}  ({self.seconds / 60:.1f} min)")
        self.history.append(row)
        self.epoch += 1
        self.step = 0
        self._save_state()
        write_text_atomic(self.out / "history.json", json.dumps(self.history, indent=1) + "\n")
        plot_curves(self.history, self.out / "curves.png")
