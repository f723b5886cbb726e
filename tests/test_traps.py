"""Procedural traps closed: a maintenance runbook needs a chosen inventory, `max_hosts` refuses a run
before anything starts, a terminal lost at a checklist leaves the run waiting, `resume last` and
`approve last` refuse to guess between waiting runs, and an unknown runbook name gets a suggestion."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pexpect
import ptyprocess

from conftest import copy_workspace, runbook

ONE_HOST = """apiVersion: runbook/v1
name: one-host
title: Work on one web host at a time
version: 1.0.0
kind: operation
owner: lab-team
targets: web
max_hosts: {max_hosts}
steps:
  - name: ping
    playbook: ping.yml
"""

GATE = """apiVersion: runbook/v1
name: gate
title: Ping, then wait for a person
version: 1.0.0
kind: operation
owner: lab-team
targets: web
concurrency: parallel
steps:
  - name: ping
    playbook: ping.yml
  - name: look
    manual: Look at the host.
    checklist: [Looked]
"""


def _records(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "runs").glob("*/run.json"))]


def _steps(record: dict) -> dict[str, dict]:
    return {s["name"]: s for s in record["steps"]}


# -- maintenance needs an inventory ------------------------------------------------------------------------
def test_maintenance_without_an_inventory_is_refused_and_nothing_is_recorded(
        alien: Path, state_dir: Path, tmp_path: Path) -> None:
    (alien / "runbook.toml").unlink()  # no workspace default: only the built-in local inventory is left
    done = runbook("run", "fail-on-host", "--json", cwd=alien)
    assert done.returncode == 3 and done.stdout == ""
    assert "fail-on-host is a maintenance runbook: it never runs on the built-in local inventory" in done.stderr
    assert "-i INVENTORY" in done.stderr and "`inventory:` in the runbook" in done.stderr
    assert 'inventory = "NAME"' in done.stderr and "runbook.toml" in done.stderr
    assert not _records(state_dir) and json.loads(runbook("history", "--json", cwd=alien).stdout) == []
    # Each way of choosing works: -i, then runbook.toml's default.
    assert runbook("run", "fail-on-host", "-i", "lab", cwd=alien).returncode == 1
    (alien / "runbook.toml").write_text('inventory = "lab"\n')
    assert runbook("run", "fail-on-host", cwd=alien).returncode == 1
    assert [r["inventory"].endswith("lab.yml") for r in _records(state_dir) if r["runbook"] == "fail-on-host"] == [True, True]


def test_shipped_maintenance_runbook_without_inventory(tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("run", "service-restart", "-p", "service=nginx", "--yes", cwd=ws)
    assert done.returncode == 3 and "service-restart is a maintenance runbook" in done.stderr
    assert not (state_dir / "runs").exists() or not any((state_dir / "runs").iterdir())


# -- max_hosts ----------------------------------------------------------------------------------------------
def test_max_hosts_refuses_before_anything_runs(alien: Path, state_dir: Path) -> None:
    (alien / "runbooks" / "one-host.yml").write_text(ONE_HOST.format(max_hosts=1))
    done = runbook("run", "one-host", cwd=alien)
    assert done.returncode == 3
    assert done.stderr.count("one-host works on at most 1 host (max_hosts: 1); this run targets 2 (web1, web2): "
                             "narrow it with -l HOST; nothing was run") == 1
    assert not _records(state_dir)
    ok = runbook("run", "one-host", "--json", "-l", "web2", cwd=alien)
    assert ok.returncode == 0, ok.stderr
    assert list(json.loads(ok.stdout)["steps"][0]["hosts"]) == ["web2"]
    # Patterns are counted as Ansible reads them: targets (web) narrowed by the limit.
    assert runbook("run", "one-host", "-l", "web*:db1", cwd=alien).returncode == 3
    (alien / "runbooks" / "one-host.yml").write_text(ONE_HOST.format(max_hosts=0))
    invalid = runbook("validate", "--no-syntax-check", "one-host", cwd=alien)
    assert invalid.returncode == 3 and "runbooks/one-host.yml:8: max_hosts:" in invalid.stderr


# -- a terminal lost at a checklist -------------------------------------------------------------------------
def _read_until(proc: ptyprocess.PtyProcessUnicode, text: str, timeout: float = 60) -> str:
    seen, deadline = "", time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"never saw {text!r} in {seen!r}"
        seen += proc.read(4096)
    return seen


def test_terminal_closed_at_a_checklist_leaves_the_run_waiting(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    proc = ptyprocess.PtyProcessUnicode.spawn(
        [sys.executable, "-m", "runner", "run", "maintenance-window", "--yes", "-p", f"log_file={tmp_path / 'log'}"],
        cwd=str(alien), env=dict(os.environ, RUNBOOK_USER="dave"))
    try:
        _read_until(proc, "Window announced: (c)onfirm, (n)ote, (a)bort? ")
        proc.write("c\r")
        _read_until(proc, "On-call engineer informed: (c)onfirm, (n)ote, (a)bort? ")
        proc.fileobj.close()  # the terminal goes away (a closed ssh session): the kernel hangs up the pty
        proc.closed = True
        proc.wait()
    finally:
        if proc.isalive():
            proc.kill(9)
    assert proc.exitstatus == 5
    record = _records(state_dir)[0]
    assert record["status"] == "waiting" and record["exit_code"] == 5
    announce = _steps(record)["announce"]
    assert announce["status"] == "waiting" and "terminal of dave was lost" in announce["message"]
    assert [(s["who"], s["item"], s["decision"]) for s in announce["signoffs"]] == [("dave", "Window announced", "confirmed")]
    assert "rollback" not in _steps(record)  # not aborted: no on_failure handler ran
    # It resumes: the item confirmed before is kept, the other is confirmed now.
    done = runbook("resume", "last", "--confirm", "--note", "back", cwd=alien, env={"RUNBOOK_USER": "erin"})
    assert done.returncode == 5, done.stderr  # now at the approval
    announce = _steps(_records(state_dir)[0])["announce"]
    assert announce["status"] == "succeeded" and announce["message"] == ""
    assert [(s["who"], s["item"]) for s in announce["signoffs"]] == [
        ("dave", "Window announced"), ("erin", "On-call engineer informed")]


def test_end_of_input_at_a_checklist_waits_and_only_a_aborts(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    child = pexpect.spawn(sys.executable, ["-m", "runner", "run", "maintenance-window", "--yes", "-p",
                                           f"log_file={tmp_path / 'log'}"], cwd=str(alien), encoding="utf-8", timeout=60)
    child.expect(r"Window announced: \(c\)onfirm, \(n\)ote, \(a\)bort\? ")
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF)  # the run lets go of the terminal at once, then records itself waiting
    assert child.wait() == 5  # (close() would also send SIGINT and SIGKILL to a process still finishing)
    assert _records(state_dir)[0]["status"] == "waiting"
    child = pexpect.spawn(sys.executable, ["-m", "runner", "resume", "last"], cwd=str(alien), encoding="utf-8", timeout=60)
    child.expect(r"Window announced: \(c\)onfirm, \(n\)ote, \(a\)bort\? ")
    child.sendline("a")
    child.expect(pexpect.EOF)
    assert child.wait() == 1
    assert _records(state_dir)[0]["status"] == "failed"


# -- `resume last` with several waiting runs ---------------------------------------------------------------
def test_resume_last_refuses_to_guess_between_waiting_runs(alien: Path, state_dir: Path) -> None:
    (alien / "runbooks" / "gate.yml").write_text(GATE)
    assert runbook("run", "gate", "-l", "web1", cwd=alien).returncode == 5
    assert runbook("run", "gate", "-l", "web2", cwd=alien).returncode == 5
    first, second = (r["id"] for r in _records(state_dir))
    for command in (("resume", "last", "--confirm"), ("approve", "last")):
        done = runbook(*command, cwd=alien)
        assert done.returncode == 2, command
        assert "2 runs are waiting; `last` could mean any of them: give the run id" in done.stderr
        assert f"{first}  gate  waits at step 2 'look' (manual)  hosts: web1" in done.stderr
        assert f"{second}  gate  waits at step 2 'look' (manual)  hosts: web2" in done.stderr
    assert all(r["status"] == "waiting" for r in _records(state_dir))
    assert runbook("resume", first, "--confirm", "-q", cwd=alien).returncode == 0
    # One left waiting: `last` is that one, even though it is not the newest run any more.
    assert runbook("run", "conditional", cwd=alien).returncode == 0
    done = runbook("resume", "last", "--confirm", "-q", cwd=alien)
    assert done.returncode == 0 and "resuming" not in done.stderr
    assert {r["id"]: r["status"] for r in _records(state_dir)}[second] == "succeeded"


# -- did you mean ------------------------------------------------------------------------------------------
def test_unknown_runbook_name_suggests_the_closest(tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    for command in (("run", "helth-check"), ("show", "health-chek"), ("validate", "--no-syntax-check", "healthcheck")):
        done = runbook(*command, cwd=ws)
        assert done.returncode == 2, command
        assert "did you mean health-check?" in done.stderr, done.stderr
    far = runbook("run", "zzz", cwd=ws)
    assert far.returncode == 2 and "known: account-audit," in far.stderr


# -- a record's inventory is not trusted as a path -------------------------------------------------------
def _plant(state: Path, **fields: str) -> None:
    [path] = sorted((state / "runs").glob("*/run.json"))
    path.write_text(json.dumps(json.loads(path.read_text()) | fields))


def test_resume_refuses_an_inventory_a_record_names_outside_inventories(alien: Path, state_dir: Path,
                                                                       tmp_path: Path) -> None:
    """A row of the shared database names an executable inventory elsewhere on the resuming machine: it is
    never run; the operator names the inventory again with -i, and only the one the run started with."""
    (alien / "runbooks" / "gate.yml").write_text(GATE + "  - name: again\n    playbook: ping.yml\n")
    assert runbook("run", "gate", "-l", "web1", cwd=alien).returncode == 5
    started_on = _records(state_dir)[0]["inventory"]
    assert started_on == str(alien / "inventories" / "lab.yml")
    evil, pwned = tmp_path / "evil.sh", tmp_path / "pwned"
    evil.write_text(f"#!/bin/sh\ntouch {pwned}\necho '{{}}'\n")
    evil.chmod(0o755)
    hostile = {"inventory": str(evil)}
    moved_out = {"workspace": "/elsewhere/ws", "inventory": f"/elsewhere/ws/inventories/../../..{evil}"}
    for planted in (hostile, moved_out):
        _plant(state_dir, **planted)
        refused = runbook("resume", "last", "--confirm", cwd=alien)
        assert refused.returncode == 3, refused.stderr
        assert "is not in inventories/ (a record may come from the shared database" in refused.stderr
        assert "give it again: runbook resume" in refused.stderr and "-i PATH; nothing was run" in refused.stderr
    other = runbook("resume", "last", "--confirm", "-i", "dead", cwd=alien)
    assert other.returncode == 3 and "started on another inventory" in other.stderr
    assert not pwned.exists() and _records(state_dir)[0]["status"] == "waiting"
    # Resumed from another machine's clone: the same file under this workspace's inventories/ is used.
    _plant(state_dir, workspace="/elsewhere/ws", inventory="/elsewhere/ws/inventories/lab.yml")
    done = runbook("resume", "last", "--confirm", cwd=alien)
    assert done.returncode == 0, done.stderr
    assert not pwned.exists() and _records(state_dir)[0]["status"] == "succeeded"
