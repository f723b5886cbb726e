"""The history database: older databases are migrated in place, and a run record survives a crash."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

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
