"""Load LENS-Net checkpoints (the authors' ``.pth`` and our safetensors), strictly by default.

Strict: every key of the model and nothing else, so a checkpoint of another variant or
architecture is one clear error rather than a model with random layers. Profiling counters
(thop's ``total_ops``/``total_params`` buffers, at any depth) change no output and are dropped
with a note. ``strict=False`` (``--non-strict``) loads what the authors' inference.py loads
(``load_state_dict(..., strict=False)``): extra keys ignored, missing ones left as
initialised, each listed; a shape mismatch is refused either way (PyTorch refuses it too).
Files are read with ``weights_only=True``: never code execution.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .errors import CheckpointError
from .model_zoo import VARIANTS, LensNet, LensNetConfig, variant_config
from .model_zoo.registry import zoo_checkpoint, zoo_entries

FORMAT_TAG = "lensnet-deploy/checkpoint-1"
SHOW_KEYS = 3
GRID_TAG = "int8-grid"  # metadata "weights": weights stored as int8 times a float32 scale per output channel
GRID_SCALE = ".grid_scale"  # suffix of a grid weight's scale tensor
GRID_MAX = torch.iinfo(torch.int8).max  # the storage format's range, not a target's
GRID_TOLERANCE = 1e-4  # of one grid step: how far a float32 weight may sit from its integer
# buffers a profiler leaves on every module (thop's profile): counters, never weights
PROFILING_COUNTERS = ("total_ops", "total_params")
NON_STRICT_HINT = "--non-strict (strict=False) loads what matches, as the authors' inference does"


def _stderr_note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def is_profiling_counter(key: str) -> bool:
    """A key such as ``total_ops`` or ``backbone.conv.total_params`` (thop's buffers)."""
    return key.rpartition(".")[2] in PROFILING_COUNTERS


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the state_dict inside a loaded object: bare, under ``state_dict`` or ``model``."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: no state_dict found (expected a dict of tensors)")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: no tensors found in the checkpoint")
    weights = [k for k in tensors if not is_profiling_counter(k)]  # a root counter carries no prefix
    if weights and all(k.startswith("module.") for k in weights):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            AttributeError, IndexError, KeyError, TypeError, OSError) as err:
        text = str(err).strip()
        if "Weights only load failed" in text:
            reason = "it holds objects other than tensors, or is corrupt"
        else:
            reason = (text.splitlines()[0] if text else type(err).__name__)[:160]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{reason}") from None
    return _unwrap(obj, str(path))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from None
    return tensors, meta


