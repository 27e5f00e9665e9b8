"""Training: the hybrid loss by hand, and resume gives the same losses as one run."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from lensnet_deploy.checkpoint import load_lensnet
from lensnet_deploy.errors import LensNetDeployError
from lensnet_deploy.losses import hybrid_loss, iou_loss
from lensnet_deploy.train import TrainConfig, Trainer, lr_at


def test_iou_and_hybrid_loss_hand_computed():
    prob = torch.tensor([[[[1.0, 0.5], [0.0, 0.5]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # inter 1.5, union 2 + 2 - 1.5 = 2.5 → 1 - 0.6
    assert float(iou_loss(prob, target)) == pytest.approx(0.4)
    logits = torch.zeros(1, 1, 2, 2)
    bce = float(np.log(2))
    iou = 1 - 1.0 / (2 + 2 - 1.0)  # sigmoid(0) = 0.5 everywhere
    assert float(hybrid_loss([logits] * 4, target)) == pytest.approx(4 * (0.3 * bce + 0.7 * iou), rel=1e-6)


def test_step_decay():
    cfg = TrainConfig(lr=1e-3, decay_rate=0.1, decay_epochs=30)
    assert [lr_at(cfg, e) for e in (0, 29, 30, 60)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])
    cos = TrainConfig(lr=1e-3, schedule="cosine", warmup_epochs=2, epochs=12, min_lr=1e-5)
    # warm-up from lr/10, then half a cosine from lr (epoch 2) to min_lr (epoch 12)
    assert [lr_at(cos, e) for e in (0, 1, 2, 7, 12)] == pytest.approx([1e-4, 5.5e-4, 1e-3, 5.05e-4, 1e-5])


def test_full_augmentation_is_seeded_and_changes_colour_and_scale():
    from lensnet_deploy.train_data import augment_batch

    imgs = np.random.default_rng(1).integers(0, 256, (3, 60, 60, 3), dtype=np.uint8)
    masks = (imgs[..., 0] > 128).astype(np.uint8) * 255
    a = augment_batch(imgs, masks, 40, np.random.default_rng(7), "full")
    b = augment_batch(imgs, masks, 40, np.random.default_rng(7), "full")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    plain = augment_batch(imgs, masks, 40, np.random.default_rng(7), "geometric")
    assert a[0].shape == plain[0].shape == (3, 3, 40, 40) and not torch.equal(a[0], plain[0])


def make_dataset(root, n=24, size=48):
    rng = np.random.default_rng(0)
    (root / "toy" / "train-images").mkdir(parents=True)
    (root / "toy" / "train-labels").mkdir(parents=True)
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size - 20, 2)
        mask[y:y + 16, x:x + 16] = 255
        img[mask > 0] //= 3
        Image.fromarray(img).save(root / "toy" / "train-images" / f"{i:04d}.jpg")
        Image.fromarray(mask).save(root / "toy" / "train-labels" / f"{i:04d}.png")


def losses(run_dir):
    with (run_dir / "steps.csv").open() as f:
        return [(int(r["global_step"]), r["loss"]) for r in csv.DictReader(f)]


def run_interrupted(cfg: TrainConfig, tmp_path, total: int, first: int, between=None) -> None:
    """``cfg`` for ``total`` steps in one go (``full``) and stopped after ``first``, then resumed
    (``part``), on one thread so that both are deterministic; ``between`` runs at the stop."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = Trainer(cfg, tmp_path / "full", log=lambda s: None)
        full.run(max_steps=total)
        part = Trainer(cfg, tmp_path / "part", log=lambda s: None)
        part.run(max_steps=first)
        del part
        if between is not None:
            between()
        resumed = Trainer(cfg, tmp_path / "part", log=lambda s: None)
        assert (resumed.epoch, resumed.step) == (0, first)
        resumed.run(max_steps=total - first)
    finally:
        torch.set_num_threads(threads)


