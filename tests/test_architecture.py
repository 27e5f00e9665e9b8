"""The architecture holds: imports run one way without cycles, internal failures say they are
bugs (exit 1) while bad input stays exit 2, and library code raises its own error types."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the import namespace: setuptools' package-dir mapping (pyproject.toml)
PACKAGES = {"lensnet_deploy": REPO / "lensnet_deploy", "lensnet_deploy.export": REPO / "export",
            "lensnet_deploy.hardware": REPO / "hardware", "lensnet_deploy.model_zoo": REPO / "model_zoo"}
BOTTOM = {"lensnet_deploy.errors", "lensnet_deploy.atomic", "lensnet_deploy.normalization",
          "lensnet_deploy.lava_compat"}
LAYERS = {"model_zoo": 0, "export": 1, "hardware": 2, "root": 3}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def import_edges() -> dict[str, set[str]]:
    """Every import of every module, the lazy ones inside functions included, resolved to modules."""
    mods = modules()
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                # ``from package import module`` imports the module; ``from module import name`` the module
                candidates = [f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module for a in node.names]
            else:
                continue
            for c in candidates:
                while c and c not in mods and "." in c:
                    c = c.rpartition(".")[0]
                if c in mods and c != name:
                    targets.add(c)
        edges[name] = targets
    return edges


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "root"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_lazy_imports():
    edges = import_edges()
    assert len(edges) > 60
    # lensnet_deploy.api imports the fast simulator's model lazily-free; the CLI imports the API inside functions
    assert "lensnet_deploy.api" in edges["lensnet_deploy.cli"]
    assert "lensnet_deploy.hardware.integer.reference" in edges["lensnet_deploy.hardware.model"]


def test_no_import_cycles():
    assert cycles(import_edges()) == []


def test_imports_run_one_way():
    """model_zoo ← export ← hardware ← package API/CLI; errors, atomic and normalisation at the bottom."""
    wrong = []
    for src, targets in import_edges().items():
        for dst in targets:
            if dst in BOTTOM:
                continue
            if LAYERS[layer(dst)] > LAYERS[layer(src)]:
                wrong.append(f"{src} → {dst}")
    assert wrong == []


def test_the_checker_catches_a_cycle_and_an_upward_import():
    edges = {"lensnet_deploy.export.a": {"lensnet_deploy.hardware.b"}, "lensnet_deploy.hardware.b":
             {"lensnet_deploy.export.a"}}
    assert cycles(edges) == [["lensnet_deploy.export.a", "lensnet_deploy.hardware.b"]]
    assert LAYERS[layer("lensnet_deploy.hardware.b")] > LAYERS[layer("lensnet_deploy.export.a")]


def test_library_code_raises_its_own_errors():
    """At most 3 bare ValueError/RuntimeError/TypeError raises remain, each a programming error."""
    bare = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name) \
                    and node.exc.func.id in ("ValueError", "RuntimeError", "TypeError"):
                bare.append(f"{name}:{node.lineno}")
    assert len(bare) <= 3, bare


def run_cli(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_an_internal_failure_exits_1_and_says_it_is_a_bug(tmp_path):
    code = ("import lensnet_deploy.metrics as m\n"
            "def broken(*a, **k):\n    raise KeyError('smeasure')\n"
            "m.evaluate_dirs = broken\n"
            "from lensnet_deploy.cli import main\n"
            f"main(['evaluate', '--pred', {str(tmp_path)!r}, '--gt', {str(tmp_path)!r}])\n")
    proc = run_cli(code)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1
    assert lines[0].startswith("lensnet-deploy evaluate: internal error (a bug in lensnet-deploy, please report it")
    assert "KeyError: 'smeasure'" in lines[0] and "test_architecture" not in lines[0]


def test_bad_input_exits_2(tmp_path):
    proc = run_cli(f"from lensnet_deploy.cli import main\nmain(['evaluate', '--pred', {str(tmp_path / 'no')!r}, "
                   f"'--gt', {str(tmp_path)!r}])\n")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "no such prediction folder" in lines[0], proc.stderr
