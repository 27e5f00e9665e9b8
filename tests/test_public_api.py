"""The README's "Python API" exists as written, and importing the package stays cheap.

Every name the section documents is read from README.md (not listed here): the example's
imports and ``ld.NAME``, every code span that names something (``load_lensnet(...) -> LensNet``,
``lensnet_deploy.cluster.map_batches``, ``build.save(dir)``, ``.processes``, ``raw``, …) resolved
where a reader would look (the module the bullet is about, the top-level package, the
documented return type), each documented ``name=default`` checked against the signature.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import re
import subprocess
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import pytest

import lensnet_deploy

README = Path(__file__).resolve().parents[1] / "README.md"
PACKAGE = "lensnet_deploy"
SPAN = re.compile(r"`([^`]+)`")
# a documented name: `name`, `a.b.c`, `.attr`, `name(args)`, `name(args) -> Return`
NAMED = re.compile(r"^(?P<name>\.?[A-Za-z_][\w.]*)(?P<args>\((?:[^()]|\([^()]*\))*\))?(?:\s*->\s*(?P<ret>.+))?$")
MISSING = object()


def api_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Python API")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def example_and_bullets() -> tuple[str, list[str]]:
    section = api_section()
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the Python API section has no ```python example"
    bullets: list[str] = []
    for line in section[code.end():].splitlines():
        if line.startswith("- "):
            bullets.append(line[2:])
        elif line.startswith("  ") and bullets:
            bullets[-1] += " " + line.strip()
    assert len(bullets) >= 8, bullets
    return code.group(1), bullets


def _import(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and name.startswith(e.name) and (name == e.name or name[len(e.name)] == "."):
            return None  # the module itself (or a parent) is missing, not something it imports
        raise


def resolve_dotted(path: str) -> tuple[object, types.ModuleType]:
    """``a.b.c.d`` → (the object, the deepest module on the way); ``MISSING`` if it does not exist."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        module = _import(".".join(parts[:cut]))
        if module is not None:
            break
    else:
        return MISSING, lensnet_deploy
    obj: object = module
    for part in parts[cut:]:
        obj = getattr(obj, part, MISSING)
        if obj is MISSING:
            break
    return obj, module


def attribute(owner: object, name: str) -> object:
    """``owner.name``: a module attribute (a submodule imported on the way), or, for a class,
    a class attribute, a dataclass field, an annotated or ``self.name =`` instance attribute."""
    if isinstance(owner, types.ModuleType):
        value = getattr(owner, name, MISSING)
        if value is MISSING:
            value = _import(f"{owner.__name__}.{name}") or MISSING
        return value
    if isinstance(owner, type):
        value = getattr(owner, name, MISSING)
        if value is not MISSING:
            return value
        if name in getattr(owner, "__dataclass_fields__", {}) or any(
                name in getattr(c, "__annotations__", {}) for c in owner.__mro__):
            return name
        try:
            source = inspect.getsource(owner)
        except (OSError, TypeError):
            return MISSING
        return name if re.search(rf"\bself\.{re.escape(name)}\s*(:[^=\n]*)?=", source) else MISSING
    return MISSING


def resolve_in(owner: object, path: str) -> object:
    obj = owner
    for part in path.split("."):
        obj = attribute(obj, part)
        if obj is MISSING:
            return MISSING
    return obj


def split_args(args: str) -> list[str]:
    """``(a, b="x, y", c=None)`` → ``['a', 'b="x, y"', 'c=None']``."""
    parts, depth, quote, cur = [], 0, "", ""
    for ch in args[1:-1]:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def check_signature(obj: object, args: str, where: str) -> list[str]:
    """Documented ``name=default`` parameters exist with that default, in the documented order;
    documented positional arguments fit the signature."""
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return []
    if params and params[0].name == "self" and inspect.isfunction(obj):
        params = params[1:]  # a method documented on an instance (`build.save(dir)`)
    index = {p.name: i for i, p in enumerate(params)}
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    problems, last = [], -1
    for i, part in enumerate(split_args(args)):
        if part in ("...", "*", "**options"):
            continue
        name, eq, default = part.partition("=")
        name, default = name.strip(), default.strip()
        if not eq:
            if i >= len(positional) and not any(p.kind == p.VAR_POSITIONAL for p in params):
                problems.append(f"{where}: takes {len(positional)} positional arguments, README shows more")
            last = max(last, i)
            continue
        if name not in index:
            problems.append(f"{where}: no parameter {name!r} (has {', '.join(index)})")
            continue
        if index[name] <= last:
            problems.append(f"{where}: parameter {name!r} is out of the documented order")
        last = index[name]
        if default != "...":
            want, have = ast.literal_eval(default), params[index[name]].default
            if have is inspect.Parameter.empty or have != want:
                shown = "none (required)" if have is inspect.Parameter.empty else repr(have)
                problems.append(f"{where}: {name} defaults to {shown}, README says {default}")
    return problems


