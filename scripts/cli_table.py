"""Print the README's command table, rendered from the CLI's parsers, or write it into README.md.

    .venv/bin/python scripts/cli_table.py           # print it
    .venv/bin/python scripts/cli_table.py --write   # replace the table between the README's markers

tests/test_cli_vocabulary.py fails when the README's table is not this one, so the table never
drifts from what `--help` says.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lensnet_deploy.cli import command_table

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- cli-table:start (scripts/cli_table.py --write) -->", "<!-- cli-table:end -->"


def readme_table(text: str) -> str:
    """The table between the README's markers."""
    if START not in text or END not in text:
        raise SystemExit(f"{README}: no {START} … {END} markers")
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def write(readme: Path = README) -> bool:
    """Put the current table into ``readme``; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    old = readme_table(text)
    new = command_table()
    if old == new:
        return False
    head, rest = text.split(START, 1)
    readme.write_text(f"{head}{START}\n{new}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table into README.md (default: print it)")
    if parser.parse_args(argv).write:
        print(f"{README}: {'table updated' if write() else 'table already current'}")
    else:
        print(command_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
