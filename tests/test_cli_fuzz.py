"""The CLI with hostile arguments and hostile files (issue #8): every command answers with a documented exit
code and a message, never "internal error" and never a traceback. Driven in-process through runner.cli.main
(the one place where errors become exit codes) for speed; the runs it refers to are real."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runner.cli import main

try:
    from tests.conftest import copy_workspace, runbook
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from conftest import copy_workspace, runbook  # type: ignore[no-redef, unused-ignore]

DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 124, 130}
HUGE = "x" * 100_000
ODD = ["", " ", "../../etc/passwd", "../runbooks/conditional", "/etc/passwd", "conditional/../conditional",
       "é\u2028ü", "\x1b[31mred\x1b[0m", "\x7f\x01\x0b", "-x", "--help-me", "%", "_", "*", "'; DROP TABLE runs; --",
       "{{ 7*7 }}", HUGE]
LAUGHS = "".join(["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
                 + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)] + ["title: *l8\n"])


def hostile_files(ws: Path, outside: Path) -> None:
    """Runbooks that are not runbooks: a folder, binary, unreadable, links out, a device, a FIFO, reproducers."""
    runbooks = ws / "runbooks"
    (runbooks / "a-folder.yml").mkdir()
    (runbooks / "binary.yml").write_bytes(bytes(range(256)) * 4)
    (runbooks / "unreadable.yml").write_text("name: unreadable\n")
    (runbooks / "unreadable.yml").chmod(0)
    outside.write_text("apiVersion: runbook/v1\nname: outside\n")
    (runbooks / "outside.yml").symlink_to(outside)
    (runbooks / "zero.yml").symlink_to("/dev/zero")
    (runbooks / "dangling.yml").symlink_to(ws / "nowhere.yml")
    os.mkfifo(runbooks / "fifo.yml")
    (runbooks / "laughs.yml").write_text(LAUGHS)
    (runbooks / "date.yml").write_text("apiVersion: runbook/v1\nname: date\nversion: 2001-02-30\n")
    never = (runbooks / "nightly-note.yml").read_text().replace("30 2 * * *", "0 0 31 2 *")
    (runbooks / "never.yml").write_text(never.replace("name: nightly-note", "name: never"))
    (ws / "playbooks" / "loop.yml").write_text("- import_playbook: loop.yml\n")
    (ws / "playbooks" / "zero.yml").symlink_to("/dev/zero")
    looping = (runbooks / "conditional.yml").read_text().replace("note.yml", "loop.yml")
    (runbooks / "looping.yml").write_text(looping.replace("name: conditional", "name: looping"))


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Path]:
    ws = copy_workspace("alien-workspace", tmp_path / "ws")
    # Two real runs, started in parallel: "2026" and "20" are prefixes of both.
    started = [subprocess.Popen([sys.executable, "-m", "runner", "-w", str(ws), "run", *args, "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for args in (["conditional"], ["nightly-note", "-p", "message=hi"])]
    for process in started:
        assert process.wait(timeout=300) == 0, process.stderr.read() if process.stderr else ""
    hostile_files(ws, tmp_path / "outside.yml")
    yield ws


def cases(ws: Path, tmp: Path) -> list[list[str]]:
    missing = str(tmp / "missing" / "deep")
    blocked = str(ws / "runbooks" / "conditional.yml" / "below")  # a file where a folder should be
    names = ODD + ["a-folder", "binary", "unreadable", "outside", "zero", "dangling", "fifo", "laughs", "date",
                   "never", "looping"]
    refs = ODD + ["2026", "20", "nothing-like-it", "last", "last/../x"]
    out: list[list[str]] = [["list"], ["list", "--json"], ["list", "--tag", HUGE], ["list", "--kind", "x"],
                            ["list", "--tag", "\x1b[2J"], ["validate", "--no-syntax-check"]]
    for name in names:
        out += [["show", name], ["show", name, "--json"], ["validate", "--no-syntax-check", name],
                ["docs", name, "-o", str(tmp / "manual")], ["run", name, "--non-interactive"]]
    for ref in refs:
        out += [["log", ref], ["report", ref], ["resume", ref, "--non-interactive"], ["approve", ref, "--note", "x"],
                ["cancel", ref], ["history", ref]]
    for value in ("xx", "-1d", "0", "1.5h", "99999999999999999999999999d", "9" * 5000 + "s", HUGE, "1d1d1d", "é"):
        out += [["history", "--since", value], ["report", "--since", value], ["prune", "--older-than", value,
                                                                                "--dry-run"],
                ["run", "conditional", "--wait-lock", value, "-p", "shout=maybe"]]
    for params in (["-p", "="], ["-p", "x"], ["-p", "=v"], ["-p", "greeting"], ["-p", "nope=1"],
                   ["-p", "shout=" + HUGE], ["-p", "greeting=\x1b]0;title\x07", "-p", "shout=2"],
                   ["-p", "shout=[&a [x], *a]"], ["--params-file", "/dev/zero"], ["--params-file", str(ws)],
                   ["--params-file", missing], ["--params-file", str(ws / "runbooks" / "binary.yml")],
                   ["--params-file", str(ws / "runbooks" / "laughs.yml")], ["--forks", "-1", "-p", "shout=x"],
                   ["--forks", "99999999999999999999999"], ["-i", "../../etc", "-p", "shout=x"],
                   ["-i", HUGE], ["-i", "x" * 5000], ["-i", str(ws / "runbooks" / "fifo.yml" / "x")], ["--trigger", "bogus"], ["--junit", blocked, "-p", "shout=x"]):
        out.append(["run", "conditional", "--non-interactive", *params])
    out += [["log", "last", "--step", "999"], ["log", "last", "--step", HUGE], ["log", "last", "--host", "é\x1b"],
            ["report", "last", "--format", "bogus"], ["report", "last", "-o", blocked],
            ["report", "--since", "7d", "--format", "json"], ["report"], ["history", "-n", "0"],
            ["history", "--status", "bogus"], ["history", "-n", "99999999999999999999999"],
            ["docs", "-o", blocked], ["docs", "-o", "/proc/version"], ["prune", "--older-than", "1d", "--keep", "-1"],
            ["schedule", "list"], ["schedule", "list", "--json"], ["schedule", "status"], ["schedule", "install"],
            ["schedule", "bogus"], ["init", str(ws)], ["init", blocked], ["bogus-command"], ["--workspace"]]
    return [["-w", str(ws), *args] for args in out] + [["-w", missing, "list"], ["-w", blocked, "history"],
                                                        ["-w", HUGE, "list"], ["-w", "/dev/null", "show", "x"]]


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.err


def test_every_command_answers_hostile_arguments_and_files_with_a_documented_exit_code(
        hostile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failures = []
    for argv in cases(hostile, tmp_path):
        code, err = invoke(argv, capsys)
        if code not in DOCUMENTED or "internal error" in err or "Traceback" in err:
            shown = [a if len(a) < 60 else a[:20] + f"...({len(a)})" for a in argv[2:]]
            failures.append(f"{shown}: exit {code}: {err.strip()[-300:]}")
    assert not failures, "\n".join(failures)


# Commands that only read (run would start Ansible, init writes where it is told, install edits the crontab).
READERS = [["list"], ["show"], ["validate", "--no-syntax-check"], ["history"], ["log"], ["report"], ["cancel"],
           ["approve"], ["resume", "--non-interactive"], ["docs", "-o", "manual"], ["schedule", "list"],
           ["schedule", "status"], ["prune", "--dry-run", "--older-than"]]
WORDS = ODD[:-1] + ["conditional", "nightly-note", "laughs", "fifo", "zero", "a-folder", "last", "2026", "20",
                    "--json", "--tag", "--kind", "--since", "--status", "-n", "--step", "--host", "--format", "-o",
                    "--note", "--reject", "--keep", "7d", "0s", "99999999999999999999d", "md", "html", "junit",
                    "-1", "0", "1", "x" * 300, "--", "-h"]


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=st.sampled_from(READERS), words=st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)),
                                                        max_size=4))
def test_random_arguments_to_the_reading_commands_get_a_documented_answer(
        hostile: Path, capsys: pytest.CaptureFixture[str], command: list[str], words: list[str]) -> None:
    argv = ["-w", str(hostile), *command, *words]
    if "-o" in argv:
        argv[argv.index("-o") + 1:argv.index("-o") + 2] = [str(hostile.parent / "out" / "manual")]
    code, err = invoke(argv, capsys)
    assert code in DOCUMENTED and "internal error" not in err and "Traceback" not in err, (argv[2:], err[-500:])


def test_hostile_files_are_reported_and_the_good_runbooks_still_listed(hostile: Path) -> None:
    done = runbook("-w", str(hostile), "list")
    assert done.returncode == 3, done.stderr
    for name in ("a-folder", "binary", "zero", "dangling", "fifo", "laughs", "date"):
        assert f"runbooks/{name}.yml" in done.stderr, done.stderr
        assert f"\n{name} " not in done.stdout
    assert "conditional" in done.stdout and "nightly-note" in done.stdout
    assert "runbooks/fifo.yml: cannot read: not a regular file" in done.stderr
    prefix = runbook("-w", str(hostile), "log", "20")
    assert prefix.returncode == 2 and "matches several runs" in prefix.stderr


@pytest.mark.parametrize("config", [b"notify = 1\n", b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", b"inventory = 5\n",
                                    b"[notify]\ntimeout = 'x'\n", b"state_dir = 5\n", b"forks = true\n",
                                    b"\xff\xfe\x00", b"[[notify]]\n"])
def test_a_hostile_runbook_toml_is_an_invalid_configuration(tmp_path: Path, config: bytes,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbook.toml").write_bytes(config)
    for command in (["list"], ["history"], ["schedule", "list"]):
        code, err = invoke(["-w", str(tmp_path), *command], capsys)
        assert code == 3 and "runbook.toml" in err and "internal error" not in err, err
