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
from runner.store.chain import (
    PRUNE, RUN, Finding, Groups, Link, Walk, bytes_sha, canonical, chain_hash, prune_digest, run_digest, text_sha,
    walk,
)
from runner.store.alerts import AlertStore
from runner.store.files import make_private_dir, make_private_dir_within, write_private
from runner.store.ids import is_run_id_of, new_run_id
from runner.store.records import RunRecord, iso, now
from runner.store.untrusted import (
    DamagedError as DamagedError, checked_run_id, escaped, inside, is_run_id, is_time, record_problem, row_problem,
)

# The one definition of "newest": run ids sort by start time (see new_run_id), so every rule that
# needs the newest or the last run (`last`, `--keep`, history order, `show`) orders by id.
NEWEST_FIRST = "id DESC"
FINISHED = ("succeeded", "failed", "canceled", "timed_out", "aborted", "damaged")
LIVE = ("running", "waiting")
UNFINISHED = ("queued", *LIVE)  # never chained, never pruned

# The schema version this code writes; `runbook db upgrade` brings an older database up to it.
SCHEMA_VERSION = 5


class StoreUnavailableError(RunbookError):
    """The shared database cannot be reached: nothing was run."""

    exit_code = ExitCode.STORE_UNAVAILABLE


class SealedRunError(RunbookError):
    """A finished run the chain has sealed, asked to be written with other content: refused."""


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
LEGACY_MISMATCH = "its row, steps, sign-offs or log no longer match the record"


