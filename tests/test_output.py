"""Output: recorded text never drives the terminal, and output paths that cannot be written are clear
usage errors checked before anything runs."""
from __future__ import annotations

import io
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from conftest import runbook
from runner.output import TerminalSafe, printable

# Clear the screen, retitle the window, ring, return to the line start, a C1 CSI, a right-to-left override.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\rX\x9b31m\u202eevil\u2066"
HOSTILE_RUNBOOK = """\
apiVersion: runbook/v1
name: hostile
title: "Hostile text \\e[31m in a title"
version: 0.1.0
kind: operation
description: "A description with \\e]0;title\\a and \\u202e reversed"
targets: db
concurrency: parallel
parameters:
  text: {type: string, required: true}
steps:
  - name: sign
    manual: Sign here.
    checklist: [Signed]
  - name: shout
    playbook: shout.yml
"""
SHOUT = """
- name: Print and fail with hostile text, as a compromised host could
  hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: "{{ text }}"}
    - ansible.builtin.fail: {msg: "{{ text }}"}
"""
UNSAFE = ["\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\x00"]


def _unsafe(text: str) -> list[str]:
    found = [repr(c) for c in UNSAFE if c in text]
    return found + (["bare CR"] if "\r" in text.replace("\r\n", "") else [])


def test_printable_shows_controls_and_keeps_lines() -> None:
    assert printable("a\tb\r\nc\n") == "a\tb\nc\n"
    assert printable(HOSTILE) == "\\x1b[2J\\x1b]0;pwned\\x07\\x0dX\\x9b31m\\u202eevil\\u2066"
    assert printable("café ✓ 日本") == "café ✓ 日本"


def test_terminal_safe_stream_joins_crlf_split_across_writes() -> None:
    out = io.StringIO()
    stream = TerminalSafe(out)
    for chunk in ("one\r", "\ntwo\r", "x\x1b", "\r"):
        stream.write(chunk)
        stream.flush()
    assert out.getvalue() == "one\ntwo\\x0dx\\x1b"
    stream.write("y")
    assert out.getvalue().endswith("\\x1b\\x0dy")


def test_recorded_control_characters_are_never_printed_raw(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    (alien / "runbooks" / "hostile.yml").write_text(HOSTILE_RUNBOOK)
    (alien / "playbooks" / "shout.yml").write_text(SHOUT)
    printed: dict[str, str] = {}
    # A name typed with control characters is refused (exit 3) and shown escaped in the refusal...
    refused = runbook("run", "hostile", "-p", f"text={HOSTILE}", cwd=alien, env={"RUNBOOK_USER": f"mallory{HOSTILE}"})
    assert refused.returncode == 3 and "RUNBOOK_USER" in refused.stderr and "x1b[2J" in refused.stderr, refused.stderr
    printed["refused"] = refused.stdout + refused.stderr
    env = {"RUNBOOK_USER": "mallory"}
    waiting = runbook("run", "hostile", "-p", f"text={HOSTILE}", cwd=alien, env=env)
    assert waiting.returncode == 5, waiting.stderr
    printed["run"] = waiting.stdout + waiting.stderr
    resumed = runbook("resume", "last", "--confirm", "--note", f"note {HOSTILE}", cwd=alien, env=env)
    assert resumed.returncode == 1, resumed.stderr
    printed["resume"] = resumed.stdout + resumed.stderr
    assert "FAILED: db1: \\x1b[2J" in resumed.stderr  # the host's message, shown not obeyed
    # ...but a shared database's row is anyone's text: an operator planted there is shown, not obeyed.
    with closing(sqlite3.connect(state_dir / "history.db")) as db, db:
        db.execute("UPDATE runs SET operator = ?", (f"mallory{HOSTILE}",))
    for args in (["history"], ["log", "last"], ["log", "last", "--host", "db1"], ["show", "hostile"],
                 ["report", "last", "--format", "md"], ["report", "--since", "1d", "--format", "md"]):
        done = runbook(*args, cwd=alien)
        assert done.returncode == 0, (args, done.stderr)
        printed[" ".join(args)] = done.stdout + done.stderr
    assert "mallory\\x1b[2J" in printed["history"]
    assert "note \\x1b[2J" in printed["log last"]
    assert "\\u202e reversed" in printed["show hostile"]
    leaks = {where: _unsafe(text) for where, text in printed.items() if _unsafe(text)}
    assert not leaks, leaks


def test_verbose_ansible_output_is_printable(alien: Path, state_dir: Path) -> None:
    (alien / "runbooks" / "hostile.yml").write_text(HOSTILE_RUNBOOK.replace(
        "  - name: sign\n    manual: Sign here.\n    checklist: [Signed]\n", ""))
    (alien / "playbooks" / "shout.yml").write_text(SHOUT)
    done = runbook("run", "hostile", "-v", "-p", f"text={HOSTILE}", cwd=alien)
    assert done.returncode == 1, done.stderr
    assert not _unsafe(done.stdout + done.stderr)
    assert "\\u202eevil" in done.stderr


@pytest.mark.parametrize("option", ["--junit", "-o"])
def test_unwritable_output_path_is_a_usage_error_before_the_run(alien: Path, state_dir: Path, tmp_path: Path,
                                                                option: str) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    for target in (blocked / "report.xml", tmp_path / "a-dir"):
        (tmp_path / "a-dir").mkdir(exist_ok=True)
        if option == "--junit":
            done = runbook("run", "conditional", "--junit", str(target), cwd=alien)
        else:
            if not (state_dir / "runs").exists():
                assert runbook("run", "conditional", cwd=alien).returncode == 0
            done = runbook("report", "last", "--format", "md", "-o", str(target), cwd=alien)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"runbook: cannot write {option} {target}: "), last
        assert "internal error" not in done.stderr
    if option == "--junit":
        assert not (state_dir / "runs").exists() or not any((state_dir / "runs").iterdir())  # nothing ran


def test_docs_into_an_unwritable_folder_is_a_usage_error(alien: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    done = runbook("docs", "-o", str(blocked), cwd=alien)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"runbook: cannot write -o {blocked}: ")
