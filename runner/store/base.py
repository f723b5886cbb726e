"""The one interface of the store, whatever its backend: run folders with their run.json (the source of
truth on this machine), and a database indexing them (SQLite in the state dir, or the team's PostgreSQL).

The SQL shared by both backends is written here once, with `?` placeholders; each backend holds only what
differs: connecting, the schema and its migrations, upserts, locks and liveness."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from runner.errors import ExitCode, RunbookError, UsageError
from runner.store.alerts import AlertStore
from runner.store.files import make_private_dir, write_private
from runner.store.ids import is_run_id_of, new_run_id
from runner.store.records import RunRecord, now

# The one definition of "newest": run ids sort by start time (see new_run_id), so every rule that
# needs the newest or the last run (`last`, `--keep`, history order, `show`) orders by id.
NEWEST_FIRST = "id DESC"
FINISHED = ("succeeded", "failed", "canceled", "timed_out", "aborted", "damaged")
LIVE = ("running", "waiting")
UNFINISHED = ("queued", *LIVE)  # never chained, never pruned

# The schema version this code writes; `runbook db upgrade` brings an older database up to it.
SCHEMA_VERSION = 4


class DamagedError(RunbookError):
    """A run's record (run.json) cannot be read; its history row says so."""


class StoreUnavailableError(RunbookError):
    """The shared database cannot be reached: nothing was run."""

    exit_code = ExitCode.STORE_UNAVAILABLE


class ReadOnlyError(RunbookError):
    """A write to a state dir or database this user may only read."""


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


HISTORY_COLUMNS = ", ".join(HistoryRow.__dataclass_fields__)
RUN_COLUMNS = ("id", "runbook", "version", "status", "exit_code", "operator", "trigger", "inventory",
               "limit_pattern", "check_mode", "started_at", "ended_at", "pid", "pid_start", "hostname",
               "hosts_failed", "message", "lock_name", "runbook_sha256", "record")
STEP_COLUMNS = ("run_id", "idx", "name", "type", "status", "started_at", "ended_at", "rc",
                "ok", "changed", "failed", "unreachable", "skipped")
HOST_COLUMNS = ("run_id", "step_idx", "host", "ok", "changed", "failed", "unreachable", "skipped", "message")



def process_start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks (tells a live run from a reused pid), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def runbook_of(run_id: str) -> str:
    """The runbook name inside a run id (`STAMP-NAME-SUFFIX`)."""
    parts = run_id.split("-")
    return "-".join(parts[1:-1]) or run_id