def check_return(obj: object, ret: str, where: str, scopes: list[object]) -> tuple[object, list[str]]:
    """The documented return type resolves (in the function's module first) and matches the annotation."""
    ret = ret.strip()
    if not re.fullmatch(r"[A-Za-z_][\w.]*", ret):
        return MISSING, []  # a tuple of names, say: prose
    home = sys.modules.get(getattr(obj, "__module__", "") or "")
    found = MISSING
    for scope in [home, *scopes]:
        if scope is not None and (found := resolve_in(scope, ret)) is not MISSING:
            break
    if found is MISSING:
        found = resolve_dotted(ret)[0]
    if found is MISSING:
        return MISSING, [f"{where}: return type {ret} not found"]
    annotation = inspect.signature(obj).return_annotation if callable(obj) else inspect.Signature.empty
    if annotation is not inspect.Signature.empty:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        if ret not in re.findall(r"[\w.]+", text) and ret.split(".")[-1] not in re.findall(r"[\w]+", text):
            return found, [f"{where}: returns {text}, README says {ret}"]
    return found, []


def dict_key_lists(bullet: str) -> dict[str, list[str]]:
    """`NAME` (`k1`, `k2`, …): a name followed by a parenthesised list of code spans only."""
    found = {}
    for m in re.finditer(r"`(\w+)` \(((?:`[^`]+`(?:,\s*)?)+)\)", bullet):
        found[m.group(1)] = SPAN.findall(m.group(2))
    return found


def check_bullet(bullet: str) -> tuple[list[str], list[str]]:
    """(names checked, problems) for one bullet of the section."""
    checked, problems = [], []
    context: types.ModuleType = lensnet_deploy  # the module a bullet is about, once it names one
    returned: object = MISSING  # the last documented return type: `build.save`, `.processes`, `raw`
    keys = dict_key_lists(bullet)
    skip = {k for values in keys.values() for k in values}
    previous, prev_end = None, 0
    for m in SPAN.finditer(bullet):
        span, between = m.group(1).strip(), bullet[prev_end:m.start()]
        prev_end = m.end()
        named = NAMED.match(span)
        if not named or span in skip:
            continue
        name, args, ret = named.group("name", "args", "ret")
        obj, parent = MISSING, MISSING  # parent: what holds the name's last part
        head, _, rest = name.lstrip(".").partition(".")
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            obj, module = resolve_dotted(name)
            parent = resolve_dotted(name.rpartition(".")[0] or name)[0]
            if obj is not MISSING:
                context = obj if isinstance(obj, types.ModuleType) else module
        elif name.startswith("."):  # `.processes` of the documented return type
            obj, parent = resolve_in(returned, name[1:]), returned
        else:
            owners = [context, lensnet_deploy]
            if between == "/" and previous is not None:
                owners.insert(0, previous)  # `onnx_export.export_onnx`/`compare_onnx`
            for owner in owners:
                if (obj := resolve_in(owner, name)) is not MISSING:
                    parent = resolve_in(owner, name.rpartition(".")[0]) if rest else owner
                    break
            if obj is MISSING and returned is not MISSING:  # an instance: `build.save(...)`, `raw`
                obj, parent = resolve_in(returned, rest or head), returned
            if obj is MISSING and rest:  # another library: `nir.NIRGraph`, `dataclasses.replace`
                obj = resolve_dotted(name)[0]
        checked.append(span)
        if obj is MISSING:
            problems.append(f"`{span}` does not resolve")
            continue
        previous = parent if parent is not MISSING else None
        if args and callable(obj):
            problems += check_signature(obj, args, span)
        if ret:
            found, more = check_return(obj, ret, span, [context, lensnet_deploy])
            problems += more
            if found is not MISSING:
                returned = found
        if name.split(".")[-1] in keys and isinstance(obj, Mapping):
            listed = keys[name.split(".")[-1]]
            if sorted(obj) != sorted(listed):
                problems.append(f"`{name}` has keys {sorted(obj)}, README lists {listed}")
    return checked, problems


