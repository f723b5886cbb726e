"""README's CLI table lists every command and every option of each (a user reads it, not the code)."""
from __future__ import annotations

import re

import click

from conftest import REPO
from runner.cli import cli


def _rows() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `runbook")]


def _leaves(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _leaves(command, path + (name,))
        else:
            found.append((path + (name,), command))
    return found


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_readme_cli_table_lists_every_option_of_every_command() -> None:
    rows = _rows()
    missing = []
    for path, command in _leaves(cli):
        text = " ".join(r for r in rows if f"runbook {path[0]}" in r and all(_mentions(r, p) for p in path))
        if not text:
            missing.append(f"runbook {' '.join(path)}: no row")
            continue
        for param in command.params:
            names = [*param.opts, *param.secondary_opts]
            if isinstance(param, click.Option) and "--help" not in names and not any(_mentions(text, n) for n in names):
                missing.append(f"runbook {' '.join(path)} {names[0]}")
    globals_row = rows[0] if rows else ""
    missing += [f"runbook {o}" for o in ("-w", "--workspace", "--version") if not _mentions(globals_row, o)]
    assert not missing, "README's CLI table misses: " + ", ".join(missing)
