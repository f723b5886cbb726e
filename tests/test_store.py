"""The history database: older databases are migrated in place, and a run record survives a crash."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import runbook

OLD_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, runbook TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,
    exit_code INTEGER, operator TEXT, trigger TEXT, inventory TEXT, limit_pattern TEXT,
    check_mode INTEGER NOT NULL DEFAULT 0, started_at REAL NOT NULL, ended_at REAL, pid INTEGER, pid_start INTEGER,
    hostname TEXT, hosts_failed TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '');
INSERT INTO runs VALUES ('20250101T000000Z-conditional-0001', 'conditional', '1.0.0', 'succeeded', 0, 'old@host',
    'cli', 'lab', 'web', 0, 1735689600, 1735689610, NULL, NULL, 'vm', '', '');
"""


def test_a_database_from_before_lock_names_is_migrated(alien: Path, state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    with sqlite3.connect(state_dir / "history.db") as db:
        db.executescript(OLD_SCHEMA)
    history = runbook("history", "--json", cwd=alien)
    assert history.returncode == 0, history.stderr
    assert [r["operator"] for r in json.loads(history.stdout)] == ["old@host"]
    assert runbook("run", "conditional", cwd=alien).returncode == 0
    with sqlite3.connect(state_dir / "history.db") as db:
        assert db.execute("SELECT lock_name FROM runs WHERE runbook = 'conditional' ORDER BY started_at").fetchall() == [
            ("",), ("conditional",)]


def test_no_temporary_files_are_left_beside_records(alien: Path, state_dir: Path) -> None:
    assert runbook("run", "fail-on-host", cwd=alien).returncode == 1
    leftovers = [p for p in state_dir.rglob("*") if p.name.endswith(".tmp") or p.name == ".private"]
    assert leftovers == []


def test_run_ids_sort_by_start_time_even_within_one_second(tmp_path: Path) -> None:
    from runner.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "state")
    ids = [store.new_run_id("b" if i % 2 else "a") for i in range(200)]
    assert sorted(ids) == ids and len(set(ids)) == 200


def test_last_and_history_order_follow_the_ids(backend: str, alien: Path, state_dir: Path) -> None:
    for _ in range(3):
        assert runbook("run", "conditional", cwd=alien).returncode == 0
    rows = json.loads(runbook("history", "--json", cwd=alien).stdout)
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    last = runbook("report", "last", "--format", "json", cwd=alien)
    assert json.loads(last.stdout)["id"] == rows[0]["id"]
    assert runbook("prune", "--older-than", "0s", "--keep", "1", cwd=alien).returncode == 0
    assert [r["id"] for r in json.loads(runbook("history", "--json", cwd=alien).stdout)] == [rows[0]["id"]]


def _read_only(state_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`runbook ARGS` with the state dir on a read-only bind mount (root ignores file modes)."""
    import shlex

    inner = (f"mount --bind {shlex.quote(str(state_dir))} {shlex.quote(str(state_dir))} && "
             f"mount -o remount,ro,bind {shlex.quote(str(state_dir))} && "
             f"exec {shlex.quote(sys.executable)} -m runner {' '.join(shlex.quote(a) for a in args)}")
    return subprocess.run(["unshare", "-m", "sh", "-c", inner], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_a_read_only_state_dir_can_be_read_and_refuses_writes_clearly(alien: Path, state_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for a read-only bind mount")
    assert runbook("run", "fail-on-host", cwd=alien).returncode == 1
    run_id = json.loads(runbook("history", "--json", cwd=alien).stdout)[0]["id"]
    history = _read_only(state_dir, "history", "--json", cwd=alien)
    assert history.returncode == 0, history.stderr
    assert [r["id"] for r in json.loads(history.stdout)] == [run_id]
    for args in (("log", "last"), ("report", "last", "--format", "md"), ("show", "conditional"),
                 ("prune", "--older-than", "1d", "--dry-run")):
        done = _read_only(state_dir, *args, cwd=alien)
        assert done.returncode == 0, (args, done.stderr)
    pruned = _read_only(state_dir, "prune", "--older-than", "0s", cwd=alien)
    assert pruned.returncode == 1 and "read-only" in pruned.stderr and "internal error" not in pruned.stderr
    ran = _read_only(state_dir, "run", "conditional", cwd=alien)
    assert ran.returncode == 1 and "read-only" in ran.stderr and "internal error" not in ran.stderr
    assert len(json.loads(runbook("history", "--json", cwd=alien).stdout)) == 1


def test_an_emptied_history_db_is_rebuilt_from_the_run_folders(alien: Path, state_dir: Path) -> None:
    for name in ("conditional", "fail-on-host", "conditional"):
        runbook("run", name, cwd=alien)
    before = json.loads(runbook("history", "--json", cwd=alien).stdout)
    (state_dir / "history.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (state_dir / f"history.db{suffix}").unlink(missing_ok=True)
    history = runbook("history", "--json", cwd=alien)
    assert history.returncode == 0, history.stderr
    assert "rebuilt it from their run.json" in history.stderr and "runbook db rebuild" in history.stderr
    after = json.loads(history.stdout)
    assert [(r["id"], r["status"]) for r in after] == [(r["id"], r["status"]) for r in before]
    (state_dir / "history.db").write_bytes(b"this is not a database" * 100)
    assert len(json.loads(runbook("history", "--json", cwd=alien).stdout)) == 3
    rebuilt = runbook("db", "rebuild", cwd=alien)
    assert rebuilt.returncode == 0 and "re-indexed 3 run folder(s)" in rebuilt.stderr


def test_a_corrupt_run_json_shows_that_run_as_damaged(alien: Path, state_dir: Path) -> None:
    for name in ("conditional", "conditional"):
        runbook("run", name, cwd=alien)
    rows = json.loads(runbook("history", "--json", cwd=alien).stdout)
    (state_dir / "runs" / rows[0]["id"] / "run.json").write_text('{"id": "half a rec')
    log = runbook("log", "last", cwd=alien)
    assert log.returncode == 1 and "damaged" in log.stderr and "internal error" not in log.stderr
    history = runbook("history", "--json", cwd=alien)
    assert history.returncode == 0, history.stderr
    assert [r["status"] for r in json.loads(history.stdout)] == ["damaged", "succeeded"]
    assert runbook("log", rows[1]["id"], cwd=alien).returncode == 0
    assert runbook("db", "rebuild", cwd=alien).returncode == 0
    assert [r["status"] for r in json.loads(runbook("history", "--json", cwd=alien).stdout)] == ["damaged", "succeeded"]


def test_db_verify_on_the_local_store_names_a_changed_run(alien: Path, state_dir: Path) -> None:
    for name in ("conditional", "fail-on-host", "conditional"):
        runbook("run", name, cwd=alien)
    assert runbook("db", "verify", cwd=alien).returncode == 0
    with sqlite3.connect(state_dir / "history.db") as db:
        victim = db.execute("SELECT id FROM runs WHERE runbook = 'fail-on-host'").fetchone()[0]
        db.execute("UPDATE host_results SET failed = 0 WHERE run_id = ?", (victim,))
    broken = runbook("db", "verify", cwd=alien)
    assert broken.returncode == 1 and victim in broken.stderr