def test_every_documented_name_resolves_as_written():
    example, bullets = example_and_bullets()
    problems, checked = [], []
    alias = re.search(rf"^import {PACKAGE} as (\w+)$", example, re.M)
    assert alias, "the example imports the package under an alias"
    for name in sorted(set(re.findall(rf"\b{alias.group(1)}\.(\w+)", example))):
        checked.append(name)
        if getattr(lensnet_deploy, name, MISSING) is MISSING:
            problems.append(f"example: {alias.group(1)}.{name} does not exist")
    for module, names in re.findall(rf"^from ({PACKAGE}[\w.]*) import ([\w, ]+)$", example, re.M):
        for name in (n.strip() for n in names.split(",")):
            checked.append(f"{module}.{name}")
            if resolve_dotted(f"{module}.{name}")[0] is MISSING:
                problems.append(f"example: from {module} import {name} fails")
    for bullet in bullets:
        names, more = check_bullet(bullet)
        checked += names
        problems += more
    assert not problems, "\n".join(problems)
    assert len(checked) >= 60, checked  # the section documents about 70 names: the parser found them


def test_the_documented_errors_are_one_family():
    _, bullets = example_and_bullets()
    errors = [b for b in bullets if b.startswith("Errors:")]
    assert len(errors) == 1
    base, *subclasses = [getattr(lensnet_deploy, n) for n in SPAN.findall(errors[0])]
    assert base is lensnet_deploy.errors.LensNetDeployError and len(subclasses) >= 6
    for cls in subclasses:
        assert issubclass(cls, base) and cls is not base, cls
        assert cls.exit_code in (2, 3, 4)


def test_the_cheap_calls_work():
    from lensnet_deploy.model_zoo import VARIANTS, LensNetConfig

    target = lensnet_deploy.load_target("loihi2")
    assert isinstance(target, lensnet_deploy.Target) and target.name == "loihi2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.name = "x"  # type: ignore[misc]
    assert dataclasses.replace(target, name="variant").name == "variant" and target.name == "loihi2"
    assert all(isinstance(cfg, LensNetConfig) for cfg in VARIANTS.values())
    spans = [s for bullet in example_and_bullets()[1] for s in SPAN.findall(bullet)]
    reference = resolve_dotted(next(s for s in spans if s.endswith(".run_reference")))[1]
    import numpy as np

    same, other = {"a": np.zeros(3), "b": np.ones(2)}, {"a": np.zeros(3), "b": np.array([1.0, 5.0])}
    assert reference.first_difference(same, same, ["a", "b"]) is None
    assert reference.first_difference(same, other, ["a", "b"]) == ("b", 1)


def test_quantize_checks_the_images_it_is_given(micro_model):
    """The integer graph depends on the weights alone; images of another size fail in one line."""
    import torch

    graph = lensnet_deploy.export_nir(micro_model, (32, 48))
    with pytest.raises(lensnet_deploy.DatasetError, match=r"2×3×48×32 do not fit the graph: it takes B×3×32×48"):
        lensnet_deploy.quantize(graph, torch.zeros(2, 3, 48, 32))


LAZY = """
import json, sys
import lensnet_deploy.errors
after_errors = sorted(m for m in ("torch", "nir", "numpy", "lava") if m in sys.modules)
shim = any(type(f).__name__ == "_VarModelFinder" for f in sys.meta_path)
import lensnet_deploy, lensnet_deploy.hardware
from lensnet_deploy.hardware import Target, load_target
after_targets = sorted(m for m in ("torch", "nir", "numpy", "lava") if m in sys.modules)
names = sorted(lensnet_deploy.__all__)
missing = [n for n in names if n not in dir(lensnet_deploy)]
print(json.dumps([after_errors, shim, after_targets, load_target("loihi2").name, names, missing]))
"""


def test_importing_the_errors_loads_neither_torch_nor_nir():
    proc = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    after_errors, shim, after_targets, target, names, missing = json.loads(proc.stdout)
    assert after_errors == [] and after_targets == []
    assert shim  # the Lava shim is in place whatever part of the package was imported first
    assert target == "loihi2" and not missing
    assert {"quantize", "load_lensnet", "compile", "simulate", "prepare", "load_build", "Target"} <= set(names)


def test_every_public_name_loads():
    for name in lensnet_deploy.__all__:
        assert getattr(lensnet_deploy, name) is not None, name
    assert lensnet_deploy.compile.__name__ == "compile_graph"
    assert lensnet_deploy.export.write_nir  # submodules stay reachable as attributes
    with pytest.raises(AttributeError):
        lensnet_deploy.no_such_name  # noqa: B018
    from lensnet_deploy.hardware import LavaNetwork, lava_network

    assert lava_network.__name__ == "lava_network" and LavaNetwork.__name__ == "LavaNetwork"
    with pytest.raises(ImportError):
        from lensnet_deploy.hardware import no_such_name  # noqa: F401
