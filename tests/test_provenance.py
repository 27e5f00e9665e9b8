"""Provenance records (what made each artifact of ``run``) and the per-map manifest of ``simulate``."""

import json
import os
import shutil

import torch
from conftest import SAMPLES

from lensnet_deploy.predict import MANIFEST, write_maps
from lensnet_deploy.provenance import Hashes, file_sha256, read_record, record, remove_record, why_rerun, write_record


def test_hashes_read_each_file_once_and_again_when_it_is_rewritten(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"one")
    hashes = Hashes()
    assert hashes(a) == hashes(tmp_path / "." / "a.bin") == file_sha256(a) and hashes.hashed == 1
    assert hashes.names([a]) == {"a.bin": file_sha256(a)} and hashes.hashed == 1
    a.write_bytes(b"two!")  # another size: read again
    assert hashes(a) == file_sha256(a) and hashes.hashed == 2
    b = tmp_path / "b.bin"
    b.write_bytes(b"six!")
    os.replace(b, a)  # a new file under the same name (another inode), as atomic writes do
    assert hashes(a) == file_sha256(a) and hashes.hashed == 3


def _outputs(out, *names):
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")


def test_why_rerun_names_what_changed_in_one_line(tmp_path):
    images = {"a.jpg": "1", "b.jpg": "2", "c.jpg": "3"}
    old = record("compile", {"target": "loihi2", "board": "hala-point", "input_size": [256, 256]},
                 {"model.q.nir": "q", "images": images}, ["build/build.json"])
    assert why_rerun(None, old, tmp_path) == "no earlier output"
    _outputs(tmp_path, "build/build.json")
    assert why_rerun(None, old, tmp_path) == "no record of what made the earlier output"
    assert why_rerun(old, old, tmp_path) is None
    new = json.loads(json.dumps(old))
    new["args"]["board"] = "kapoho-point"
    assert why_rerun(old, new, tmp_path) == "board changed hala-point → kapoho-point"
    new["args"]["input_size"] = [224, 224]
    new["inputs"]["images"] = {"a.jpg": "1", "b.jpg": "9", "c.jpg": "8", "d.jpg": "4"}
    new["inputs"]["model.q.nir"] = "r"
    assert why_rerun(old, new, tmp_path) == ("board changed hala-point → kapoho-point; input size changed "
                                             "256×256 → 224×224; model.q.nir changed; 2 images changed, 1 image added")
    gone = json.loads(json.dumps(old))
    gone["inputs"]["images"] = {"a.jpg": "1"}
    assert why_rerun(old, gone, tmp_path) == "2 images removed"
    moved = json.loads(json.dumps(old))
    moved["versions"]["integer semantics"] = "v4"
    assert why_rerun(old, moved, tmp_path) == f"integer semantics changed {old['versions']['integer semantics']} → v4"
    (tmp_path / "build" / "build.json").unlink()
    assert why_rerun(old, old, tmp_path) == "1 output missing"


def test_records_are_written_read_and_removed(tmp_path):
    rec = record("integer simulation", {"backend": "fast"}, {"model.q.nir": "q"}, ["maps/integer/a.png"])
    write_record(tmp_path, rec)
    assert (tmp_path / ".provenance" / "integer-simulation.json").is_file()
    assert read_record(tmp_path, "integer simulation") == rec
    assert [p.name for p in (tmp_path / ".provenance").iterdir()] == ["integer-simulation.json"]  # no debris
    remove_record(tmp_path, "integer simulation")
    assert read_record(tmp_path, "integer simulation") is None
    (tmp_path / ".provenance" / "integer-simulation.json").write_text("{broken")
    assert read_record(tmp_path, "integer simulation") is None


def test_maps_are_reused_only_for_the_same_model_and_image_content(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    files = []
    for src in sorted((SAMPLES / "Image").iterdir())[:3]:
        shutil.copy(src, images / src.name)
        files.append(images / src.name)
    out = tmp_path / "maps"
    calls: list[int] = []

    def logits(x):  # a stand-in model: the image's mean colour per pixel
        calls.append(len(x))
        return x.mean(1, keepdim=True)

    def write(key):
        calls.clear()
        return [p.name for p in write_maps(files, (32, 32), out, logits, 8, key=key)]

    assert len(write("model a")) == 3
    assert write("model a") == [] and calls == []
    entry = json.loads((out / MANIFEST).read_text())["maps"][f"{files[0].stem}.png"]
    assert entry == {"model": "model a", "image": file_sha256(files[0])}
    files[0].write_bytes(files[1].read_bytes())  # one image changes
    assert write("model a") == [f"{files[0].stem}.png"] and calls == [1]
    assert (out / f"{files[0].stem}.png").read_bytes() == (out / f"{files[1].stem}.png").read_bytes()
    (out / f"{files[2].stem}.png").unlink()  # an interrupted run: the entry is there, the map is not
    assert write("model a") == [f"{files[2].stem}.png"]
    assert len(write("model b")) == 3  # another model redoes them all
    (out / MANIFEST).write_text(json.dumps({"model": "model b"}))  # a manifest of an older version
    assert len(write("model b")) == 3
    assert write(None) and calls == [3]  # no key (predict): always written


def test_a_map_whose_entry_changes_is_removed_before_the_manifest_names_its_new_source(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    src = sorted((SAMPLES / "Image").iterdir())[0]
    shutil.copy(src, images / src.name)
    out = tmp_path / "maps"
    write_maps([images / src.name], (32, 32), out, lambda x: x.mean(1, keepdim=True), key="a")
    (images / src.name).write_bytes(sorted((SAMPLES / "Image").iterdir())[1].read_bytes())

    def interrupted(x):
        raise KeyboardInterrupt

    try:
        write_maps([images / src.name], (32, 32), out, interrupted, key="a")
    except KeyboardInterrupt:
        pass
    assert not (out / f"{src.stem}.png").exists()  # the stale map is gone, not kept under the new entry
    assert write_maps([images / src.name], (32, 32), out, lambda x: torch.zeros(len(x), 1, 32, 32), key="a")
