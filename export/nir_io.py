"""Write and read NIR files: atomic writes, one-line errors, the grouped-conv fix-up."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from ..atomic import atomic_path
from ..errors import LensNetDeployError
from . import convention


class NIRFileError(LensNetDeployError):
    """A NIR file is missing, unreadable, or not a graph this tool can run."""


def _write_dict(group: h5py.Group, data: dict[str, Any], compression: str = "gzip") -> None:
    """NIR's HDF5 layout (as ``nir.write`` lays it out): arrays gzip-compressed, strings as strings."""
    for key, value in data.items():
        if key == "metadata":
            if value:
                _write_dict(group.create_group(key), value, compression)
        elif isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        elif isinstance(value, np.ndarray):
            group.create_dataset(key, data=value, dtype=value.dtype, compression=compression)
        elif isinstance(value, dict):
            _write_dict(group.create_group(str(key)), value, compression)
        else:
            group.create_dataset(key, data=value)


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph`` in NIR's HDF5 format, node by node, atomically.

    The file is what ``nir.write`` produces; writing node by node keeps only
    one node's arrays in memory at a time (``nir.write`` deep-copies the whole
    graph twice first, several GB for the full LENS-Net at 352²). HDF5 builds
    the file in memory and Python writes it out: when the disk fills up during
    a write, HDF5 on a real file crashes the process (seen: a segfault on exit),
    while Python's own write fails with a plain ``OSError``.
    """
    path = Path(path)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
        root = f.create_group("node")
        root.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
        root.create_dataset("edges", data=[list(e) for e in graph.edges], dtype=h5py.string_dtype())
        if graph.metadata:
            _write_dict(root.create_group("metadata"), dict(graph.metadata))
        nodes = root.create_group("nodes")
        for name, node in graph.nodes.items():
            _write_dict(nodes.create_group(name), node.to_dict())
    with atomic_path(path, suffix=".nir") as tmp, tmp.open("wb") as out:
        out.write(buffer.getbuffer())
    return path


def read_nir(path: str | os.PathLike[str], validate: bool = True) -> nir.NIRGraph:
    """``nir.read`` with one-line errors; lensnet graphs are validated against the convention."""
    path = Path(path)
    if not path.exists():
        raise NIRFileError(f"{path}: no such NIR file")
    if path.is_dir() or path.stat().st_size == 0:
        raise NIRFileError(f"{path}: not a NIR file (empty or a directory)")
    if not h5py.is_hdf5(path):
        raise NIRFileError(f"{path}: not a NIR file (not HDF5; truncated or corrupt?)")
    unknown = _unknown_node_types(path)
    if unknown:
        raise NIRFileError(f"{path}: node {unknown[0]} is of type {unknown[1]!r}, which is no NIR primitive")
    try:
        graph = nir.read(path)
    except (OSError, KeyError, ValueError, TypeError, AttributeError, AssertionError, IndexError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NIRFileError(f"{path}: nir.read failed ({type(err).__name__}: {text[:200]})") from None
    integer = convention.INTEGER_KEY in (graph.metadata or {})  # validated by its dialect when read into the IR
    if validate and convention.uses_convention(graph) and not integer:
        try:
            convention.validate(graph)
        except convention.NIRConventionError as err:
            raise convention.NIRConventionError(f"{path}: {err}") from None
    return graph


def _unknown_node_types(path: Path) -> tuple[str, str] | None:
    """The first node (nested graphs included) whose type nir cannot read: (name, type), or None."""
    known = {name for name in dir(nir) if isinstance(getattr(nir, name), type)
             and issubclass(getattr(nir, name), nir.NIRNode)}
    try:
        with h5py.File(path, "r") as f:
            def visit(group: h5py.Group, prefix: str) -> tuple[str, str] | None:
                for name, node in group.items():
                    if not isinstance(node, h5py.Group) or "type" not in node:
                        continue
                    kind = node["type"][()]
                    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                    if kind not in known:
                        return f"{prefix}{name}", kind
                    if kind == "NIRGraph" and "nodes" in node:
                        found = visit(node["nodes"], f"{prefix}{name}.")
                        if found:
                            return found
                return None

            return visit(f["node"]["nodes"], "") if "node" in f and "nodes" in f["node"] else None
    except (OSError, KeyError, TypeError, ValueError):
        return None  # nir.read reports what is wrong with the file itself