def grid_encode(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``w`` as int8 ``q`` and a float32 scale per output channel with ``q·scale == w`` to float32
    precision, or None where the rows are not small integer multiples of one step.

    A model snapped to its integer grid (``qat.snap``) has weights ``w_int / (A·2^at)``; the
    per-channel step is found from the data (the largest step that makes a row integral), so
    no quantizer runs on load. Float16 cannot hold these (its 2^-11 error is ~0.06 of a step
    on a wide sum); float32 would double the file."""
    if w.dim() < 2 or not w.is_floating_point():
        return None
    rows = w.detach().double().reshape(w.shape[0], -1)
    top = rows.abs().amax(dim=1, keepdim=True)
    m = torch.arange(1, GRID_MAX + 1, dtype=torch.float64)
    scale = torch.ones(w.shape[0], dtype=torch.float64)
    for o in range(w.shape[0]):
        if top[o] == 0:
            continue
        ratios = rows[o][None, :] * (m[:, None] / top[o])  # row / (top/m): integers when top/m is the step
        ok = ((ratios - ratios.round()).abs() <= GRID_TOLERANCE).all(dim=1)
        if not bool(ok.any()):
            return None
        scale[o] = top[o] / m[int(ok.nonzero()[0])]
    q = (rows / scale[:, None]).round()
    scale32 = scale.float()
    back = q.float() * scale32[:, None]  # what loading computes
    if bool(((back.double() - rows).abs() > top * 2.0**-21).any()):  # a few float32 ulps of each row's largest
        return None
    return q.to(torch.int8).reshape(w.shape), scale32


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _grid_decode(tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in tensors.items() if not k.endswith(GRID_SCALE)}
    for key, scale in tensors.items():
        if not key.endswith(GRID_SCALE):
            continue
        name = key[: -len(GRID_SCALE)]
        q = out.get(name)
        if q is not None and q.dtype != torch.int8:
            raise CheckpointError(f"{source}: grid weight {name} is stored as {_dtype(q)}, not int8: the {GRID_TAG} "
                                  f"format keeps int8 mantissas and a float scale per channel (was the file "
                                  f"converted? re-save it with save_lensnet)")
        if not scale.is_floating_point():
            raise CheckpointError(f"{source}: grid scale {key} is stored as {_dtype(scale)}, not floating point")
        if q is None or scale.dim() != 1 or scale.shape[0] != q.shape[0]:
            raise CheckpointError(f"{source}: grid weight {name} does not match its scale {list(scale.shape)}")
        out[name] = q.float() * scale.float().view(-1, *([1] * (q.dim() - 1)))
    stray = [k for k, v in out.items() if v.dtype == torch.int8]
    if stray:
        raise CheckpointError(f"{source}: int8 tensor {stray[0]} has no {GRID_SCALE} (corrupt grid checkpoint)")
    return out


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors (and safetensors metadata) from a checkpoint file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    if path.suffix == ".safetensors":
        tensors, meta = _read_safetensors(path)
        if meta.get("weights") == GRID_TAG:
            tensors = _grid_decode(tensors, str(path))
        return tensors, meta
    return _read_torch(path), {}


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOW_KEYS])
    more = f", … {len(keys) - SHOW_KEYS} more" if len(keys) > SHOW_KEYS else ""
    return shown + more


def _keys(keys: list[str]) -> str:
    return ", ".join(keys)


def check_state_dict(state: Mapping[str, torch.Tensor], model: torch.nn.Module, source: str,
                     variant_name: str, strict: bool = True,
                     note: Callable[[str], None] | None = _stderr_note) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` that ``model`` loads, or one CheckpointError line.

    Profiling counters the model lacks are dropped (with a ``note``). Strict: any missing or
    unexpected key is an error naming them; ``strict=False``: they are listed in full through
    ``note`` and left out (missing ones keep the model's initial values). A mis-shaped key, a
    tensor of the wrong kind, NaN or Inf is always an error. ``note=None`` is silent."""
    notes: list[str] = []  # said once everything is checked: a refused file gets its one error line only
    expected = model.state_dict()
    counters = [k for k in state if k not in expected and is_profiling_counter(k)]
    if counters:
        notes.append(f"{source}: ignored {len(counters)} profiling counters ({_describe(counters)}; "
                     f"{'/'.join(PROFILING_COUNTERS)} buffers a profiler such as thop adds), which change no output")
    state = {k: v for k, v in state.items() if k not in counters}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shaped = [f"{k} {list(state[k].shape)}≠{list(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    matched = len(expected) - len(missing)
    if strict:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys ({_describe(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys ({_describe(unexpected)})")
        if shaped:
            problems.append(f"{len(shaped)} mis-shaped keys (file≠model: {_describe(shaped)})")
        if problems:
            hint = f"; {NON_STRICT_HINT}" if matched and not shaped else ""
            raise CheckpointError(f"{source} does not match LENS-Net variant {variant_name!r}: "
                                  + "; ".join(problems) + hint)
    else:
        if shaped:
            raise CheckpointError(f"{source} does not fit LENS-Net variant {variant_name!r} even without strict "
                                  f"loading: {len(shaped)} mis-shaped keys (file≠model: {_describe(shaped)})")
        if not matched:
            raise CheckpointError(f"{source}: no key matches LENS-Net variant {variant_name!r} "
                                  f"({len(unexpected)} keys, none of the model's {len(expected)}): not a LENS-Net "
                                  f"checkpoint of this variant")
        if unexpected:
            notes.append(f"{source}: not strict: ignored {len(unexpected)} keys the model does not have: "
                         f"{_keys(unexpected)}")
        if missing:
            notes.append(f"{source}: not strict: {len(missing)} keys of the model missing from the file keep their "
                         f"initial values: {_keys(missing)}")
    for k, v in expected.items():  # real numbers that load exactly (float16/64 weights load as float32)
        if k not in state:
            continue
        got = state[k]
        wrong = got.is_complex() or got.dtype == torch.bool or (v.is_floating_point() and not got.is_floating_point())
        if not wrong and not v.is_floating_point() and got.is_floating_point():
            wrong = not bool(torch.equal(got, got.round()))  # a counter stored as float: whole numbers only
        if wrong:
            raise CheckpointError(f"{source}: tensor {k} is stored as {_dtype(got)}; LENS-Net holds it as "
                                  f"{_dtype(v)}")
    loaded = {k: v for k, v in state.items() if k in expected}
    for k, v in loaded.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{source}: tensor {k} holds NaN or Inf values")
    for text in notes if note is not None else ():
        note(text)
    return loaded


def _config_from_meta(meta: Mapping[str, str], source: str) -> LensNetConfig | None:
    if "lensnet_config" not in meta:
        return None
    try:
        return LensNetConfig.from_dict(json.loads(meta["lensnet_config"]))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{source}: invalid LENS-Net config in metadata: {err}") from None


def load_lensnet(path_or_name: str | os.PathLike[str],
                 variant: str | LensNetConfig | dict | None = None, strict: bool = True,
                 note: Callable[[str], None] | None = _stderr_note) -> LensNet:
    """Build a LENS-Net and load a checkpoint, strictly by default; returns it in eval mode.

    ``path_or_name`` is a checkpoint file (the authors' ``.pth``/``.pt``: bare
    state_dict, or under ``state_dict``/``model``, ``module.`` prefixes removed;
    or a safetensors file written by :func:`save_lensnet`) or a zoo model name.
    ``variant`` (a name of ``VARIANTS``, a config or a dict) fixes the shape;
    by default it comes from the file's metadata, else the authors' full model.
    ``model.input_size`` is the zoo's native size, else the variant's.

    ``strict`` (default): the file holds exactly the model's keys; profiling counters
    (``total_ops``/``total_params`` at any depth, as thop adds) are dropped with a note.
    ``strict=False`` loads what the authors' inference.py loads (``strict=False`` there):
    keys the model lacks are ignored and keys the file lacks keep their initial values, every
    one of them listed through ``note`` (default: stderr; None: silent). A mis-shaped key is a
    :class:`CheckpointError` either way.
    """
    text = os.fspath(path_or_name)
    path = Path(text)
    if not path.exists():
        zoo_file = zoo_checkpoint(text)
        if zoo_file is not None:
            if not zoo_file.exists():
                raise CheckpointError(f"zoo model {text!r}: checkpoint file {zoo_file} is missing")
            path = zoo_file
        elif text in VARIANTS:
            trained = ", ".join(zoo_entries()) or "none yet"
            raise CheckpointError(f"{text!r} is a LENS-Net variant with no trained checkpoint in the zoo "
                                  f"(trained: {trained}); pass a checkpoint file")
        else:
            known = ", ".join(zoo_entries()) or "none yet"
            raise CheckpointError(f"{text}: no such checkpoint file or zoo model (zoo models: {known})")
    state, meta = read_state_dict(path)
    if variant is not None:
        try:
            config = variant_config(variant)
        except ValueError as err:
            raise CheckpointError(str(err)) from None
        name = variant if isinstance(variant, str) else "custom"
    else:
        config = _config_from_meta(meta, str(path)) or variant_config(None)
        name = meta.get("lensnet_variant", "lensnet")
    model = LensNet(config)
    state = check_state_dict(state, model, str(path), name, strict=strict, note=note)
    model.load_state_dict(state, strict=strict)
    return model.eval()


def save_lensnet(model: LensNet, path: str | os.PathLike[str], variant: str = "custom",
                 extra: Mapping[str, str] | None = None, half: bool = False, grid: bool = False) -> Path:
    """Write ``model`` as safetensors with its config in the metadata (atomically).

    ``half``: float16. ``grid``: every weight that :func:`grid_encode` can hold exactly as
    int8 plus a float32 scale per output channel (a snapped model: a quarter of float32),
    the rest float32."""
    from safetensors.torch import save_file

    if half and grid:
        raise CheckpointError("a checkpoint is either float16 (half) or int8 grid weights, not both")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {"format": FORMAT_TAG, "lensnet_variant": variant,
            "lensnet_config": json.dumps(model.config.to_dict())}
    if grid:
        for key in [k for k in state if k.endswith(".weight")]:
            coded = grid_encode(state[key])
            if coded is not None:
                state[key], state[key + GRID_SCALE] = coded
        meta["weights"] = GRID_TAG
    meta.update(extra or {})
    path = Path(path)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path