def history_row(values: tuple[Any, ...]) -> HistoryRow:
    """A history row as the store hands it out: as it is, or (see store/untrusted.py) `damaged`, its id
    and runbook escaped, nothing else of it kept."""
    row = dict(zip(HistoryRow.__dataclass_fields__, values))
    problem = row_problem(row)
    if problem is None:
        return HistoryRow(*values)
    return HistoryRow(escaped(row["id"]), escaped(row["runbook"]), "?", "damaged", None, "", "", "", "", 0,
                      row["started_at"] if is_time(row["started_at"]) else 0.0, None, "",
                      f"its row is damaged ({problem}): it is shown as damaged and never read")


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
    byte_order = ""  # how ORDER BY compares run ids byte by byte (as Python does); PostgreSQL: COLLATE "C"

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
        """The run's folder; DamagedError for anything but a run id (ids come from rows and files)."""
        return inside(self.runs_dir, checked_run_id(run_id))

    def private_dir(self, path: Path) -> Path:
        """A folder of the state dir made private; refused when it would lead outside it."""
        return make_private_dir_within(self.root, path)

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
        """run.json first (the source of truth), then its history rows, each atomic; a sealed run with
        other content is refused before run.json is touched."""
        self.require_writable()
        self._sealed_as(record)
        folder = self.private_dir(self.run_dir(record.id))
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
        return sorted(p.name for p in pending.iterdir() if is_run_id(p.name)) if pending.is_dir() else []

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
        rows = [history_row(row) for row in self.query(sql, (*args, limit))]
        return [r for r in rows if r.status == status] if status else rows  # a damaged row has no other status

    def cron_runs(self, runbook: str, limit: int = 500) -> list[HistoryRow]:
        """The runbook's cron-triggered runs, newest first."""
        sql = (f"SELECT {HISTORY_COLUMNS} FROM runs WHERE runbook = ? AND trigger = 'cron' "
               f"ORDER BY {NEWEST_FIRST} LIMIT ?")
        return [history_row(row) for row in self.query(sql, (runbook, limit))]

    def waiting_runs(self, lock: str, exclude: str = "") -> list[str]:
        """Runs paused mid-procedure that hold `lock` until resumed or canceled (a rehearsal holds none)."""
        rows = self.query("SELECT id FROM runs WHERE lock_name = ? AND status = 'waiting' AND check_mode = 0 "
                          "AND id != ? ORDER BY id", (lock, exclude))
        return [str(r[0]) for r in rows if is_run_id(r[0])]  # a damaged row holds nothing

    def resolve(self, ref: str) -> str:
        """A run id from an id, a unique prefix of one, or `last`."""
        self.reap_dead_runs()
        if ref == "last":
            rows = self.query(f"SELECT id FROM runs ORDER BY {NEWEST_FIRST} LIMIT 1")
            if not rows:
                raise UsageError("no runs recorded yet")
            return checked_run_id(rows[0][0])
        if not re.fullmatch(r"[A-Za-z0-9._-]+", ref):
            raise UsageError(f"{ref!r} is not a run id")
        rows = self.query("SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 3", (ref, ref + "~"))
        if not rows:
            raise UsageError(f"no run matches {ref!r} (see: runbook history)")
        if len(rows) > 1 and rows[0][0] != ref:
            listed = ", ".join(escaped(r[0]) for r in rows[:2])
            raise UsageError(f"{ref!r} matches several runs ({listed}, ...): give more of the id")
        return checked_run_id(rows[0][0])

    def newest_per_runbook(self) -> list[tuple[str, str, float, str]]:
        """(id, runbook, started_at, status) of every run, each runbook's newest first (for prune --keep)."""
        rows = self.query(f"SELECT id, runbook, started_at, status FROM runs ORDER BY runbook, {NEWEST_FIRST}")
        return [(str(a), str(b), float(c), str(d)) for a, b, c, d in rows if is_run_id(a)]

    # -- liveness ------------------------------------------------------------------------------
    def reap_dead_runs(self) -> list[str]:
        """Mark `running` runs whose controller is gone as `aborted`; returns their ids."""
        rows = self.query("SELECT id, pid, pid_start, hostname FROM runs WHERE status = 'running'")
        reaped = []
        for run_id, pid, pid_start, hostname in rows:
            if not is_run_id(run_id):
                continue  # a damaged row: never swept, never read
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

    def rebuild(self) -> tuple[int, int, list[str]]:
        """Index every run folder again from its run.json; (folders, damaged ones, refusals: finished runs
        whose run.json differs from what the chain sealed, left as the chain has them)."""
        damaged = 0
        refused: list[str] = []
        ids = [i for i in folder_ids(self.runs_dir) if (self.run_dir(i) / "run.json").exists()]
        for run_id in ids:
            try:
                record = self.load_local(run_id)
            except DamagedError:
                damaged += 1  # load_local has marked its row damaged
                continue
            try:
                self._index(record, raw=raw_record(self.run_dir(run_id)))
            except SealedRunError as exc:
                refused.append(str(exc))
        return len(ids), damaged, refused

    def mark_damaged(self, run_id: str, why: str) -> None:
        started = stamp_time(run_id) or (self.run_dir(run_id) / "run.json").stat().st_mtime
        self.execute("INSERT INTO runs (id, runbook, version, status, started_at, message) VALUES (?,?,?,?,?,?) "
                     "ON CONFLICT (id) DO UPDATE SET status = 'damaged', message = excluded.message",
                     (run_id, runbook_of(run_id), "?", "damaged", started, why))

    # -- removing ------------------------------------------------------------------------------
    def prune_runs(self, run_ids: list[str], entry: dict[str, Any]) -> None:
        """Write the prune record (`entry`: removed ids, by whom, when, signature) into the chain, then
        remove those runs' rows and folders: the chain says what went and who removed it."""
        if not run_ids:
            return
        self._chain_insert("", prune_digest(entry), PRUNE, canonical(entry).decode())
        self._delete_rows(run_ids)
        for run_id in run_ids:
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def _delete_rows(self, run_ids: list[str]) -> None:
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for run_id in run_ids:
            statements += [(f"DELETE FROM {table} WHERE {column} = ?", (run_id,)) for table, column in
                           (("host_results", "run_id"), ("steps", "run_id"), ("step_logs", "run_id"), ("runs", "id"))]
        self.execute_many(statements)

    def rows_without_folder(self, before: float) -> list[str]:
        """Finished runs older than `before` whose folder is gone (local store only: prune removes them)."""
        if self.backend != "sqlite":
            return []
        rows = self.query("SELECT id FROM runs WHERE started_at < ? AND status NOT IN ('queued', 'running', 'waiting')",
                          (before,))
        return [str(r[0]) for r in rows if is_run_id(r[0]) and not self.run_dir(r[0]).exists()]

    # -- the tamper-evident chain (runner/store/chain.py) --------------------------------------
    def _stored_record_text(self, run_id: str, column: str | None) -> str | None:
        """The record as the store holds it: run.json here; the database's `record` column on PostgreSQL."""
        try:
            return (self.run_dir(run_id) / "run.json").read_text(encoding="utf-8")
        except OSError:
            return None

    def _stored_logs(self, record: RunRecord) -> list[list[Any]]:
        """[index, stdout sha256, events sha256] of each step with a log, as the store holds them."""
        return folder_logs(record, self.run_dir(record.id))

    def _latest_link(self, run_id: str) -> Link | None:
        rows = self.query("SELECT seq, run_id, digest, prev_hash, hash, kind, body FROM chain "
                          "WHERE run_id = ? AND kind = 'run' ORDER BY seq DESC LIMIT 1", (run_id,))
        return Link(*rows[0]) if rows else None

    def _sealed_as(self, record: RunRecord, raw: dict[str, Any] | None = None) -> bool:
        """True when the chain holds this run with this very content (`raw`: the document as read from a
        run.json, else the record's own); SealedRunError when it holds other content; False when unsealed."""
        link = self._latest_link(record.id)
        if link is None:
            return False
        doc = raw if raw is not None else json.loads(json.dumps(record.to_dict()))
        if link.logs is None:
            same = self._legacy_digest(record.id) == link.digest
        else:
            sealed = {int(i): (o, e) for i, o, e in link.logs}
            new = folder_logs(record, self.run_dir(record.id))
            same = run_digest(doc, link.logs) == link.digest and all(
                sealed[i] == (o, e) for i, o, e in new if i in sealed)
        if not same:
            raise SealedRunError(f"run {record.id}: finished and sealed in the chain, and what was to be written "
                                 "differs from the sealed record: refused, nothing was changed")
        return True

    def chain_append(self, run_id: str) -> bool:
        """Seal a finished run as the store holds it (its record and logs) at the end of the chain; False
        when the store holds no readable record of it."""
        rows = self.query("SELECT record FROM runs WHERE id = ?", (run_id,))
        text = self._stored_record_text(run_id, rows[0][0] if rows else None)
        try:
            record = parse_record(run_id, text or "", "the store")
        except DamagedError:
            return False
        logs = sorted(self._stored_logs(record))
        self._chain_insert(run_id, run_digest(json.loads(text or ""), logs), RUN, json.dumps(logs))
        return True

    @abstractmethod
    def _chain_insert(self, run_id: str, digest: str, kind: str, body: str) -> None:
        """Append a link after the newest one, under a lock that serializes writers."""

    def verify(self) -> tuple[Walk, list[Finding]]:
        """Walk the chain, then every run the store holds against its link: (the walk, what no longer
        matches, in chain order). Streams the rows: one pass over each table."""
        found = walk(self.iter_query("SELECT seq, run_id, digest, prev_hash, hash, kind, body FROM chain ORDER BY seq"))
        findings = list(found.findings)
        seen: set[str] = set()
        steps = Groups(self.iter_query(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps ORDER BY run_id{self.byte_order}, idx"))
        hosts = Groups(self.iter_query(f"SELECT {', '.join(HOST_COLUMNS)} FROM host_results "
                                       f"ORDER BY run_id{self.byte_order}, step_idx"))
        logs = self._log_groups()
        for row in self.iter_query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY id{self.byte_order}"):
            run_id = str(row[0])
            seen.add(run_id)
            link = found.latest.get(run_id)
            if link is None and row[3] in LIVE:
                continue
            why = self._check_run(row, link[1] if link else None, steps.take(run_id), hosts.take(run_id),
                                  logs.take(run_id) if logs else None)
            if why:
                findings.append(Finding(link[0] if link else found.length, run_id, why))
        for run_id, (position, _link) in found.latest.items():
            if run_id not in seen and found.removed.get(run_id, -1) < position:
                findings.append(Finding(position, run_id, "its history row was deleted without a prune record"))
        return found, sorted(findings, key=lambda f: f.position)

    def _log_groups(self) -> Groups | None:
        """The logs' sha256s by run, streamed from the database (None: read from the run folders)."""
        return None

    def _check_run(self, row: tuple[Any, ...], link: Link | None, steps: list[tuple[Any, ...]],
                   hosts: list[tuple[Any, ...]], logs: list[tuple[Any, ...]] | None) -> str:
        run_id = str(row[0])
        text = self._stored_record_text(run_id, row[-1])
        try:
            record = parse_record(run_id, text or "", "the store")
        except DamagedError:
            return "its record is missing or damaged"
        if link is None:
            return ("finished but not in the chain: written outside runbook, or recorded before the chain "
                    "(`runbook db upgrade` seals those)")
        if record.status in LIVE:
            return "a finished run's record was changed back to live"
        if link.logs is None:
            return "" if self._legacy_digest(run_id) == link.digest else LEGACY_MISMATCH
        held = sorted([int(i), o, e] for _, i, o, e in logs) if logs is not None else sorted(self._stored_logs(record))
        if run_digest(json.loads(text or ""), link.logs) != link.digest:
            return "its record differs from the one sealed in the chain"
        if held != sorted(link.logs):
            return "a step's log or events differ from the ones sealed in the chain"
        if not same_rows(row, steps, hosts, index_rows(record)):
            return "its history row, steps or host results no longer match its record"
        return ""

    def reseal(self) -> tuple[int, list[str]]:
        """Seal with the full digest the runs linked before it (or never linked) whose content still
        matches; (sealed, refused: runs whose rows no longer match their old link)."""
        found = walk(self.query("SELECT seq, run_id, digest, prev_hash, hash, kind, body FROM chain ORDER BY seq"))
        sealed, refused = 0, []
        finished = [str(r[0]) for r in self.query(f"SELECT id FROM runs WHERE status IN ({', '.join('?' * len(FINISHED))}) "
                                                  "ORDER BY id", FINISHED)]
        for run_id in finished:
            link = found.latest.get(run_id)
            if link is not None and link[1].body is not None:
                continue
            if link is not None and self._legacy_digest(run_id) != link[1].digest:
                refused.append(run_id)
                continue
            sealed += self.chain_append(run_id)
        return sealed, refused

    def _legacy_digest(self, run_id: str) -> str | None:
        """The digest links from before schema 4 sealed (row, steps, hosts, sign-offs, logs), to check them."""
        rows = self.query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        run = dict(zip(RUN_COLUMNS, rows[0]))
        steps = self.query(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE run_id = ? ORDER BY idx", (run_id,))
        hosts = self.query(f"SELECT {', '.join(HOST_COLUMNS)} FROM host_results WHERE run_id = ? "
                           "ORDER BY step_idx, host", (run_id,))
        try:
            record: RunRecord | None = parse_record(run_id, self._stored_record_text(run_id, run.get("record")) or "",
                                                    "the store")
        except DamagedError:
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

    # -- the backend ---------------------------------------------------------------------------
    def _index(self, record: RunRecord, all_logs: bool = False, raw: dict[str, Any] | None = None) -> None:
        """Write the record's rows, then link it to the chain once finished. A run the chain has sealed is
        never written again: the same content is left as it is, other content is refused (SealedRunError)."""
        if self._sealed_as(record, raw):
            if not self.query("SELECT 1 FROM runs WHERE id = ?", (record.id,)):
                self._write_rows(record, all_logs)  # its rows were lost: put the sealed content back
            return
        self._write_rows(record, all_logs)
        if record.status not in UNFINISHED:  # a queued run is not finished either
            self.chain_append(record.id)

    @abstractmethod
    def _write_rows(self, record: RunRecord, all_logs: bool) -> None:
        """Write the record's rows (runs, steps, host_results; logs on the shared store) in one transaction."""

    def iter_query(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a read query one by one (a backend streams them)."""
        return iter(self.query(sql, args))

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


def stamp_time(run_id: str) -> float | None:
    """The start time a run id carries (`20261129T031500.123456Z-...`, or whole seconds for older ids)."""
    import calendar

    try:
        whole, _, fraction = run_id.split("-", 1)[0].rstrip("Z").partition(".")
        return calendar.timegm(time.strptime(whole, "%Y%m%dT%H%M%S")) + float(f"0.{fraction or 0}")
    except ValueError:
        return None


def parse_record(run_id: str, text: str, where: str) -> RunRecord:
    """The record of run `run_id` from its stored text; DamagedError unless it is that run's and every
    name, host and worker in it has its shape (store/untrusted.py)."""
    try:
        record = RunRecord.from_dict(json.loads(text))
        problem = record_problem(checked_run_id(run_id), record)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = exc.__class__.__name__
    if problem is not None:
        raise DamagedError(f"run {escaped(run_id)}: its record {where} is damaged ({problem}): "
                           "it is shown as damaged; the rest of the history is intact")
    return record


def folder_ids(runs_dir: Path) -> list[str]:
    if not runs_dir.is_dir():
        return []
    return sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and is_run_id(p.name))


def writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def index_rows(record: RunRecord, record_text: str | None = None) -> tuple[tuple[Any, ...], list[tuple[Any, ...]],
                                                                          list[tuple[Any, ...]]]:
    """The rows a record is indexed as: (runs row in RUN_COLUMNS order, steps rows, host_results rows)."""
    failed = sorted({h for s in record.steps for h in s.failed_hosts() + s.unreachable_hosts()})
    run = (record.id, record.runbook, record.version, record.status, record.exit_code, record.operator,
           record.trigger, record.inventory, record.limit, int(record.check), record.started_at,
           record.ended_at, record.pid, record.pid_start, record.hostname, ",".join(failed), record.message,
           record.lock, record.runbook_sha256, record_text)
    steps = [(record.id, s.index, s.name, s.type, s.status, s.started_at, s.ended_at, s.rc, *s.counts().values())
             for s in record.steps]
    hosts = [(record.id, s.index, h, r.ok, r.changed, r.failed, r.unreachable, r.skipped, r.message)
             for s in record.steps for h, r in s.hosts.items()]
    return run, steps, hosts


def same_rows(run: tuple[Any, ...], steps: list[tuple[Any, ...]], hosts: list[tuple[Any, ...]],
              expected: tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]) -> bool:
    """Whether stored rows say what the record says (the record column aside; times to the microsecond)."""
    want_run, want_steps, want_hosts = expected
    return (_same(run[:-1], want_run[:-1])
            and len(steps) == len(want_steps)
            and all(_same(a, b) for a, b in zip(sorted(steps, key=lambda r: r[1]), sorted(want_steps, key=lambda r: r[1])))
            and sorted(tuple(h) for h in hosts) == sorted(want_hosts))


def _same(stored: tuple[Any, ...], wanted: tuple[Any, ...]) -> bool:
    if len(stored) != len(wanted):
        return False
    for a, b in zip(stored, wanted):
        if isinstance(a, float) or isinstance(b, float):
            if a is None or b is None or abs(float(a) - float(b)) > 1e-5:
                return False
        elif a != b:
            return False
    return True


def legacy_prune_link(removed: list[str], previous: str) -> tuple[str, str, str, str, str]:
    """(digest, prev_hash, hash, kind, body) of the prune record that carries, once, what schema 3 noted
    in its `pruned` table (the migration to schema 4 writes it; nothing reads that table afterwards)."""
    entry = {"removed": removed, "by": "schema 4 migration (pruned before it)", "host": socket.gethostname(),
             "at": iso(now()), "signer": ""}
    digest = prune_digest(entry)
    return digest, previous, chain_hash(previous, digest), PRUNE, canonical(entry).decode()


def raw_record(run_dir: Path) -> dict[str, Any] | None:
    """run.json as written (compared as such: a record parsed and written again may differ in rounding
    or in fields this version does not know)."""
    try:
        doc = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def folder_logs(record: RunRecord, run_dir: Path) -> list[list[Any]]:
    """[index, stdout sha256, events sha256] of each step whose folder holds a log."""
    logs = []
    for step in record.steps:
        folder = step.folder(run_dir)
        stdout, events = _read(folder / "stdout"), _read(folder / "events.jsonl.gz")
        if stdout is not None or events is not None:
            logs.append([step.index, text_sha(stdout or b""), bytes_sha(events)])
    return logs


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
