"""The wheel is complete and works on its own: every package and data file of the tree is in it,
and the bundled default runs from a fresh environment that has the wheel, not the checkout.

The expected contents come from the file system (every folder with an ``__init__.py`` under
pyproject's package-dir roots, the data files wherever they live), so a package moved or
added without updating pyproject fails here, not on a user's machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import torch
from conftest import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
ROOTS = {name: REPO / folder for name, folder in SETUPTOOLS["package-dir"].items()}


def _relative(path: Path, package: str) -> str:
    """``path`` under package-dir root ``package`` as a path inside the wheel."""
    return "/".join([*package.split("."), *path.relative_to(ROOTS[package]).parts])


def tree_packages() -> set[str]:
    """Every folder with an ``__init__.py`` under the package-dir roots, as a dotted name."""
    found = set()
    for package, root in ROOTS.items():
        for init in root.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(_relative(init.parent, package).replace("/", "."))
    return found


def _files(root: Path, pattern: str) -> list[Path]:
    return [p for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts]


def tree_data_files() -> set[str]:
    """The data files the wheel must carry, as paths inside it."""
    zoo, package = ROOTS["lensnet_deploy.model_zoo"], ROOTS["lensnet_deploy"]
    hardware = ROOTS["lensnet_deploy.hardware"]
    wanted = {_relative(p, "lensnet_deploy.model_zoo")
              for pattern in ("*.json", "*.safetensors", "cards/*") for p in _files(zoo, pattern)}
    wanted |= {_relative(p, "lensnet_deploy") for p in _files(package, "data/**/*")}
    wanted |= {_relative(p, "lensnet_deploy.hardware") for p in _files(hardware, "**/*.json")}  # targets, boards
    return wanted


def tree_modules() -> set[str]:
    """Every module of every package, as a path inside the wheel."""
    modules = set()
    for package in tree_packages():
        root = next(name for name in sorted(ROOTS, key=len, reverse=True) if package == name or
                    package.startswith(name + "."))
        folder = ROOTS[root].joinpath(*package[len(root):].lstrip(".").split(".")) if package != root else ROOTS[root]
        modules |= {_relative(p, root) for p in folder.glob("*.py")}
    return modules


def test_pyproject_lists_every_package_of_the_tree():
    listed = set(SETUPTOOLS["packages"])
    assert listed == tree_packages(), (f"add to pyproject's packages: {sorted(tree_packages() - listed)}; "
                                       f"remove: {sorted(listed - tree_packages())}")
    assert len(tree_data_files()) >= 30  # 24 samples + README, 2 checkpoints, registry, cards, targets


def _source_copy(dest: Path) -> Path:
    """What ``pip wheel .`` reads (tracked and untracked files git does not ignore), linked into
    ``dest``: a stale ``build/`` of the checkout (setuptools reuses it) cannot reach the wheel."""
    roots = ["pyproject.toml", "README.md", *(str(p.relative_to(REPO)) for p in ROOTS.values())]
    try:
        listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", *roots], cwd=REPO,
                                 capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
        files = [REPO / f for f in listing if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        files = [REPO / r for r in roots[:2]] + [p for r in ROOTS.values() for p in r.rglob("*")
                                                 if p.is_file() and "__pycache__" not in p.parts]
    for src in files:
        if not src.is_file():  # deleted but still tracked
            continue
        target = dest / src.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:
            shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    source = _source_copy(base / "src")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "-w", str(base / "dist"), str(source)]
    # the build backend as installed (pyproject wants setuptools>=77), else an isolated build (needs an index)
    if int(metadata.version("setuptools").split(".")[0]) >= 77:
        command.insert(4, "--no-build-isolation")
    else:
        command.remove("--no-index")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # setuptools is quiet (no deprecation, no "Package would be ignored"); pip's notes on this
    # machine's index configuration ("WARNING: Location '…' is ignored") are not ours
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "warn" in line.lower() and "WARNING: Location '" not in line]
    assert not warnings, proc.stdout + proc.stderr
    (built,) = (base / "dist").glob("lensnet_deploy-*.whl")
    return built


def test_the_wheel_holds_every_package_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not tree_modules() - names, sorted(tree_modules() - names)
    assert not tree_data_files() - names, sorted(tree_data_files() - names)
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == tree_packages()
    assert not [n for n in names if n.startswith("lensnet_deploy/model_zoo/training/")]  # run records stay out


def _fresh_environment(where: Path, wheel: Path) -> Path:
    """A virtual environment with the wheel installed by pip (not editable) and the other
    dependencies borrowed from this one through a ``.pth`` line (its editable finder is not run:
    .pth files of a path added that way are not processed)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    # pip alone on the path while it installs: it sees an empty environment (not this one's editable install)
    only_pip = where / "pip-only"
    only_pip.mkdir()
    import pip

    (only_pip / "pip").symlink_to(Path(pip.__file__).parent, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(only_pip), "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-compile", str(wheel)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return where


def test_the_installed_wheel_runs_the_bundled_default(wheel, tmp_path):
    """`lensnet-deploy run -o OUT` (no other argument) from the wheel in a fresh environment,
    outside the checkout: every package is the wheel's, the samples and the zoo model come
    from it, and the report is written."""
    env_dir = _fresh_environment(tmp_path / "env", wheel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # as many threads as this test run uses
    work = tmp_path / "elsewhere"
    work.mkdir()
    packages = sorted(tree_packages())
    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c",
         "import importlib.util, sys\n"
         "for name in sys.argv[1:]: print(importlib.util.find_spec(name).origin)", *packages],
        cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    origins = where.stdout.split()
    assert len(origins) == len(packages)
    assert all(Path(o).resolve().is_relative_to(env_dir.resolve()) for o in origins), origins

    out = tmp_path / "demo"
    run = subprocess.run([str(env_dir / "bin" / "lensnet-deploy"), "run", "-o", str(out)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (out / "report.html").is_file() and (out / "report.html").stat().st_size > 10_000
    first = run.stdout.splitlines()[0]
    assert first.startswith("bundled default: lensnet-tiny on ") and str(env_dir.resolve()) in first, first
    steps = [line[:6] for line in run.stdout.splitlines() if line.startswith("[")]
    assert len(steps) >= 7 and set(steps[:-1]) == {"[run ]"} and steps[-1] == "[done]", run.stdout  # all fresh
