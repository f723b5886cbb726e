"""The embedded backend: history.db (SQLite, WAL) in the state dir, indexing this machine's run folders.
Opened read-only when the state dir is not writable; rebuilt from the run folders when it is damaged."""
from __future__ import annotations

import os
import sqlite3
import sys
import time
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Iterator

from runner.errors import RunbookError
from runner.store.base import (
    RUN_COLUMNS, SCHEMA_VERSION, HistoryRow, ReadOnlyError, Store as BaseStore, folder_ids, index_rows,
    legacy_prune_link, process_start_time, writable,
)
from runner.store.chain import chain_hash
from runner.store.alerts import SQLITE_TABLES
from runner.store.files import make_private_dir
from runner.store.ids import new_stamp
from runner.store.records import RunRecord

__all__ = ["SqliteStore", "Store", "HistoryRow", "process_start_time", "new_stamp"]

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
    message TEXT NOT NULL DEFAULT ''
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

# Versioned migrations (PRAGMA user_version). Each is idempotent: a database from before versioning
# (user_version 0) may already hold some of them.
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE runs ADD COLUMN lock_name TEXT NOT NULL DEFAULT ''"],
    3: ["ALTER TABLE runs ADD COLUMN runbook_sha256 TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE runs ADD COLUMN record TEXT",  # the run.json document; NULL here (run.json is beside it)
        """CREATE TABLE IF NOT EXISTS step_logs (
               run_id TEXT NOT NULL, step_idx INTEGER NOT NULL, stdout TEXT NOT NULL, events BLOB,
               PRIMARY KEY (run_id, step_idx))""",
        """CREATE TABLE IF NOT EXISTS chain (
               seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, digest TEXT NOT NULL,
               prev_hash TEXT NOT NULL, hash TEXT NOT NULL, linked_at REAL NOT NULL)""",
        "CREATE TABLE IF NOT EXISTS pruned (run_id TEXT PRIMARY KEY, pruned_at REAL NOT NULL)"],
    # The chain seals whole records and holds prune records (runner/store/chain.py); `pruned` is unused.
    4: ["ALTER TABLE chain ADD COLUMN kind TEXT NOT NULL DEFAULT 'run'",
        "ALTER TABLE chain ADD COLUMN body TEXT"],
    5: SQLITE_TABLES,  # runbook serve: alerts, their keys, the queue
}

# Indexes come after migrations: an older history.db gains its columns first. Newest-first rules order
# by id (ids sort by start time), so each filter has an index ending in id.
INDEXES = """
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_by_runbook_id ON runs (runbook, id);
CREATE INDEX IF NOT EXISTS runs_by_status_id ON runs (status, id);
CREATE INDEX IF NOT EXISTS runs_by_lock ON runs (lock_name, status);
CREATE INDEX IF NOT EXISTS host_results_by_host ON host_results (host);
CREATE INDEX IF NOT EXISTS chain_by_run ON chain (run_id);
"""


