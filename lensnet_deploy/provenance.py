"""What made each artifact: content hashes of the inputs, the arguments, the versions.

Each step of ``run`` writes ``OUT/.provenance/<step>.json`` after its outputs (atomically): the
sha256 of every input file's content (grouped: ``checkpoint``, ``images``, ``masks``,
``model.q.nir``, …), the arguments that change its outputs and the versions of lensnet-deploy
and of the integer semantics. A step is skipped only when the record it would write equals the
one on disk and its outputs exist; otherwise :func:`why_rerun` says why in one line.

File contents are hashed once per run (:class:`Hashes` caches by path; a file rewritten during
the run, which changes its inode, size or modification time, is hashed again).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic

RECORDS = ".provenance"
FORMAT = 1


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Hashes:
    """sha256 of file contents, each file read once per run (one instance per run)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int], str]] = {}
        self.hashed = 0  # files actually read (for tests)

    def __call__(self, path: str | os.PathLike[str]) -> str:
        key = os.path.abspath(path)
        st = os.stat(key)
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == signature:
            return hit[1]
        digest = file_sha256(key)
        self.hashed += 1
        self._cache[key] = (signature, digest)
        return digest

    def names(self, paths: Iterable[Path]) -> dict[str, str]:
        """file name → sha256 (maps and images are named by file, whatever folder holds them)."""
        return {p.name: self(p) for p in paths}


def versions() -> dict[str, str]:
    from . import __version__
    from .hardware.integer.semantics import VERSION

    return {"lensnet-deploy": __version__, "integer semantics": VERSION}


def record(step: str, args: dict[str, Any], inputs: dict[str, Any], outputs: Iterable[str]) -> dict[str, Any]:
    """The record a step writes: ``inputs`` maps a group name to one sha256 or to name → sha256;
    ``outputs`` are paths relative to the output folder."""
    return {"format": FORMAT, "step": step, "versions": versions(), "args": args, "inputs": inputs,
            "outputs": sorted(outputs)}


def _path(out: Path, step: str) -> Path:
    return out / RECORDS / f"{step.replace(' ', '-')}.json"


def read_record(out: Path, step: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_path(out, step).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(out: Path, rec: dict[str, Any]) -> None:
    write_text_atomic(_path(out, rec["step"]), json.dumps(rec, indent=1, sort_keys=True) + "\n")


def remove_record(out: Path, step: str) -> None:
    _path(out, step).unlink(missing_ok=True)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}×{value[1]}"
    return str(value)


def _count(n: int, group: str) -> str:
    return f"{n} {group if n != 1 or not group.endswith('s') else group[:-1]}"


def _input_changes(group: str, old: Any, new: Any) -> str | None:
    if old == new:
        return None
    if isinstance(old, dict) or isinstance(new, dict):
        old, new = old or {}, new or {}
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{group} changed"
    changed = sum(1 for k in new if k in old and old[k] != new[k])
    added = sum(1 for k in new if k not in old)
    removed = sum(1 for k in old if k not in new)
    parts = [f"{_count(n, group)} {what}" for n, what in ((changed, "changed"), (added, "added"),
                                                              (removed, "removed")) if n]
    return ", ".join(parts)


def why_rerun(old: dict[str, Any] | None, new: dict[str, Any], out: Path) -> str | None:
    """None when ``old`` (the record on disk) equals ``new`` and every output exists; else the
    reasons, in one line."""
    missing = [o for o in new["outputs"] if not (out / o).exists()]
    if old is None:
        if len(missing) == len(new["outputs"]):
            return "no earlier output"
        return "no record of what made the earlier output"
    if old == new:
        return None if not missing else f"{_count(len(missing), 'outputs')} missing"
    reasons = []
    before, now = old.get("versions") or {}, new["versions"]
    for name in now:
        if before.get(name) != now[name]:
            reasons.append(f"{name} changed {_show(before.get(name))} → {now[name]}")
    before, now = old.get("args") or {}, new["args"]
    for name in [*now, *(k for k in before if k not in now)]:
        if before.get(name) != now.get(name):
            reasons.append(f"{name.replace('_', ' ')} changed {_show(before.get(name))} → {_show(now.get(name))}")
    before, now = old.get("inputs") or {}, new["inputs"]
    for group in [*now, *(k for k in before if k not in now)]:
        change = _input_changes(group, before.get(group), now.get(group))
        if change:
            reasons.append(change)
    if not reasons:  # another output list or record format
        reasons.append("the record differs")
    if missing:
        reasons.append(f"{_count(len(missing), 'outputs')} missing")
    return "; ".join(reasons)
