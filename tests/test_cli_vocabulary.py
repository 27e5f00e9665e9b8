"""One flag vocabulary across the commands (issue 31): every command's --help against
``cli.VOCABULARY``, earlier spellings still parsed, every default stated, the README's command
table rendered from the parsers, and usage errors in one line."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lensnet_deploy import cli

REPO = Path(__file__).resolve().parents[1]
INSTALLED = Path(sys.executable).with_name("lensnet-deploy")
COMMAND = [str(INSTALLED)] if INSTALLED.exists() else [sys.executable, "-m", "lensnet_deploy"]
LEAVES = [leaf.prog.removeprefix("lensnet-deploy ").split() for leaf in cli._leaves(cli.build_parser())]


def run_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=300)


def help_flags(text: str) -> list[str]:
    """Each option line of a --help as ``-o/--out`` (its spellings joined)."""
    section = text.split("options:", 1)[1]
    found = []
    for line in section.splitlines():
        m = re.match(r"^ {2}(-\S.*?)(?: {2,}|$)", line)
        if m:
            found.append("/".join(re.findall(r"(?:^|, )(--?[\w-]+)", m.group(1))))
    return found


@pytest.mark.parametrize("command", LEAVES, ids=" ".join)
def test_every_flag_of_every_command_is_in_the_vocabulary(command):
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    flags = help_flags(proc.stdout)
    assert "-h/--help" in flags and "-v/--verbose" in flags and "--max-memory" in flags
    unknown = [f for f in flags if f not in cli.VOCABULARY]
    assert not unknown, f"{' '.join(command)}: flags outside cli.VOCABULARY: {unknown}"
    shown = {s for f in flags for s in f.split("/")}
    assert not shown & set(cli.DEPRECATED), f"deprecated spellings shown: {shown & set(cli.DEPRECATED)}"


def test_one_spelling_per_notion():
    """Writers take -o/--out, sizes --size, image counts --count: no other spelling is visible."""
    for leaf in cli._leaves(cli.build_parser()):
        for action in leaf._actions:
            visible = [s for s in action.option_strings if s not in cli.DEPRECATED]
            if action.dest in ("output", "out", "json"):
                assert visible == ["-o", "--out"], (leaf.prog, action.option_strings)
            if action.dest in ("size", "input_size"):
                assert visible == ["--size"], (leaf.prog, action.option_strings)
            if action.dest in ("count", "calib_count"):
                assert visible == ["--count"], (leaf.prog, action.option_strings)
    names = {leaf.prog for leaf in cli._leaves(cli.build_parser()) if any(
        a.dest in ("size", "input_size") for a in leaf._actions)}
    assert {"lensnet-deploy predict", "lensnet-deploy export", "lensnet-deploy train",
            "lensnet-deploy run"} <= names


def test_every_flag_has_help_that_states_its_default():
    for leaf in cli._leaves(cli.build_parser()):
        formatter = leaf._get_formatter()
        for action in leaf._actions:
            if action.help is argparse.SUPPRESS:
                assert set(action.option_strings) <= set(cli.DEPRECATED), (leaf.prog, action.option_strings)
                continue
            assert action.help, f"{leaf.prog} {action.option_strings or action.dest}: no help"
            if action.option_strings and not action.required and action.nargs != 0:
                text = formatter._get_help_string(action)
                assert "default" in text, f"{leaf.prog} {action.option_strings}: {text!r} states no default"


@pytest.mark.parametrize(("old", "new"), [
    (["export", "m", "--input-size", "32", "48", "--output", "x.nir"],
     ["export", "m", "--size", "32", "48", "-o", "x.nir"]),
    (["quantize", "g.nir", "--calib", "c", "--calib-count", "3", "--output", "q.nir"],
     ["quantize", "g.nir", "--calib", "c", "--count", "3", "--out", "q.nir"]),
    (["compile", "q.nir", "--output", "b"], ["compile", "q.nir", "-o", "b"]),
    (["compile", "q.nir", "-o", "b", "--share-weights"], ["compile", "q.nir", "-o", "b", "--weights", "shared"]),
    (["evaluate", "--pred", "p", "--gt", "g", "--json", "m.json"],
     ["evaluate", "--pred", "p", "--gt", "g", "-o", "m.json"]),
    (["train", "--input-size", "32", "--out", "r"], ["train", "--size", "32", "-o", "r"]),
    (["run", "m", "--images", "i", "--output", "o"], ["run", "m", "--images", "i", "-o", "o"]),
    (["zoo", "snap", "n", "--size", "64"], ["zoo", "snap", "n", "--size", "64", "64"]),
])
def test_earlier_spellings_still_parse_the_same(old, new):
    parser = cli.build_parser()
    assert vars(parser.parse_args(old)) == vars(parser.parse_args(new))


def test_size_takes_one_or_two_values():
    parser = cli.build_parser()
    assert parser.parse_args(["predict", "m", "--images", "i", "-o", "o", "--size", "64"]).size == (64, 64)
    assert parser.parse_args(["predict", "m", "--images", "i", "-o", "o", "--size", "64", "96"]).size == (64, 96)
    assert parser.parse_args(["run", "--size", "128"]).size == (128, 128)
    assert parser.parse_args(["train", "-o", "r", "--size", "32", "32"]).input_size == (32, 32)


def test_run_writes_to_out_demo_by_default_as_the_readme_says():
    parser = cli.build_parser()
    bundled = parser.parse_args(["run"])
    cli._default_out(bundled)
    assert bundled.output == Path("out/demo")
    own = parser.parse_args(["run", "m.safetensors", "--images", "i"])
    cli._default_out(own)
    assert own.output == Path("out/run")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "writes `out/demo/report.html`" in readme


def load_table_script():
    spec = importlib.util.spec_from_file_location("cli_table", REPO / "scripts" / "cli_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_command_table_is_rendered_from_the_parsers():
    script = load_table_script()
    table = script.readme_table((REPO / "README.md").read_text(encoding="utf-8"))
    assert table == cli.command_table(), "README's command table is stale: run `python scripts/cli_table.py --write`"
    rows = table.splitlines()[2:]
    assert len(rows) == len(LEAVES)
    for row, command in zip(rows, LEAVES):
        assert row.startswith(f"| `lensnet-deploy {' '.join(command)}"), row
    assert "--output" not in table and "--input-size" not in table and "--calib-count" not in table


def test_the_table_script_writes_only_between_its_markers(tmp_path):
    script = load_table_script()
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{script.START}\n| old |\n{script.END}\n\nafter\n", encoding="utf-8")
    assert script.write(readme) and not script.write(readme)
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# title\n\n") and text.endswith("\n\nafter\n")
    assert script.readme_table(text) == cli.command_table()


@pytest.mark.parametrize(("args", "fragment"), [
    (["predict", "m.pth", "--images", "i"], "the following arguments are required: -o/--out"),
    (["export", "m.pth", "-o", "x.nir", "--size", "32", "32", "7"], "unrecognized arguments: 7"),
    (["quantize", "g.nir", "--calib", "c", "--calib-count", "0", "-o", "q.nir"],
     "argument --count: must be a positive integer, got '0'"),
    (["train", "-o", "r", "--size", "32", "64"], "argument --size: takes one side N (square inputs), got 32 64"),
    (["zoo", "list", "--bogus"], "unrecognized arguments: --bogus"),
    (["diff", "q.nir", "--backends", "fast", "gpu"], "argument --backends: invalid choice: 'gpu'"),
])
def test_usage_errors_are_one_line_from_the_command(args, fragment):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    command = " ".join(args[:2]) if args[0] == "zoo" else args[0]
    assert lines[0].startswith(f"lensnet-deploy {command}: error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert "--output" not in lines[0] and "--calib-count" not in lines[0]


def test_export_refuses_a_format_its_extension_contradicts(tmp_path):
    proc = run_cli("export", "lensnet-micro-does-not-matter", "-o", tmp_path / "x.onnx", "--format", "nir")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["lensnet-deploy export: error: --format nir does not match the output x.onnx (.onnx is onnx): "
                     "drop --format, or name the file .nir"]
    assert not (tmp_path / "x.onnx").exists()


def test_export_format_follows_the_extension():
    fmt = cli._export_format
    assert fmt(Path("a.onnx"), None) == "onnx" and fmt(Path("a.NIR"), None) == "nir"
    assert fmt(Path("a.h5"), None) == "nir" and fmt(Path("a.h5"), "onnx") == "onnx"
    assert fmt(Path("a.onnx"), "onnx") == "onnx"


def test_an_internal_error_points_at_no_web_address_and_v_adds_the_traceback(tmp_path):
    code = ("import lensnet_deploy.metrics as m\n"
            "def broken(*a, **k):\n    raise KeyError('smeasure')\n"
            "m.evaluate_dirs = broken\n"
            "import sys\nfrom lensnet_deploy.cli import main\n"
            f"main(['evaluate', '--pred', {str(tmp_path)!r}, '--gt', {str(tmp_path)!r}, *sys.argv[1:]])\n")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert quiet.returncode == 1 and len(lines) == 1, quiet.stderr
    assert "http" not in lines[0] and "-v/--verbose" in lines[0], lines[0]
    loud = subprocess.run([sys.executable, "-c", code, "-v"], capture_output=True, text=True, timeout=300)
    assert loud.returncode == 1 and "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.rstrip().splitlines()[-1] == lines[0]


def test_run_ends_with_step_times_and_metrics(capsys):
    metric = {"smeasure": 0.9, "mae": 0.03, "max_fmeasure": 0.8, "mean_emeasure": 0.85, "wfmeasure": 0.7}
    summary = {"images": 12, "input_size": [256, 256],
               "metrics": {"float": metric, "integer": {**metric, "smeasure": 0.899}}}
    cli._print_run(summary, {"export": 12.04, "quantize": None, "compile": 100.0})
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == ["time per step:", "  export    12.0 s", "  quantize  up to date, skipped",
                       "  compile   1 min 40 s", "  total     1 min 52 s"]
    assert out[5] == "metrics on 12 images (256x256 input):"
    assert out[7].split() == ["S-measure", "0.9000", "0.8990", "-0.0010"]


def test_the_zoo_records_commands_in_spellings_that_still_parse():
    """model_zoo/registry.json records how each model was made (`train --input-size 192 …`,
    `zoo register … --snap 256`): those commands keep working."""
    import json
    import shlex

    parser = cli.build_parser()
    registry = json.loads((REPO / "model_zoo" / "registry.json").read_text(encoding="utf-8"))
    parsed = 0
    for entry in registry["models"].values():
        for part in entry["command"].split("&&"):
            argv = shlex.split(part)[1:]
            if argv[:2] == ["zoo", "register"]:
                argv += ["--command", "recorded"]  # the record is the command itself
            args = parser.parse_args(argv)
            if args.command == "train" and args.input_size is not None:
                assert args.input_size[0] == args.input_size[1]
            parsed += 1
    assert parsed >= 5
    assert parser.parse_args(["zoo", "register", "n", "--run", "r", "--command", "c", "--snap", "256"]).snap == 256
    both = parser.parse_args(["zoo", "register", "n", "--run", "r", "--command", "c", "--snap", "--size", "256"])
    assert both.snap is True and both.size == (256, 256)