def assert_on_grid(model, size) -> None:
    """Snapping a model already on its integer grid moves nothing."""
    from lensnet_deploy.qat import snap

    again = snap(model, size)
    assert all(torch.allclose(p, q, rtol=0, atol=1e-6) for p, q in zip(model.state_dict().values(),
                                                                        again.state_dict().values()))


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    make_dataset(tmp_path)
    cfg = TrainConfig(variant="lensnet-micro", data_root=str(tmp_path), train_sets=("toy/train",),
                      input_size=32, epochs=2, batch_size=4, lr=1e-3, holdout=4, save_every=2, seed=3)

    def unsaved_row() -> None:  # a run killed after logging a step it had not saved: the row must go
        with (tmp_path / "part" / "steps.csv").open("a") as f:
            f.write("0,3,3,9.99999999,0.001,0.0\n")

    run_interrupted(cfg, tmp_path, total=7, first=3, between=unsaved_row)
    assert Trainer(cfg, tmp_path / "x", log=lambda s: None).steps_per_epoch == 5
    a, b = losses(tmp_path / "full"), losses(tmp_path / "part")
    assert [s for s, _ in a] == list(range(7))
    assert a == b
    assert len({v for _, v in a}) > 1  # the losses move: the comparison is not vacuous
    # the checkpoint records the size it was trained at (micro's own is 64²)
    assert load_lensnet(tmp_path / "full" / "best.safetensors").input_size == (32, 32)
    assert (tmp_path / "full" / "curves.png").stat().st_size > 1000


def test_register_a_run_in_the_zoo(tmp_path, monkeypatch):
    import hashlib
    import shutil

    from lensnet_deploy import zoo
    from lensnet_deploy.model_zoo import registry

    make_dataset(tmp_path, n=12)
    test_split = tmp_path / "ORSSD"
    test_split.mkdir()
    shutil.copytree(tmp_path / "toy" / "train-images", test_split / "test-images")
    shutil.copytree(tmp_path / "toy" / "train-labels", test_split / "test-labels")
    cfg = TrainConfig(variant="lensnet-micro", data_root=str(tmp_path), train_sets=("toy/train",), input_size=32,
                      epochs=1, batch_size=4, holdout=4, seed=1)
    Trainer(cfg, tmp_path / "run", log=lambda s: None).run()
    shelf = tmp_path / "zoo"
    shelf.mkdir()
    monkeypatch.setattr(zoo, "ZOO_DIR", shelf)
    monkeypatch.setattr(zoo, "REGISTRY_FILE", shelf / "registry.json")
    monkeypatch.setattr(registry, "REGISTRY_FILE", shelf / "registry.json")
    entry = zoo.register_model("toy-micro", tmp_path / "run", tmp_path, "trained (1 epoch)", "lensnet-deploy train …",
                               half=True, notes="Trained on noise squares.")
    stored = shelf / "toy-micro.safetensors"
    assert entry["input_size"] == [32, 32] and entry["dtype"] == "float16" and entry["epochs"] == 1
    assert entry["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert 0 <= entry["metrics"]["smeasure"] <= 1
    assert load_lensnet(stored).input_size == (32, 32)
    card = (shelf / "cards" / "toy-micro.md").read_text()
    assert card.startswith("# toy-micro\n\n![learning curves](toy-micro-curves.png)\n\nLENS-Net variant")
    assert "## Notes\n\nTrained on noise squares.\n" in card
    assert registry.zoo_entries()["toy-micro"]["file"] == "toy-micro.safetensors"
    # --snap: the weights go onto the integer grid and are stored as int8 grid weights
    snapped = zoo.register_model("toy-snap", tmp_path / "run", tmp_path, "snapped", "…", snap=32)
    assert snapped["dtype"] == "int8-grid" and snapped["file_size_bytes"] < entry["file_size_bytes"]  # under float16
    assert_on_grid(load_lensnet(shelf / "toy-snap.safetensors"), (32, 32))
    with pytest.raises(LensNetDeployError, match="cannot be combined with --half"):
        zoo.register_model("toy-bad", tmp_path / "run", tmp_path, "x", "…", snap=32, half=True)
    # zoo snap: an existing entry (float16 here) goes onto the grid in place, its record kept
    again_entry = zoo.snap_entry("toy-micro", 32, tmp_path, status="snapped")
    assert again_entry["dtype"] == "int8-grid" and again_entry["epochs"] == 1 and again_entry["snapped_at"] == 32
    assert again_entry["command"].endswith("&& lensnet-deploy zoo snap toy-micro --size 32")
    assert registry.zoo_entries()["toy-micro"]["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert "snapped to the loihi2 grid at 32²" in (shelf / "cards" / "toy-micro.md").read_text()
    # --native: the snap size becomes the input evaluate, predict and the card use
    native = zoo.snap_entry("toy-micro", 48, tmp_path, native=True, notes="Deployed at 48².")
    assert native["input_size"] == [48, 48] and native["config"]["input_size"] == [48, 48]
    assert load_lensnet(stored).input_size == (48, 48)
    assert_on_grid(load_lensnet(stored), (48, 48))
    assert native["command"].endswith("&& lensnet-deploy zoo snap toy-micro --size 48 --native")
    card = (shelf / "cards" / "toy-micro.md").read_text()
    assert "48×48" in card and "## Notes\n\nDeployed at 48².\n" in card
    with pytest.raises(LensNetDeployError, match="multiples of 16"):
        zoo.snap_entry("toy-micro", 40, tmp_path, native=True)


def test_a_new_run_starts_from_init_weights(tmp_path):
    from lensnet_deploy.checkpoint import save_lensnet
    from lensnet_deploy.model_zoo import VARIANTS, LensNet
    from lensnet_deploy.model_zoo.random_weights import randomize_

    make_dataset(tmp_path, n=12)
    source = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=5)
    ckpt = save_lensnet(source, tmp_path / "pre.safetensors", "lensnet-micro")
    cfg = TrainConfig(variant="lensnet-micro", data_root=str(tmp_path), train_sets=("toy/train",), input_size=48,
                      epochs=1, batch_size=4, holdout=4, init=str(ckpt))
    fine = Trainer(cfg, tmp_path / "fine", log=lambda s: None)
    assert all(torch.equal(a, b) for a, b in zip(fine.model.state_dict().values(), source.state_dict().values()))
    fine.run(max_steps=1)
    again = Trainer(cfg, tmp_path / "fine", log=lambda s: None)  # a resume keeps its own weights, not --init's
    assert any(not torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                     source.state_dict().values()))
    wrong = TrainConfig(**{**cfg.__dict__, "variant": "lensnet-tiny"})
    with pytest.raises(LensNetDeployError, match="does not match LENS-Net variant 'lensnet-tiny': .* missing keys"):
        Trainer(wrong, tmp_path / "other", log=lambda s: None)


