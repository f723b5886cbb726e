"""Procedure control end to end: manual steps, approvals, resume, handlers, retries, batches, locks,
cancel, timeout and aborted runs, all with real ansible-playbook runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from conftest import runbook

MARKER = "RUNBOOK_RUN_MARKER"


def _records(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "runs").glob("*/run.json"))]


def _steps(record: dict) -> dict[str, dict]:
    return {s["name"]: s for s in record["steps"]}


def _marked(state: Path) -> list[int]:
    """Live processes carrying the marker of one of this test's runs (other runs on the machine aside)."""
    needles = {f"{MARKER}={p.name}".encode() for p in (state / "runs").iterdir()}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = set((entry / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
            if environ & needles:
                found.append(int(entry.name))
    return found


def _start(alien: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runner", "run", *args], cwd=alien,
                            env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _wait_for_sleep(seconds: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"sleep {seconds} never started")


def _sleep_alive(seconds: int) -> bool:
    return subprocess.run(["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True).returncode == 0


def test_manual_step_waits_then_resumes_with_a_note(backend: str, alien: Path, state_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "touched"
    done = runbook("run", "maintenance-window", "-p", f"log_file={log}", cwd=alien)
    assert done.returncode == 5, done.stderr
    assert f"runbook resume {_records(state_dir)[0]['id']} --confirm" in done.stderr
    record = _records(state_dir)[0]
    assert record["status"] == "waiting"
    assert _steps(record)["announce"]["status"] == "waiting" and _steps(record)["apply"]["status"] == "pending"
    assert not log.exists()  # nothing after the manual step ran

    resumed = runbook("resume", record["id"], "--confirm", "--note", "posted in #ops", cwd=alien,
                      env={"RUNBOOK_USER": "carol"})
    assert resumed.returncode == 5  # now at the approval
    record = _records(state_dir)[0]
    signoffs = _steps(record)["announce"]["signoffs"]
    assert [(s["who"], s["item"], s["note"]) for s in signoffs] == [
        ("carol", "Window announced", "posted in #ops"), ("carol", "On-call engineer informed", "posted in #ops")]
    assert _steps(record)["change-approval"]["status"] == "waiting"
    assert len(_records(state_dir)) == 1  # the same run, not a new one


def test_approval_refused_for_operator_accepted_for_another(backend: str, alien: Path, state_dir: Path, tmp_path: Path) -> None:
    env = {"RUNBOOK_USER": "alice"}
    log = tmp_path / "touched"
    assert runbook("run", "maintenance-window", "-p", f"log_file={log}", cwd=alien, env=env).returncode == 5
    assert runbook("resume", "last", "--confirm", cwd=alien, env=env).returncode == 5
    own = runbook("approve", "last", cwd=alien, env=env)
    assert own.returncode == 1 and "cannot approve it" in own.stderr
    early = runbook("resume", "last", cwd=alien, env=env)
    assert early.returncode == 5  # still not approved
    assert runbook("approve", "last", "--note", "lgtm", cwd=alien, env={"RUNBOOK_USER": "bob"}).returncode == 0
    finished = runbook("resume", "last", cwd=alien, env=env)
    assert finished.returncode == 0, finished.stderr
    record = _records(state_dir)[0]
    assert record["status"] == "succeeded" and record["operator"] == "alice"
    approval = _steps(record)["change-approval"]
    assert [(s["who"], s["decision"], s["note"]) for s in approval["signoffs"]] == [("bob", "approved", "lgtm")]
    assert sorted(log.read_text().split()) == ["web1", "web2"]
    assert _steps(record)["after"]["status"] == "succeeded"


def test_rejection_ends_the_run_failed_and_runs_the_handler(backend: str, alien: Path, state_dir: Path, tmp_path: Path) -> None:
    env = {"RUNBOOK_USER": "alice"}
    runbook("run", "maintenance-window", "-p", f"log_file={tmp_path / 'log'}", cwd=alien, env=env)
    runbook("resume", "last", "--confirm", cwd=alien, env=env)
    rejected = runbook("approve", "last", "--reject", "--note", "not today", cwd=alien, env={"RUNBOOK_USER": "bob"})
    assert rejected.returncode == 0, rejected.stderr
    record = _records(state_dir)[0]
    assert record["status"] == "failed" and record["exit_code"] == 1
    steps = _steps(record)
    assert steps["change-approval"]["status"] == "failed" and "rejected by bob" in steps["change-approval"]["message"]
    assert steps["apply"]["status"] == "pending" and steps["rollback"]["status"] == "succeeded"
    assert not (tmp_path / "log").exists()


def test_rollback_handler_runs_and_later_steps_do_not(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    done = runbook("run", "patch-with-rollback", "-p", f"log_file={tmp_path / 'log'}", "--json", cwd=alien)
    assert done.returncode == 1
    record = json.loads(done.stdout)
    steps = _steps(record)
    assert steps["apply"]["status"] == "failed" and steps["after"]["status"] == "pending"
    assert steps["rollback"]["status"] == "succeeded" and steps["rollback"]["handler"] is True
    log = runbook("log", "last", "--step", "rollback", cwd=alien)
    assert "rollback after apply failed on web2" in log.stdout


def test_retries_rerun_only_the_failed_hosts(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    done = runbook("run", "flaky", "-p", f"log_file={log}", cwd=alien)
    assert done.returncode == 0, done.stderr
    assert sorted(log.read_text().split()) == ["web1", "web2", "web2"]  # web1 once, web2 twice
    step = _records(state_dir)[0]["steps"][0]
    assert step["attempts"] == 2 and step["status"] == "succeeded"
    assert step["hosts"]["web2"]["failed"] == 0


def test_rolling_batches_stop_after_a_failed_batch(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    done = runbook("run", "rolling", "-p", f"log_file={log}", cwd=alien)
    assert done.returncode == 1
    assert sorted(log.read_text().split()) == ["b1", "b2"]  # the second batch (b3, b4) untouched
    record = _records(state_dir)[0]
    assert record["steps"][0]["hosts"]["b1"]["failed"] == 1
    assert "b3" not in record["steps"][0]["hosts"] and "b4" not in record["steps"][0]["hosts"]


def test_conflicting_run_exits_6_naming_the_holder(backend: str, alien: Path, state_dir: Path) -> None:
    holder = _start(alien, "sleeper", "-p", "seconds=71")
    try:
        _wait_for_sleep(71)
        run_id = _records(state_dir)[0]["id"]
        started = time.monotonic()
        blocked = runbook("run", "other-locker", cwd=alien)
        assert blocked.returncode == 6 and run_id in blocked.stderr
        operator, host = _records(state_dir)[0]["operator"], _records(state_dir)[0]["hostname"]
        assert f"(operator {operator}, host {host})" in blocked.stderr  # as README promises, on either store
        waited = runbook("run", "other-locker", "--wait-lock", "2s", cwd=alien)
        assert waited.returncode == 6 and "after waiting 2s" in waited.stderr
        assert time.monotonic() - started >= 2
        assert len(_records(state_dir)) == 1  # refused runs leave no record
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=30)


def test_wait_lock_gets_the_lock_when_the_holder_ends(backend: str, alien: Path, state_dir: Path) -> None:
    holder = _start(alien, "sleeper", "-p", "seconds=3")
    _wait_for_sleep(3)
    done = runbook("run", "other-locker", "--wait-lock", "2m", cwd=alien)
    holder.communicate(timeout=60)
    assert holder.returncode == 0
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "cancel"])
def test_cancel_stops_every_process_within_10s(alien: Path, state_dir: Path, how: str) -> None:
    proc = _start(alien, "sleeper", "-p", "seconds=81")
    try:
        _wait_for_sleep(81)
        assert _marked(state_dir), "the run's processes should carry the marker"
        sent = time.monotonic()
        if how == "cancel":
            assert runbook("cancel", "last", cwd=alien).returncode == 0
        else:
            proc.send_signal(getattr(signal, how))
        proc.communicate(timeout=30)
        while (_marked(state_dir) or _sleep_alive(81)) and time.monotonic() - sent < 10:
            time.sleep(0.1)
        assert time.monotonic() - sent < 10
        assert not _marked(state_dir) and not _sleep_alive(81)
        assert proc.returncode == 130
        record = _records(state_dir)[0]
        assert record["status"] == "canceled" and record["exit_code"] == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["pkill", "-f", "^sleep 81$"])


def test_run_timeout_exits_124_and_leaves_nothing(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "whole-timeout", cwd=alien)
    assert done.returncode == 124, done.stderr
    record = _records(state_dir)[0]
    assert record["status"] == "timed_out"
    assert _steps(record)["first"]["status"] == "succeeded" and _steps(record)["sleep"]["status"] == "timed_out"
    assert not _sleep_alive(62) and not _marked(state_dir)


def test_sigkilled_run_is_aborted_its_processes_stopped_and_lock_free(backend: str, alien: Path, state_dir: Path) -> None:
    proc = _start(alien, "sleeper", "-p", "seconds=91")
    try:
        _wait_for_sleep(91)
        proc.kill()
        proc.communicate(timeout=30)
        assert _records(state_dir)[0]["status"] == "running"  # nobody has looked yet
        history = runbook("history", "--json", cwd=alien)
        row = json.loads(history.stdout)[0]
        assert row["status"] == "aborted"
        assert not _sleep_alive(91) and not _marked(state_dir)
        assert runbook("run", "other-locker", cwd=alien).returncode == 0  # the lock is free
    finally:
        subprocess.run(["pkill", "-f", "^sleep 91$"])


def test_waiting_run_holds_its_lock_until_canceled(backend: str, alien: Path, state_dir: Path, tmp_path: Path) -> None:
    args = ("maintenance-window", "-p", f"log_file={tmp_path / 'log'}")
    assert runbook("run", *args, cwd=alien).returncode == 5
    waiting = _records(state_dir)[0]["id"]
    second = runbook("run", *args, cwd=alien)
    assert second.returncode == 6 and waiting in second.stderr
    assert runbook("cancel", waiting, cwd=alien).returncode == 0
    assert _records(state_dir)[0]["status"] == "canceled"
    assert runbook("run", *args, cwd=alien).returncode == 5


def _spawn(alien: Path, *args: str, env: dict[str, str]) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "runner", *args], cwd=str(alien),
                         env=dict(os.environ, **env), encoding="utf-8", timeout=60)


def test_interactive_checklist_on_a_terminal(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    child = _spawn(alien, "run", "maintenance-window", "--yes", "-p", f"log_file={tmp_path / 'log'}",
                   env={"RUNBOOK_USER": "dave"})
    child.expect(r"Window announced: \(c\)onfirm, \(n\)ote, \(a\)bort\? ")
    child.sendline("c")
    child.expect(r"On-call engineer informed: \(c\)onfirm")
    child.sendline("n")
    child.expect("note: ")
    child.sendline("paged Erin")
    child.expect(r"On-call engineer informed: \(c\)onfirm")
    child.sendline("c")
    child.expect("waits at step 3/5 'change-approval' for approval")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5
    signoffs = _steps(_records(state_dir)[0])["announce"]["signoffs"]
    assert [(s["who"], s["item"], s["note"]) for s in signoffs] == [
        ("dave", "Window announced", ""), ("dave", "On-call engineer informed", "paged Erin")]


def test_interactive_abort_fails_the_run_and_rolls_back(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    child = _spawn(alien, "run", "maintenance-window", "-p", f"log_file={tmp_path / 'log'}", env={})
    child.expect(r"Run maintenance maintenance-window .*\? \[y/N\] ")  # maintenance asks first
    child.sendline("y")
    child.expect(r"Window announced: \(c\)onfirm")
    child.sendline("a")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    steps = _steps(_records(state_dir)[0])
    assert steps["announce"]["status"] == "failed" and "aborted by" in steps["announce"]["message"]
    assert steps["rollback"]["status"] == "succeeded" and steps["apply"]["status"] == "pending"


def test_interactive_resume_walks_the_checklist(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    assert runbook("run", "maintenance-window", "-p", f"log_file={tmp_path / 'log'}", cwd=alien).returncode == 5
    child = _spawn(alien, "resume", "last", env={"RUNBOOK_USER": "erin"})
    for _ in range(2):
        child.expect(r"\(c\)onfirm, \(n\)ote, \(a\)bort\? ")
        child.sendline("c")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5  # at the approval now
    signoffs = _steps(_records(state_dir)[0])["announce"]["signoffs"]
    assert {s["who"] for s in signoffs} == {"erin"} and len(signoffs) == 2


def test_live_progress_rewrites_a_status_line_on_a_terminal(alien: Path, state_dir: Path) -> None:
    child = _spawn(alien, "run", "conditional", env={})
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "\r\x1b[K[1/2 quiet] Record a message" in child.before


def test_log_follow_streams_until_the_run_ends(backend: str, alien: Path, state_dir: Path) -> None:
    proc = _start(alien, "sleeper", "-p", "seconds=4")
    try:
        _wait_for_sleep(4)
        follow = runbook("log", "last", "--follow", cwd=alien, timeout=60)
        proc.communicate(timeout=60)
        assert follow.returncode == 0
        assert "TASK [Sleep asynchronously]" in follow.stdout and "PLAY RECAP" in follow.stdout
        assert "succeeded (exit 0)" in follow.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
