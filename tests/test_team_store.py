"""The team's record on a real PostgreSQL: two workspace copies with their own state dirs stand for two
machines sharing one database (RUNBOOK_DATABASE_URL)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, runbook

HOLDER = """apiVersion: runbook/v1
name: holder
title: Holds the fleet lock while it sleeps
version: 1.0.0
kind: operation
targets: db
concurrency: exclusive
lock: fleet
parameters:
  seconds: {type: integer, default: 1}
steps:
  - name: sleep
    playbook: sleep.yml
"""

TWO_STEPS = """apiVersion: runbook/v1
name: two-steps
title: A pause, then a note
version: 1.0.0
kind: operation
targets: db
concurrency: parallel
parameters:
  seconds: {type: integer, default: 1}
steps:
  - name: pause
    playbook: sleep.yml
  - name: note
    playbook: note.yml
    vars: {message: after the pause}
"""


class Machine:
    """One workspace copy with its own state dir: one operator's machine."""

    def __init__(self, root: Path, state: Path, user: str) -> None:
        self.root, self.state, self.user = root, state, user

    def env(self, **extra: str) -> dict[str, str]:
        return {"RUNBOOK_STATE_DIR": str(self.state), "RUNBOOK_USER": self.user, **extra}

    def __call__(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return runbook(*args, cwd=self.root, env=self.env(**extra))

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=self.root,
                                env=dict(os.environ, **self.env()), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def history(self, *args: str) -> list[dict[str, Any]]:
        done = self("history", "--json", "-n", "100", *args)
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout))


def _machine(tmp_path: Path, name: str, user: str) -> Machine:
    root = copy_workspace("alien-workspace", tmp_path / name)
    (root / "runbooks" / "holder.yml").write_text(HOLDER)
    (root / "runbooks" / "two-steps.yml").write_text(TWO_STEPS)
    return Machine(root, tmp_path / f"{name}-state", user)


@pytest.fixture
def machines(tmp_path: Path, team_db: str) -> tuple[Machine, Machine]:
    return _machine(tmp_path, "laptop", "alice"), _machine(tmp_path, "bastion", "bob")


def _wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_a_run_from_one_machine_shows_in_the_others_history_log_and_report(machines: tuple[Machine, Machine]) -> None:
    alice, bob = machines
    done = alice("run", "conditional")
    assert done.returncode == 0, done.stderr
    rows = bob.history()
    assert [(r["runbook"], r["status"], r["operator"]) for r in rows] == [("conditional", "succeeded", "alice")]
    log = bob("log", rows[0]["id"])
    assert log.returncode == 0, log.stderr
    assert "TASK [" in log.stdout and "PLAY RECAP" in log.stdout
    report = bob("report", "last", "--format", "json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["id"] == rows[0]["id"]
    assert not (alice.state / "history.db").exists()  # the team's database, not a local one


def test_an_exclusive_run_on_one_machine_locks_the_other_and_a_kill_frees_it(machines: tuple[Machine, Machine]) -> None:
    alice, bob = machines
    holder = alice.start("run", "holder", "-p", "seconds=120")
    try:
        _wait_for(lambda: [r["status"] for r in bob.history("holder")] == ["running"])
        held_id = bob.history("holder")[0]["id"]
        blocked = bob("run", "holder")
        assert blocked.returncode == 6, blocked.stderr
        assert held_id in blocked.stderr and "alice" in blocked.stderr and "host " in blocked.stderr
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        rows = {r["id"]: r["status"] for r in bob.history("holder")}
        assert rows[held_id] == "aborted"
        freed = bob("run", "holder")
        assert freed.returncode == 0, freed.stderr
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)


def test_wait_lock_waits_for_the_other_machine(machines: tuple[Machine, Machine]) -> None:
    alice, bob = machines
    holder = alice.start("run", "holder", "-p", "seconds=4")
    _wait_for(lambda: [r["status"] for r in bob.history("holder")] == ["running"])
    waited = bob("run", "holder", "--wait-lock", "2m")
    assert holder.wait(timeout=120) == 0
    assert waited.returncode == 0, waited.stderr


def test_alice_waits_for_approval_and_bob_approves_and_resumes_from_his_copy(
        machines: tuple[Machine, Machine], tmp_path: Path) -> None:
    alice, bob = machines
    log = tmp_path / "applied"
    assert alice("run", "maintenance-window", "-p", f"log_file={log}").returncode == 5
    assert alice("resume", "last", "--confirm").returncode == 5  # now at the approval
    assert bob("approve", "last", "--note", "lgtm").returncode == 0
    resumed = bob("resume", "last")
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(bob("report", "last", "--format", "json").stdout)
    assert record["status"] == "succeeded" and record["operator"] == "alice"
    approval = next(s for s in record["steps"] if s["name"] == "change-approval")
    assert [(s["who"], s["decision"]) for s in approval["signoffs"]] == [("bob", "approved")]
    assert [r["who"] for r in record["resumes"]] == ["alice", "bob"]
    assert all(r["host"] for r in record["resumes"])
    assert log.exists()
    assert alice.history()[0]["status"] == "succeeded"  # alice sees what bob finished