class _Plant:
    """Unpickling this object runs ``open(path, "w")``: what a malicious resume state would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_that_runs_code_is_refused_by_resume_and_register(tmp_path):
    import subprocess
    import sys

    make_dataset(tmp_path, n=12)
    run = tmp_path / "run"
    cfg = TrainConfig(variant="lensnet-micro", data_root=str(tmp_path), train_sets=("toy/train",), input_size=32,
                      epochs=1, batch_size=4, holdout=4)
    Trainer(cfg, run, log=lambda s: None).run(max_steps=1)
    assert torch.load(run / "state.pt", weights_only=True)["step"] == 1  # our own states load safely
    planted = tmp_path / "planted.txt"
    torch.save({"config": {}, "model": {}, "optim": {}, "history": [], "x": _Plant(planted)}, run / "state.pt")
    common = [sys.executable, "-m", "lensnet_deploy"]
    resume = subprocess.run([*common, "train", "--variant", "lensnet-micro", "--data-root", str(tmp_path),
                             "--sets", "toy/train", "--input-size", "32", "--epochs", "1", "--batch-size", "4",
                             "--holdout", "4", "--out", str(run)], capture_output=True, text=True, timeout=300)
    if not (run / "best.safetensors").exists():  # register needs a best checkpoint beside the state
        from lensnet_deploy.checkpoint import save_lensnet
        from lensnet_deploy.model_zoo import VARIANTS, LensNet

        save_lensnet(LensNet(VARIANTS["lensnet-micro"]), run / "best.safetensors", "lensnet-micro")
    register = subprocess.run([*common, "zoo", "register", "evil", "--run", str(run), "--data-root", str(tmp_path),
                               "--command", "x"], capture_output=True, text=True, timeout=300)
    for proc in (resume, register):
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and "state.pt: not a safe training state" in lines[0], proc.stderr
        assert "code execution" in lines[0]
    assert not planted.exists()
    # the same file unpickled without the guard would have created it: the test can fail
    torch.load(run / "state.pt", weights_only=False)
    assert planted.exists()
