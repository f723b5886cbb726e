"""Hostile runbooks and parameter values (issue #8, F4): each reproducer is refused with exit 3 and
`file:line`, in a child process held to MEMORY_LIMIT of address space and TIME_LIMIT seconds. Before the
fix they exited 1 ("internal error"), reached gigabytes of memory, or hung past Ctrl-C."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from tests.conftest import REPO
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from conftest import REPO  # type: ignore[no-redef, unused-ignore]

MEMORY_LIMIT = 768 * 1024 * 1024  # the CLI validating a runbook needs ~120 MB; the laughs reached 9.7 GB
TIME_LIMIT = 60

HEADER = """\
apiVersion: runbook/v1
name: {name}
title: Hostile
version: 1.0.0
kind: operation
"""
STEPS = """\
steps:
  - name: check
    playbook: check.yml
"""
PLAY = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: hi}\n"

LAUGHS = "".join(
    [f"l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)]
    + ["description: *l8\n"]
)


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def bounded(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process under the memory limit; a hang fails the test at TIME_LIMIT."""
    return subprocess.run([sys.executable, "-m", "runner", "-w", str(ws), *args], preexec_fn=limited,
                          capture_output=True, text=True, timeout=TIME_LIMIT, env=dict(os.environ))


def workspace(root: Path, name: str, body: str, header: bool = True) -> Path:
    for folder in ("runbooks", "playbooks", "inventories"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "inventories" / "local.yml", root / "inventories" / "local.yml")
    (root / "playbooks" / "check.yml").write_text(PLAY, encoding="utf-8")
    text = (HEADER.format(name=name) if header else "") + body
    (root / "runbooks" / f"{name}.yml").write_text(text, encoding="utf-8")
    return root