class SqliteStore(BaseStore):
    backend = "sqlite"

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self._db: sqlite3.Connection | None = None
        self.read_only = False
        self._depth = 0  # open transactions: an inner one joins the outer one

    @property
    def path(self) -> Path:
        return self.root / "history.db"

    def has_history(self) -> bool:
        return self.path.exists()

    def save(self, record: RunRecord) -> None:
        # Open the index before the first run.json exists (every one is written here): a new index next
        # to its own first record is not a damaged one to rebuild.
        self.db  # noqa: B018
        super().save(record)

    # -- connection ----------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        if self.root.exists() and not (writable(self.root) and (not self.path.exists() or writable(self.path))):
            return self._open_read_only()
        make_private_dir(self.root)
        was_empty = not self.path.exists() or self.path.stat().st_size == 0
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            db = self._connect_and_migrate()
        except sqlite3.DatabaseError as exc:
            return self._rebuild_damaged(f"{exc}")
        if was_empty and self._recorded_folders():
            self._db = db
            self._rebuild_notice("is empty")
        return db

    def _connect_and_migrate(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._migrate(db)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        """A state dir this user cannot write: read it as it is (immutable: no WAL files are created)."""
        self.read_only = True
        if not self.path.exists():
            db = sqlite3.connect(":memory:", isolation_level=None)
            db.executescript(SCHEMA)
            _apply(db, MIGRATIONS)
            return db
        db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None)
        try:
            db.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise RunbookError(f"{self.path} is damaged ({exc}) and the state dir is read-only: with write "
                               "access, rebuild it from the run folders with: runbook db rebuild") from None
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        before = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.execute("BEGIN IMMEDIATE")  # executescript would commit: statements run one by one
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            _apply(db, MIGRATIONS)
            if before < 4:
                _carry_pruned(db)
            for statement in INDEXES.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- damage --------------------------------------------------------------------------------
    def _recorded_folders(self) -> list[str]:
        return [i for i in folder_ids(self.runs_dir) if (self.run_dir(i) / "run.json").exists()]

    def _rebuild_damaged(self, why: str) -> sqlite3.Connection:
        aside = self.path.with_name(f"history.db.damaged-{new_stamp()}")
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = self._connect_and_migrate()
        print(f"runbook: {self.path} was damaged ({why}); kept as {aside.name}", file=sys.stderr)
        self._rebuild_notice("was damaged")
        return self._db

    def _rebuild_notice(self, what: str) -> None:
        count, damaged, refused = self.rebuild()
        print(f"runbook: the history index {what} while {count} run folder(s) exist: rebuilt it from their "
              f"run.json ({damaged} damaged); `runbook db rebuild` does this by hand", file=sys.stderr)
        for why in refused:
            print(f"runbook: {why}", file=sys.stderr)

    # -- writing -------------------------------------------------------------------------------
    def _write_rows(self, record: RunRecord, all_logs: bool) -> None:
        if self.read_only:
            raise ReadOnlyError(f"the state dir {self.root} is read-only for this user: cannot record run "
                                f"{record.id} (reading works; to write, run as its owner)")
        row, steps, hosts = index_rows(record)
        with self._transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})", row)
            db.execute("DELETE FROM steps WHERE run_id = ?", (record.id,))
            db.execute("DELETE FROM host_results WHERE run_id = ?", (record.id,))
            db.executemany("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", steps)
            db.executemany("INSERT INTO host_results VALUES (?,?,?,?,?,?,?,?,?)", hosts)

    def _chain_insert(self, run_id: str, digest: str, kind: str, body: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"the state dir {self.root} is read-only for this user: nothing was changed")
        with self._transaction() as db:
            last = db.execute("SELECT hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
            previous = last[0] if last else ""
            db.execute("INSERT INTO chain (run_id, digest, prev_hash, hash, linked_at, kind, body) "
                       "VALUES (?,?,?,?,?,?,?)",
                       (run_id, digest, previous, chain_hash(previous, digest), time.time(), kind, body))

    def iter_query(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        return iter(self.db.execute(sql, args))

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, args).fetchall()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        self.execute_many([(sql, args)])

    def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        if self.read_only:
            raise ReadOnlyError(f"the state dir {self.root} is read-only for this user: nothing was changed")
        with self._transaction() as db:
            for sql, args in statements:
                db.execute(sql, args)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on error (the connection runs in autocommit mode);
        inside another one, part of it."""
        db = self.db
        if self._depth:
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            self._depth -= 1
        db.execute("COMMIT")

    @contextmanager
    def _row_locked(self, run_id: str) -> Iterator[None]:
        if self.read_only:
            raise ReadOnlyError(f"the state dir {self.root} is read-only for this user: nothing was changed")
        with self._transaction():  # BEGIN IMMEDIATE: the database's write lock, until the record is saved
            yield

    def reap_dead_runs(self) -> list[str]:
        if self.read_only:
            return []
        return super().reap_dead_runs()

    # -- locks and schema ----------------------------------------------------------------------
    def lock(self, name: str, holder: RunRecord, wait: float | None) -> AbstractContextManager[None]:
        from runner.execution.locks import RunLock

        return _file_lock(RunLock(self.locks_dir, name), holder, wait)

    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def upgrade(self) -> tuple[int, int]:
        before = 0
        if self.path.exists() and self.path.stat().st_size:
            probe = sqlite3.connect(self.path)
            try:
                before = int(probe.execute("PRAGMA user_version").fetchone()[0])
            finally:
                probe.close()
        return before, self.schema_version()


@contextmanager
def _file_lock(lock: Any, holder: RunRecord, wait: float | None) -> Iterator[None]:
    lock.acquire(holder.id, wait, holder.operator, holder.hostname)
    try:
        yield
    finally:
        lock.release()


def _carry_pruned(db: sqlite3.Connection) -> None:
    """Schema 3's `pruned` table into the chain, once, as a prune record (see legacy_prune_link)."""
    removed = sorted(str(r[0]) for r in db.execute("SELECT run_id FROM pruned"))
    if removed:
        last = db.execute("SELECT hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
        db.execute("INSERT INTO chain (run_id, digest, prev_hash, hash, kind, body, linked_at) VALUES ('',?,?,?,?,?,?)",
                   (*legacy_prune_link(removed, str(last[0]) if last else ""), time.time()))
    db.execute("DELETE FROM pruned")


def _apply(db: sqlite3.Connection, migrations: dict[int, list[str]]) -> None:
    for _version, statements in sorted(migrations.items()):
        for statement in statements:
            try:
                db.execute(statement)
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise


# The name the rest of the code has always used for the embedded store.
Store = SqliteStore
