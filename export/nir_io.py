"""Write and read NIR files: atomic writes, one-line errors, the grouped-conv fix-up, and the
memory a file declares checked before it is read (``limits``)."""

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
from . import convention, limits


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
        elif isinstance(value, np.ndarray) and value.ndim:
            group.create_dataset(key, data=value, dtype=value.dtype, compression=compression)
        elif isinstance(value, np.ndarray):  # a 0-d array (Norse writes scalar parameters): no filters on scalars
            group.create_dataset(key, data=value, dtype=value.dtype)
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


def declared_bytes(path: str | os.PathLike[str]) -> tuple[int, str, int]:
    """What reading every dataset of an HDF5 file takes (shape × item size, summed, before any
    decompression), with the largest dataset's name and size; only the headers are read (through
    h5py's low-level calls: a third of the time of ``visititems``)."""
    total, largest = 0, ("", 0)
    with h5py.File(path, "r") as f:
        names: list[str] = []
        h5py.h5o.visit(f.id, lambda name, info: names.append(name) if info.type == h5py.h5o.TYPE_DATASET else None,
                       info=True)
        for raw in names:
            dataset = h5py.h5d.open(f.id, raw)
            size = dataset.get_type().get_size()
            for extent in dataset.shape or ():
                size *= int(extent)
            total += size
            if size > largest[1]:
                largest = (raw.decode() if isinstance(raw, bytes) else str(raw), size)
    return total, largest[0], largest[1]


def _check_declared(path: Path) -> None:
    """Refuse a file whose datasets declare more than the memory limit, before reading any."""
    try:
        total, name, size = declared_bytes(path)
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NIRFileError(f"{path}: not a readable NIR file ({type(err).__name__}: {text[:200]})") from None
    try:
        limits.check_memory(total, f"{path}: its datasets (the largest: {name}, {limits.size_text(size)}) declare")
    except limits.LimitError as err:
        raise NIRFileError(str(err)) from None


def read_nir(path: str | os.PathLike[str], validate: bool = True) -> nir.NIRGraph:
    """``nir.read`` with one-line errors; lensnet graphs are validated against the convention.

    The data the file declares must fit the memory limit (``limits``): a small file of
    compressed zeros that would expand beyond it is refused before anything is read."""
    path = Path(path)
    if not path.exists():
        raise NIRFileError(f"{path}: no such NIR file")
    if path.is_dir() or path.stat().st_size == 0:
        raise NIRFileError(f"{path}: not a NIR file (empty or a directory)")
    if not h5py.is_hdf5(path):
        raise NIRFileError(f"{path}: not a NIR file (not HDF5; truncated or corrupt?)")
    _check_declared(path)
    unknown = _unknown_node_types(path)
    if unknown:
        raise NIRFileError(f"{path}: node {unknown[0]} is of type {unknown[1]!r}, which is no NIR primitive")
    try:
        graph = _read_typed(path)
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


def _read_typed(path: Path) -> nir.NIRGraph:
    """``nir.read`` with its type check; a graph with time that fails only that check is read without it.

    The frameworks' own exporters write files nir 1.0.8's check refuses (Norse 1.1.0 gives the Input
    the example's batch dimension, [1, 6] into an Affine of 6); the temporal reference checks every
    shape itself and names the node, so such a file is still read."""
    try:
        return nir.read(path)
    except ValueError as err:
        if "type" not in str(err).lower():
            raise
        from .temporal import is_temporal

        graph = nir.read(path, type_check=False)
        if not is_temporal(graph):
            raise
        return graph
