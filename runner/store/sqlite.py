"""The state dir: run folders with their run.json, and history.db (SQLite, WAL) indexing them."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import RunbookError, UsageError
from runner.store.files import make_private_dir, write_private
from runner.store.records import RunRecord, now

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    runbook TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    operator TEXT,
    trigger TEXT,
    inventory TEXT,
    limit_pattern TEXT,
    check_mode INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    ended_at REAL,
    pid INTEGER,
    pid_start INTEGER,
    hostname TEXT,
    hosts_failed TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    lock_name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL,
    ended_at REAL,
    rc INTEGER,
    ok INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    unreachable INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS host_results (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_idx INTEGER NOT NULL,
    host TEXT NOT NULL,
    ok INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    unreachable INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, step_idx, host)
);
"""

# Indexes come after migrations: an older history.db gains its columns first.
INDEXES = """
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_by_runbook ON runs (runbook, started_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, started_at);
CREATE INDEX IF NOT EXISTS runs_by_lock ON runs (lock_name, status);
CREATE INDEX IF NOT EXISTS host_results_by_host ON host_results (host);
"""

# Columns added since the first release, added in place to older databases.
MIGRATIONS = (("runs", "lock_name", "TEXT NOT NULL DEFAULT ''"),)


@dataclass(frozen=True)
class HistoryRow:
    id: str
    runbook: str
    version: str
    status: str
    exit_code: int | None
    operator: str
    trigger: str
    inventory: str
    limit_pattern: str
    check_mode: int
    started_at: float
    ended_at: float | None
    hosts_failed: str
    message: str

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


_HISTORY_COLUMNS = ", ".join(HistoryRow.__dataclass_fields__)


def process_start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks (tells a live run from a reused pid), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self._db: sqlite3.Connection | None = None

    # -- files ---------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def locks_dir(self) -> Path:
        return make_private_dir(self.root / "locks")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def new_run_id(self, runbook: str) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        make_private_dir(self.root)  # refuses a state dir someone else could change
        make_private_dir(self.runs_dir)
        while True:
            run_id = f"{stamp}-{runbook}-{secrets.token_hex(2)}"
            try:
                self.run_dir(run_id).mkdir(mode=0o700)
                return run_id
            except FileExistsError:
                continue

    def save(self, record: RunRecord) -> None:
        """run.json first (the source of truth), then its history rows, each atomic."""
        folder = make_private_dir(self.run_dir(record.id))
        write_private(folder / "run.json", json.dumps(record.to_dict(), indent=2).encode())
        self._index(record)

    def load(self, run_id: str) -> RunRecord:
        path = self.run_dir(run_id) / "run.json"
        try:
            return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise UsageError(f"run {run_id}: no record at {path}") from None

    # -- database ------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            make_private_dir(self.root)
            path = self.root / "history.db"
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            db = sqlite3.connect(path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(SCHEMA)
            _migrate(db)
            db.executescript(INDEXES)
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _index(self, record: RunRecord) -> None:
        failed = sorted({h for s in record.steps for h in s.failed_hosts() + s.unreachable_hosts()})
        db = self.db
        with _transaction(db):
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.id, record.runbook, record.version, record.status, record.exit_code, record.operator,
                 record.trigger, record.inventory, record.limit, int(record.check), record.started_at,
                 record.ended_at, record.pid, record.pid_start, record.hostname, ",".join(failed), record.message,
                 record.lock),
            )
            db.execute("DELETE FROM steps WHERE run_id = ?", (record.id,))
            db.execute("DELETE FROM host_results WHERE run_id = ?", (record.id,))
            for step in record.steps:
                c = step.counts()
                db.execute(
                    "INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (record.id, step.index, step.name, step.type, step.status, step.started_at, step.ended_at,
                     step.rc, c["ok"], c["changed"], c["failed"], c["unreachable"], c["skipped"]),
                )
                db.executemany(
                    "INSERT INTO host_results VALUES (?,?,?,?,?,?,?,?,?)",
                    [(record.id, step.index, host, r.ok, r.changed, r.failed, r.unreachable, r.skipped, r.message)
                     for host, r in step.hosts.items()],
                )

    def history(
        self, runbook: str | None = None, status: str | None = None, since: float | None = None, limit: int = 20
    ) -> list[HistoryRow]:
        self.reap_dead_runs()
        where: list[str] = []
        args: list[Any] = []
        if runbook:
            where.append("runbook = ?")
            args.append(runbook)
        if status:
            where.append("status = ?")
            args.append(status)
        if since is not None:
            where.append("started_at >= ?")
            args.append(since)
        sql = f"SELECT {_HISTORY_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        rows = self.db.execute(sql, (*args, limit)).fetchall()
        return [HistoryRow(*row) for row in rows]

    def waiting_runs(self, lock: str, exclude: str = "") -> list[str]:
        """Runs paused mid-procedure that hold `lock` until resumed or canceled."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE lock_name = ? AND status = 'waiting' AND id != ? ORDER BY started_at",
            (lock, exclude),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def resolve(self, ref: str) -> str:
        """A run id from an id, a unique prefix of one, or `last`."""
        self.reap_dead_runs()
        if ref == "last":
            row = self.db.execute("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1").fetchone()
            if row is None:
                raise UsageError("no runs recorded yet")
            return str(row[0])
        if not re.fullmatch(r"[A-Za-z0-9._-]+", ref):
            raise UsageError(f"{ref!r} is not a run id")
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 3", (ref, ref + "\U0010ffff")
        ).fetchall()
        if not rows:
            raise UsageError(f"no run matches {ref!r} (see: runbook history)")
        if len(rows) > 1 and rows[0][0] != ref:
            listed = ", ".join(r[0] for r in rows[:2])
            raise UsageError(f"{ref!r} matches several runs ({listed}, ...): give more of the id")
        return str(rows[0][0])

    def reap_dead_runs(self) -> list[str]:
        """Mark `running` runs whose process is gone as `aborted`; returns their ids."""
        me = socket.gethostname()
        rows = self.db.execute(
            "SELECT id, pid, pid_start, hostname FROM runs WHERE status = 'running'"
        ).fetchall()
        reaped = []
        for run_id, pid, pid_start, hostname in rows:
            if hostname != me or (pid and process_start_time(pid) == pid_start):
                continue
            self.mark_aborted(run_id)
            reaped.append(run_id)
        return reaped

    def mark_aborted(self, run_id: str) -> None:
        from runner.execution.processes import sweep

        sweep(run_id)
        try:
            record = self.load(run_id)
        except RunbookError:
            with _transaction(self.db):
                self.db.execute("UPDATE runs SET status = 'aborted' WHERE id = ?", (run_id,))
            return
        record.status = "aborted"
        record.ended_at = record.ended_at or now()
        record.message = record.message or "the runner process died before the run finished"
        for step in record.steps:
            if step.status == "running":
                step.status, step.ended_at = "aborted", record.ended_at
        self.save(record)

    def delete_run(self, run_id: str) -> None:
        with _transaction(self.db):
            self.db.execute("DELETE FROM host_results WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM steps WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def delete_rows_without_folder(self, before: float) -> int:
        """History rows of finished runs older than `before` whose folder is gone."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE started_at < ? AND status NOT IN ('running', 'waiting')", (before,)
        ).fetchall()
        gone = [r[0] for r in rows if not self.run_dir(r[0]).exists()]
        for run_id in gone:
            self.delete_run(run_id)
        return len(gone)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, args).fetchall()


def _migrate(db: sqlite3.Connection) -> None:
    for table, column, declaration in MIGRATIONS:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
