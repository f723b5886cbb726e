"""Rehearsals stay rehearsals (issue #21): a `--check` run shows what a real run would ask at a manual or
approval step and goes on, holds no lock (a real run starts while it runs), and `resume last` / `approve last`
never pick one, naming any that an older version left waiting."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    from tests.conftest import runbook
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from conftest import runbook  # type: ignore[no-redef, unused-ignore]

HOLD = """\
apiVersion: runbook/v1
name: hold
title: Waits for a file, in check mode only
version: 1.0.0
kind: operation
targets: db
lock: shared-lock
parameters:
  go_file: {type: string, required: true}
steps:
  - name: wait
    playbook: hold.yml
"""
HOLD_PLAYBOOK = """\
- name: Hold a rehearsal until the test lets it go
  hosts: all
  gather_facts: false
  tasks:
    - name: Wait for the go file
      ansible.builtin.wait_for: {path: "{{ go_file }}", timeout: 120}
      check_mode: false
      when: ansible_check_mode
"""


def _record(state_dir: Path, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((state_dir / "runs" / run_id / "run.json").read_text())
    return result


def _history(ws: Path) -> list[dict[str, Any]]:
    done = runbook("history", "--json", cwd=ws)
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def test_a_rehearsal_goes_past_manual_and_approval_steps_and_says_so(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "maintenance-window", "--check", "-p", "log_file=/tmp/x", cwd=alien)

    assert done.returncode == 0, done.stderr  # was 5: waiting at the checklist
    assert "A real run stops here and waits until someone does the work and confirms: " \
           "Window announced; On-call engineer informed." in done.stderr
    assert "a real run waits here for 1 approval: Apply the change to the web tier" in done.stderr
    run = _history(alien)[0]
    record = _record(state_dir, run["id"])
    assert (run["status"], record["check"]) == ("succeeded", True)
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["announce"]["status"] == steps["change-approval"]["status"] == "skipped"
    assert steps["announce"]["message"].startswith("rehearsed (check mode): a real run waits here until someone")
    assert steps["announce"]["signoffs"] == [] and steps["change-approval"]["signoffs"] == []
    assert steps["apply"]["status"] == "succeeded"  # and it went on


def test_a_real_run_starts_while_a_rehearsal_of_the_same_lock_runs(alien: Path, tmp_path: Path) -> None:
    (alien / "runbooks" / "hold.yml").write_text(HOLD)
    (alien / "playbooks" / "hold.yml").write_text(HOLD_PLAYBOOK)
    go = tmp_path / "go"
    rehearsal = subprocess.Popen([sys.executable, "-m", "runner", "run", "hold", "--check", "-p", f"go_file={go}"],
                                 cwd=alien, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_running(alien, "hold")
        real = runbook("run", "hold", "-p", f"go_file={go}", cwd=alien)
        sleeper = runbook("run", "sleeper", "-p", "seconds=0", cwd=alien)  # another runbook on the same lock
        assert real.returncode == 0, real.stderr  # was 6: the rehearsal held the lock
        assert sleeper.returncode == 0, sleeper.stderr
    finally:
        go.touch()
        _, err = rehearsal.communicate(timeout=120)
    assert rehearsal.returncode == 0, err


def _wait_until_running(ws: Path, name: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = [r for r in _history(ws) if r["runbook"] == name]
        if runs and runs[0]["status"] == "running":
            return
        time.sleep(0.3)
    raise AssertionError(f"{name} never started")


def test_resume_last_and_approve_last_pick_the_real_run_and_name_a_waiting_rehearsal(alien: Path,
                                                                                    state_dir: Path) -> None:
    args = ["run", "maintenance-window", "-p", "log_file=/tmp/x", "--non-interactive"]
    legacy = runbook(*args, cwd=alien)
    assert legacy.returncode == 5, legacy.stderr
    legacy_id = _history(alien)[0]["id"]
    _make_rehearsal(state_dir, legacy_id)  # as an older version left a --check run: waiting at the checklist
    real = runbook(*args, cwd=alien)
    assert real.returncode == 5, real.stderr  # a waiting rehearsal holds no lock
    assert runbook(*args[:2], "--check", *args[2:], cwd=alien).returncode == 0
    real_id = _history(alien)[1]["id"]
    assert real_id != legacy_id

    resumed = runbook("resume", "last", "--confirm", cwd=alien)
    assert resumed.returncode == 5, resumed.stderr  # the checklist done, now at the approval
    assert f"resuming run {real_id}" in resumed.stderr
    approved = runbook("approve", "last", cwd=alien, env={"RUNBOOK_USER": "bob"})
    assert approved.returncode == 0 and f"run {real_id}: approved by bob" in approved.stderr

    assert runbook("cancel", real_id, cwd=alien).returncode == 0
    alone = runbook("resume", "last", cwd=alien)
    assert alone.returncode == 2
    assert "no real run is waiting, only rehearsals (--check)" in alone.stderr
    assert legacy_id in alone.stderr and "REHEARSAL (--check)" in alone.stderr


def _make_rehearsal(state_dir: Path, run_id: str) -> None:
    path = state_dir / "runs" / run_id / "run.json"
    record = json.loads(path.read_text())
    record["check"] = True
    path.write_text(json.dumps(record))
    with sqlite3.connect(state_dir / "history.db") as db:
        db.execute("UPDATE runs SET check_mode = 1, record = ? WHERE id = ?", (json.dumps(record), run_id))