def test_resume_from_a_copy_whose_runbook_differs_is_refused(machines: tuple[Machine, Machine], tmp_path: Path) -> None:
    alice, bob = machines
    assert alice("run", "maintenance-window", "-p", f"log_file={tmp_path / 'x'}").returncode == 5
    path = bob.root / "runbooks" / "maintenance-window.yml"
    path.write_text(path.read_text().replace("version: 1.0.0", "version: 1.0.1"))
    refused = bob("resume", "last", "--confirm")
    assert refused.returncode == 3 and "changed since run" in refused.stderr
    assert alice("resume", "last", "--confirm").returncode == 5  # alice's own copy is the same file
    not_approved = bob("approve", "last")
    assert not_approved.returncode == 3 and "differs from the file" in not_approved.stderr
    assert alice.history()[0]["status"] == "waiting"


def test_sixteen_concurrent_runs_from_two_machines_make_sixteen_rows(machines: tuple[Machine, Machine]) -> None:
    alice, bob = machines
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: (alice if i % 2 else bob)("run", "two-steps", "-p", "seconds=0"),
                                range(16)))
    assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results if r.returncode]
    assert all("Traceback" not in r.stderr for r in results)
    rows = alice.history("two-steps")
    assert len(rows) == 16 and len({r["id"] for r in rows}) == 16
    assert {r["status"] for r in rows} == {"succeeded"}
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert alice("db", "verify").returncode == 0


def test_the_database_stopped_and_restarted_mid_run_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pg

    server = pg.start_server()
    try:
        monkeypatch.setenv("RUNBOOK_DATABASE_URL", server.new_database("outage"))
        alice, bob = _machine(tmp_path, "laptop", "alice"), _machine(tmp_path, "bastion", "bob")
        # 1. Away for a moment in the middle of a run: the run goes on and uploads itself when it is back.
        run = alice.start("run", "two-steps", "-p", "seconds=8")
        _wait_for(lambda: [r["status"] for r in bob.history()] == ["running"])
        server.stop()
        time.sleep(2)
        server.start()
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
        rows = bob.history()
        assert [(r["status"], r["runbook"]) for r in rows] == [("succeeded", "two-steps")]
        assert "after the pause" in bob("log", "last", "--step", "note").stdout
        # 2. Away until the run ends: kept locally, uploaded by `runbook db sync`, never twice.
        run = alice.start("run", "two-steps", "-p", "seconds=5")
        _wait_for(lambda: len(bob.history()) == 2)
        server.stop()
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
        assert "went away" in err and "Traceback" not in err
        offline = alice("log", "last")  # the local run folder is the fallback
        assert offline.returncode == 0 and "after the pause" in offline.stdout, offline.stderr
        server.start()
        synced = alice("db", "sync")
        assert synced.returncode == 0, synced.stderr
        assert alice("db", "sync").returncode == 0  # again: nothing twice
        rows = bob.history()
        assert [r["status"] for r in rows] == ["succeeded", "succeeded"]
        steps = json.loads(bob("report", rows[0]["id"], "--format", "json").stdout)["steps"]
        assert [s["status"] for s in steps] == ["succeeded", "succeeded"]
        assert bob("db", "verify").returncode == 0
    finally:
        server.remove()


def test_the_database_down_at_start_is_one_clear_line_and_nothing_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pg

    port = pg.free_port()
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", f"postgresql://ops:hunter2secret@127.0.0.1:{port}/runbook")
    alice = _machine(tmp_path, "laptop", "alice")
    for args in (("run", "holder"), ("run", "two-steps"), ("history",)):
        done = alice(*args)
        assert done.returncode == 7, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], done.stderr
        assert "hunter2secret" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    runs = alice.state / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []


def test_db_import_copies_a_local_history_idempotently(tmp_path: Path, team_db: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    alice = _machine(tmp_path, "laptop", "alice")
    local = alice.env(RUNBOOK_DATABASE_URL="")
    for name in ("conditional", "fail-on-host", "conditional"):
        runbook("run", name, cwd=alice.root, env=local)
    local_rows = json.loads(runbook("history", "--json", cwd=alice.root, env=local).stdout)
    assert len(local_rows) == 3
    bob = _machine(tmp_path, "bastion", "bob")
    imported = alice("db", "import", str(alice.state))
    assert imported.returncode == 0 and "imported 3 run(s)" in imported.stderr, imported.stderr
    again = alice("db", "import", str(alice.state))
    assert "imported 0 run(s)" in again.stderr and "3 were already there" in again.stderr
    rows = bob.history()
    assert [(r["id"], r["status"]) for r in rows] == [(r["id"], r["status"]) for r in local_rows]
    assert "PLAY RECAP" in bob("log", rows[-1]["id"]).stdout
    assert bob("db", "verify").returncode == 0


def test_no_secret_reaches_the_database(machines: tuple[Machine, Machine], pg_server: Any, team_db: str) -> None:
    alice, _ = machines
    token = "s3cr3t-" + os.urandom(6).hex()
    done = alice("run", "leaky", LEAKY_TOKEN=token)
    assert done.returncode == 0, done.stderr
    done = alice("run", "disk-report", ALIEN_API_TOKEN=token)
    dump = pg_server.dump(team_db.rsplit("/", 1)[1])
    assert "the token is" in dump  # the logs are there...
    assert token not in dump  # ...scrubbed


def test_db_verify_names_the_run_whose_row_was_changed(machines: tuple[Machine, Machine], pg_server: Any,
                                                       team_db: str) -> None:
    alice, bob = machines
    for name in ("conditional", "fail-on-host", "conditional"):
        alice("run", name)
    assert bob("db", "verify").returncode == 0
    victim = alice.history("fail-on-host")[0]["id"]
    pg_server.psql(f"UPDATE runs SET status = 'succeeded', exit_code = 0 WHERE id = '{victim}'",
                   team_db.rsplit("/", 1)[1])
    broken = bob("db", "verify")
    assert broken.returncode == 1 and victim in broken.stderr, broken.stderr


def test_prune_keeps_the_chain_verifiable(backend: str, tmp_path: Path) -> None:
    alice = _machine(tmp_path, "laptop", "alice")
    for _ in range(3):
        assert alice("run", "conditional").returncode == 0
    assert alice("prune", "--older-than", "0s", "--keep", "1").returncode == 0
    assert len(alice.history()) == 1
    verified = alice("db", "verify")
    assert verified.returncode == 0, verified.stderr


def test_db_upgrade_migrates_an_older_postgresql_schema(pg_server: Any, team_db: str, tmp_path: Path) -> None:
    database = team_db.rsplit("/", 1)[1]
    pg_server.psql("CREATE TABLE runs (id TEXT PRIMARY KEY, runbook TEXT NOT NULL, version TEXT NOT NULL, "
                   "status TEXT NOT NULL, exit_code INTEGER, operator TEXT, trigger TEXT, inventory TEXT, "
                   "limit_pattern TEXT, check_mode INTEGER NOT NULL DEFAULT 0, started_at DOUBLE PRECISION NOT NULL, "
                   "ended_at DOUBLE PRECISION, pid INTEGER, pid_start BIGINT, hostname TEXT, "
                   "hosts_failed TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '');"
                   "CREATE TABLE steps (run_id TEXT, idx INTEGER, name TEXT, type TEXT, status TEXT, "
                   "started_at DOUBLE PRECISION, ended_at DOUBLE PRECISION, rc INTEGER, ok INTEGER, changed INTEGER, "
                   "failed INTEGER, unreachable INTEGER, skipped INTEGER, PRIMARY KEY (run_id, idx));"
                   "CREATE TABLE host_results (run_id TEXT, step_idx INTEGER, host TEXT, ok INTEGER, changed INTEGER, "
                   "failed INTEGER, unreachable INTEGER, skipped INTEGER, message TEXT, "
                   "PRIMARY KEY (run_id, step_idx, host));"
                   "INSERT INTO runs (id, runbook, version, status, operator, started_at) VALUES "
                   "('20250101T000000Z-conditional-0001', 'conditional', '1.0.0', 'succeeded', 'old@host', 1735689600)",
                   database)
    alice = _machine(tmp_path, "laptop", "alice")
    upgraded = alice("db", "upgrade")
    from runner.store.base import SCHEMA_VERSION

    assert upgraded.returncode == 0 and f"from version 1 to version {SCHEMA_VERSION}" in upgraded.stderr, upgraded.stderr
    assert f"already at version {SCHEMA_VERSION}" in alice("db", "upgrade").stderr
    assert [r["operator"] for r in alice.history()] == ["old@host"]
    assert alice("run", "conditional").returncode == 0