def assert_refused(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 3, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def test_the_billion_laughs_reproducer_is_small() -> None:
    assert len(LAUGHS) < 700  # the was 665 bytes


# name, the runbook's body after HEADER (or the whole file), the line and message expected
REPRODUCERS = [
    ("impossible-date", "version: 2001-02-30\n" + STEPS, False,
     ":5: version: '2001-02-30' is not a date (quote it to make it text)"),
    ("tag-int", "owner: !!int abc\n" + STEPS, True, ":6: owner: 'abc' is not an integer"),
    ("tag-float", "owner: !!float abc\n" + STEPS, True, ":6: owner: 'abc' is not a number"),
    ("tag-bool", "owner: !!bool abc\n" + STEPS, True, ":6: owner: 'abc' is not a boolean"),
    ("tag-timestamp", "owner: !!timestamp abc\n" + STEPS, True, ":6: owner: 'abc' is not a date"),
    ("tag-binary", "owner: !!binary aGk=\n" + STEPS, True, ":6: tag !!binary is not allowed"),
    ("tag-python", "owner: !!python/object/apply:os.system [true]\n" + STEPS, True,
     ":6: tag !!python/object/apply:os.system is not allowed"),
    ("huge-integer", "timeout: " + "9" * 4301 + "\n" + STEPS, True, ":6: timeout: '99999999999999999999...9999999999 (4301 characters)' is not an integer"),
    ("recursive-alias", "tags: &a [*a]\n" + STEPS, True, ":6: anchor &a: anchors and aliases are not allowed"),
    ("billion-laughs", LAUGHS + STEPS, True, ":6: anchor &l0: anchors and aliases are not allowed"),
    ("huge-repetition", "parameters:\n  p: {type: string, pattern: 'a{4294967296}'}\n" + STEPS, True,
     ":7: parameters.p.pattern: invalid regular expression"),
    ("backreference", "parameters:\n  p: {type: string, pattern: '(a)\\1'}\n" + STEPS, True,
     ":7: parameters.p.pattern: regular expression not supported by RE2"),
    ("lookahead", "parameters:\n  p: {type: string, pattern: '(?=a)a'}\n" + STEPS, True,
     ":7: parameters.p.pattern: regular expression not supported by RE2"),
    ("when-nested-1000", STEPS + "    when: \"" + "(" * 1000 + "true" + ")" * 1000 + "\"\n", True,
     ":9: steps[0].when: expression too long (2004 characters; at most 2000)"),
    ("when-nested-500", STEPS + "    when: \"" + "(" * 500 + "true" + ")" * 500 + "\"\n", True,
     ":9: steps[0].when: expression nested too deeply"),
    ("when-or-chain", STEPS + "    when: \"" + " or ".join(["true"] * 450) + "\"\n", True,
     ":9: steps[0].when: expression"),
    ("vars-nested", STEPS + "    vars: {x: \"{{ " + "[" * 300 + "]" * 300 + " }}\"}\n", True,
     ":9: steps[0].vars.x: expression nested too deeply"),
    ("yaml-nested-100", "tags: " + "[" * 100 + "]" * 100 + "\n" + STEPS, True, ":6: tags[0][0][0]: nested more than 64 levels deep"),
    ("never-fires", STEPS + "schedule:\n  - cron: '0 0 31 2 *'\n", True,
     ":10: schedule[0].cron: '0 0 31 2 *' never fires"),
    ("list-key", "? [a, b]\n: c\n" + STEPS, True, ":6: a key must be text"),
]


@pytest.mark.parametrize(("name", "body", "header", "expected"), REPRODUCERS, ids=[r[0] for r in REPRODUCERS])
def test_hostile_runbook_is_refused_with_its_line_in_bounded_time_and_memory(
        tmp_path: Path, name: str, body: str, header: bool, expected: str) -> None:
    if not header:
        body = HEADER.format(name=name).replace("version: 1.0.0\n", "") + body
    ws = workspace(tmp_path / "ws", name, body, header)
    assert_refused(bounded(ws, "validate", "--no-syntax-check"), f"runbooks/{name}.yml{expected}")


def test_every_command_reading_runbooks_refuses_the_hostile_ones_and_serves_the_good_one(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", "good", STEPS)
    for name, body, header, _ in REPRODUCERS:
        text = (HEADER.format(name=name) if header else HEADER.format(name=name).replace("version: 1.0.0\n", "")) + body
        (ws / "runbooks" / f"{name}.yml").write_text(text, encoding="utf-8")
    listed = bounded(ws, "list")  # reads headers only (fast): files whose YAML cannot be read are refused
    unreadable = [name for name, *_ in REPRODUCERS if name.startswith(("tag-", "impossible", "huge-int", "recursive",
                                                                        "billion", "list-key"))]
    assert_refused(listed, *(f"runbooks/{name}.yml:" for name in unreadable))
    shown = {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert shown == {"good"} | {name for name, *_ in REPRODUCERS} - set(unreadable)
    docs = bounded(ws, "docs", "-o", str(tmp_path / "manual"))
    assert_refused(docs, *(f"runbooks/{name}.yml:" for name, *_ in REPRODUCERS))
    assert (tmp_path / "manual" / "good.html").is_file()
    for name, *_ in REPRODUCERS:
        assert not (tmp_path / "manual" / f"{name}.html").exists()
    for command in ("run", "show"):
        assert_refused(bounded(ws, command, "billion-laughs"), "runbooks/billion-laughs.yml:6: anchor &l0")
    assert bounded(ws, "show", "good").returncode == 0


PATTERN = "parameters:\n  word: {type: string, pattern: '(a+)+$'}\n  items: {type: list}\n"


def test_a_catastrophic_pattern_is_matched_in_linear_time(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", "pattern", PATTERN + STEPS)
    done = bounded(ws, "run", "pattern", "-p", "word=" + "a" * 100_000 + "!")  # Python's re: centuries
    assert_refused(done, "runbooks/pattern.yml:7: parameters.word: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... "
                         "(100003 characters) does not match the pattern (a+)+$")


def test_an_aliased_list_parameter_is_refused(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", "pattern", PATTERN + STEPS)
    value = ("[&a [x,x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b],"
             " &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], *e, *e, *e, *e, *e]")
    assert len(value) < 400  # the reached 889 MB from 376 bytes
    done = bounded(ws, "run", "pattern", "-p", f"items={value}", "-p", "word=a")
    assert_refused(done, "parameters.items:", "is not a list: anchor &a: anchors and aliases are not allowed")


def test_a_hostile_params_file_is_refused_with_its_line(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", "pattern", PATTERN + STEPS)
    for text, expected in ((LAUGHS, ":1: anchor &l0: anchors and aliases are not allowed"),
                           ("word: !!int abc\n", ":1: word: 'abc' is not an integer"),
                           ("word: a\nitems: " + "[" * 80 + "]" * 80 + "\n", ":2: items[0][0][0]: nested more than"),
                           ("word: 2001-02-30\n", ":1: word: '2001-02-30' is not a date")):
        params = tmp_path / "params.yml"
        params.write_text(text, encoding="utf-8")
        assert_refused(bounded(ws, "run", "pattern", "--params-file", str(params)), f"{params}{expected}")
    params.write_bytes(b"\xff\xfe\x00binary")
    assert_refused(bounded(ws, "run", "pattern", "--params-file", str(params)), "not UTF-8 text")


def test_a_value_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", "pattern", PATTERN + STEPS)
    word = os.fsdecode(b"a\xff")  # what Python makes of argv bytes that are not UTF-8
    assert_refused(bounded(ws, "run", "pattern", "-p", f"word={word}"), "parameters.word: 'a\\udcff' is not valid UTF-8 text")