class Store(AlertStore, ABC):
    """Run folders and the database that indexes them; see the module docstring."""

    backend = ""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir

    # -- files ---------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def locks_dir(self) -> Path:
        return make_private_dir(self.root / "locks")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def new_run_id(self, runbook: str, prefer: str | None = None) -> str:
        """A new run's id, its folder made; `prefer`: the id given ahead (ids.new_run_id), if still free."""
        make_private_dir(self.root)  # refuses a state dir someone else could change
        make_private_dir(self.runs_dir)
        while True:
            run_id = prefer if prefer is not None and is_run_id_of(prefer, runbook) else new_run_id(runbook)
            prefer = None
            try:
                self.run_dir(run_id).mkdir(mode=0o700)
                return run_id
            except FileExistsError:
                continue

    def require_writable(self) -> None:
        """ReadOnlyError unless this user may write the state dir (reading works either way)."""
        if self.root.exists() and not writable(self.root):
            raise ReadOnlyError(f"the state dir {self.root} is read-only for this user: nothing was changed "
                                "(history, log, report and show still work; to write, run as its owner)")

    def save(self, record: RunRecord) -> None:
        """run.json first (the source of truth), then its history rows, each atomic."""
        self.require_writable()
        folder = make_private_dir(self.run_dir(record.id))
        write_private(folder / "run.json", json.dumps(record.to_dict(), indent=2).encode())
        self._index(record)

    def load(self, run_id: str) -> RunRecord:
        return self.load_local(run_id)

    @contextmanager
    def updating(self, run_id: str) -> Iterator[RunRecord]:
        """The run's record read fresh and saved at the end of the block, with every other update of it
        (from any process, or any machine on the shared store) waiting meanwhile: concurrent approvals are
        all kept. Nothing is saved when the block raises."""
        self.require_writable()
        import fcntl

        folder = make_private_dir(self.run_dir(run_id))
        fd = os.open(folder / ".update.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # run.json on this machine
            with self._row_locked(run_id):  # the row, for every machine
                record = self.load(run_id)
                yield record
                self.save(record)
        finally:
            os.close(fd)  # closing releases the flock

    @abstractmethod
    def _row_locked(self, run_id: str) -> AbstractContextManager[None]:
        """A transaction holding the run's row locked against other writers until it ends."""

    def load_local(self, run_id: str) -> RunRecord:
        path = self.run_dir(run_id) / "run.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"run {run_id}: no record at {path}") from None
        try:
            return parse_record(run_id, text, str(path))
        except DamagedError as exc:
            try:
                self.mark_damaged(run_id, str(exc))
            except RunbookError:
                pass  # read-only: the message says it all the same
            raise

    def step_output(self, record: RunRecord, index: int) -> str | None:
        """A step's scrubbed stdout: the local run folder, else (shared store) the database."""
        path = record.steps[index].folder(self.run_dir(record.id)) / "stdout"
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def step_events(self, record: RunRecord, index: int) -> bytes | None:
        """A step's compressed events (events.jsonl.gz), from the run folder or the database."""
        path = record.steps[index].folder(self.run_dir(record.id)) / "events.jsonl.gz"
        try:
            return path.read_bytes()
        except OSError:
            return None

    # -- reading the index ---------------------------------------------------------------------
    def pending_ids(self) -> list[str]:
        """Runs kept locally while the shared database was away (never on the local store)."""
        pending = self.root / "pending"
        return sorted(p.name for p in pending.iterdir()) if pending.is_dir() else []

    def has_history(self) -> bool:
        """Whether anything was ever recorded (the shared database always answers)."""
        return True

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
        sql = f"SELECT {HISTORY_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {NEWEST_FIRST} LIMIT ?"
        return [HistoryRow(*row) for row in self.query(sql, (*args, limit))]

    def cron_runs(self, runbook: str, limit: int = 500) -> list[HistoryRow]:
        """The runbook's cron-triggered runs, newest first."""
        sql = (f"SELECT {HISTORY_COLUMNS} FROM runs WHERE runbook = ? AND trigger = 'cron' "
               f"ORDER BY {NEWEST_FIRST} LIMIT ?")
        return [HistoryRow(*row) for row in self.query(sql, (runbook, limit))]

    def waiting_runs(self, lock: str, exclude: str = "") -> list[str]:
        """Runs paused mid-procedure that hold `lock` until resumed or canceled (a rehearsal holds none)."""
        rows = self.query("SELECT id FROM runs WHERE lock_name = ? AND status = 'waiting' AND check_mode = 0 "
                          "AND id != ? ORDER BY id", (lock, exclude))
        return [str(r[0]) for r in rows]

    def resolve(self, ref: str) -> str:
        """A run id from an id, a unique prefix of one, or `last`."""
        self.reap_dead_runs()
        if ref == "last":
            rows = self.query(f"SELECT id FROM runs ORDER BY {NEWEST_FIRST} LIMIT 1")
            if not rows:
                raise UsageError("no runs recorded yet")
            return str(rows[0][0])
        if not re.fullmatch(r"[A-Za-z0-9._-]+", ref):
            raise UsageError(f"{ref!r} is not a run id")
        rows = self.query("SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 3", (ref, ref + "~"))
        if not rows:
            raise UsageError(f"no run matches {ref!r} (see: runbook history)")
        if len(rows) > 1 and rows[0][0] != ref:
            listed = ", ".join(r[0] for r in rows[:2])
            raise UsageError(f"{ref!r} matches several runs ({listed}, ...): give more of the id")
        return str(rows[0][0])

    def newest_per_runbook(self) -> list[tuple[str, str, float, str]]:
        """(id, runbook, started_at, status) of every run, each runbook's newest first (for prune --keep)."""
        rows = self.query(f"SELECT id, runbook, started_at, status FROM runs ORDER BY runbook, {NEWEST_FIRST}")
        return [(str(a), str(b), float(c), str(d)) for a, b, c, d in rows]

    # -- liveness ------------------------------------------------------------------------------
    def reap_dead_runs(self) -> list[str]:
        """Mark `running` runs whose controller is gone as `aborted`; returns their ids."""
        rows = self.query("SELECT id, pid, pid_start, hostname FROM runs WHERE status = 'running'")
        reaped = []
        for run_id, pid, pid_start, hostname in rows:
            if self._controller_alive(str(run_id), pid, pid_start, hostname):
                continue
            self.mark_aborted(str(run_id), sweep_here=hostname == socket.gethostname())
            reaped.append(str(run_id))
        return reaped

    def _controller_alive(self, run_id: str, pid: int | None, pid_start: int | None, hostname: str | None) -> bool:
        """Local pids: a run of another machine is taken as alive (the SQLite store is one machine's)."""
        return hostname != socket.gethostname() or bool(pid and process_start_time(pid) == pid_start)

    def mark_aborted(self, run_id: str, sweep_here: bool = True) -> None:
        if sweep_here:
            from runner.execution.processes import sweep

            sweep(run_id)
        try:
            record = self.load(run_id)
        except RunbookError:
            self.execute("UPDATE runs SET status = 'aborted' WHERE id = ? AND status = 'running'", (run_id,))
            return
        record.status = "aborted"
        record.ended_at = record.ended_at or now()
        record.message = record.message or "the runner process died before the run finished"
        for step in record.steps:
            if step.status == "running":
                step.status, step.ended_at = "aborted", record.ended_at
        self.save(record)

    def rebuild(self) -> tuple[int, int]:
        """Index every run folder again from its run.json; (folders, damaged ones)."""
        damaged = 0
        ids = [i for i in folder_ids(self.runs_dir) if (self.run_dir(i) / "run.json").exists()]
        for run_id in ids:
            try:
                record = self.load_local(run_id)
            except DamagedError:
                damaged += 1  # load_local has marked its row damaged
                continue
            self._index(record)
        return len(ids), damaged

    def mark_damaged(self, run_id: str, why: str) -> None:
        started = stamp_time(run_id) or (self.run_dir(run_id) / "run.json").stat().st_mtime
        self.execute("INSERT INTO runs (id, runbook, version, status, started_at, message) VALUES (?,?,?,?,?,?) "
                     "ON CONFLICT (id) DO UPDATE SET status = 'damaged', message = excluded.message",
                     (run_id, runbook_of(run_id), "?", "damaged", started, why))

    # -- removing ------------------------------------------------------------------------------
    def delete_run(self, run_id: str) -> None:
        """The run's rows and folder; the chain keeps a note of what was removed so `db verify` passes."""
        self.execute_many([
            ("INSERT INTO pruned (run_id, pruned_at) SELECT DISTINCT run_id, ? FROM chain WHERE run_id = ? "
             "ON CONFLICT (run_id) DO NOTHING",
             (now(), run_id)),
            ("DELETE FROM host_results WHERE run_id = ?", (run_id,)),
            ("DELETE FROM steps WHERE run_id = ?", (run_id,)),
            ("DELETE FROM step_logs WHERE run_id = ?", (run_id,)),
            ("DELETE FROM runs WHERE id = ?", (run_id,)),
        ])
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def delete_rows_without_folder(self, before: float) -> int:
        """History rows of finished runs older than `before` whose folder is gone (local store only)."""
        if self.backend != "sqlite":
            return 0
        rows = self.query("SELECT id FROM runs WHERE started_at < ? AND status NOT IN ('queued', 'running', 'waiting')",
                          (before,))
        gone = [str(r[0]) for r in rows if not self.run_dir(r[0]).exists()]
        for run_id in gone:
            self.delete_run(run_id)
        return len(gone)

    # -- the tamper-evident chain -------------------------------------------------------------
    def chain_digest(self, run_id: str) -> str | None:
        """The digest of a finished run as the store holds it now (row, steps, hosts, sign-offs, logs)."""
        rows = self.query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        run = dict(zip(RUN_COLUMNS, rows[0]))
        steps = self.query(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE run_id = ? ORDER BY idx", (run_id,))
        hosts = self.query(f"SELECT {', '.join(HOST_COLUMNS)} FROM host_results WHERE run_id = ? "
                           "ORDER BY step_idx, host", (run_id,))
        try:
            record = self._record_for_chain(run_id, run.get("record"))
        except RunbookError:
            record = None
        doc = {
            "run": {k: run[k] for k in ("id", "runbook", "version", "status", "exit_code", "operator", "trigger",
                                        "inventory", "limit_pattern", "check_mode", "started_at", "ended_at",
                                        "runbook_sha256")},
            "steps": [list(s) for s in steps],
            "hosts": [list(h) for h in hosts],
            "params": record.params if record else None,
            "signoffs": [[s.index, [[o.who, o.at, o.note, o.item, o.decision] for o in s.signoffs]]
                         for s in record.steps] if record else None,
            "logs": [hashlib.sha256((self.step_output(record, s.index) or "").encode()).hexdigest()
                     for s in record.steps] if record else None,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()

    def _record_for_chain(self, run_id: str, stored: str | None) -> RunRecord:
        return self.load_local(run_id)

    def chain_append(self, run_id: str) -> None:
        """Link a finished run to the chain (again if its record changed since it was linked)."""
        digest = self.chain_digest(run_id)
        if digest is None:
            return
        self._chain_insert(run_id, digest)

    @abstractmethod
    def _chain_insert(self, run_id: str, digest: str) -> None:
        """Append (run_id, digest) after the newest link, under a lock that serializes writers."""

    def verify(self) -> tuple[int, str | None, str]:
        """(links checked, first bad run id or None, why)."""
        links = self.query("SELECT seq, run_id, digest, prev_hash, hash FROM chain ORDER BY seq")
        pruned = {str(r[0]) for r in self.query("SELECT run_id FROM pruned")}
        latest = {str(run_id): seq for seq, run_id, *_ in links}
        previous = ""
        for seq, run_id, digest, prev_hash, link_hash in links:
            if prev_hash != previous or link_hash != chain_hash(previous, str(digest)):
                return len(links), str(run_id), "its link in the chain was altered or removed"
            previous = link_hash
            if latest[str(run_id)] != seq or run_id in pruned:
                continue
            now_digest = self.chain_digest(str(run_id))
            if now_digest is None:
                return len(links), str(run_id), "its history row was deleted without a prune"
            if now_digest != digest:
                return len(links), str(run_id), "its row, steps, sign-offs or log no longer match the record"
        return len(links), None, ""

    # -- the backend ---------------------------------------------------------------------------
    @abstractmethod
    def _index(self, record: RunRecord) -> None:
        """Write the record's rows (runs, steps, host_results) in one transaction."""

    @abstractmethod
    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read query written with `?` placeholders."""

    @abstractmethod
    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """One write in its own transaction."""

    @abstractmethod
    def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Several writes in one transaction."""

    @abstractmethod
    def lock(self, name: str, holder: RunRecord, wait: float | None) -> AbstractContextManager[None]:
        """The exclusive lock `name` for the run `holder`; LockedError (exit 6) names the holder."""

    def hold_liveness(self, run_id: str) -> None:
        """Mark this process as the live controller of `run_id` (the shared store holds a lock)."""

    @abstractmethod
    def schema_version(self) -> int:
        """The version of the database's schema (0 when it has none yet)."""

    @abstractmethod
    def upgrade(self) -> tuple[int, int]:
        """Apply pending migrations; (version before, version after)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (the next use opens a new one)."""

    def describe(self) -> str:
        return f"{self.backend} {self.root}"


def chain_hash(previous: str, digest: str) -> str:
    return hashlib.sha256(f"{previous}:{digest}".encode()).hexdigest()


def stamp_time(run_id: str) -> float | None:
    """The start time a run id carries (`20261129T031500.123456Z-...`, or whole seconds for older ids)."""
    import calendar

    try:
        whole, _, fraction = run_id.split("-", 1)[0].rstrip("Z").partition(".")
        return calendar.timegm(time.strptime(whole, "%Y%m%dT%H%M%S")) + float(f"0.{fraction or 0}")
    except ValueError:
        return None


def parse_record(run_id: str, text: str, where: str) -> RunRecord:
    try:
        return RunRecord.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DamagedError(f"run {run_id}: its record {where} is damaged ({exc.__class__.__name__}): "
                           "it is shown as damaged; the rest of the history is intact") from None


def folder_ids(runs_dir: Path) -> list[str]:
    if not runs_dir.is_dir():
        return []
    return sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def writable(path: Path) -> bool:
    return os.access(path, os.W_OK)
