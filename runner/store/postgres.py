"""The team's backend: PostgreSQL through psycopg 3. The database holds every run's record, its rows, its
scrubbed logs and compressed events, so any machine can read them; the local run folder stays as the cache
and the fallback. Exclusive runs take a session-level advisory lock (the server frees it when the holder's
connection dies), and each live run holds one more on its own id, which is how other machines tell a live
run from a dead one.

When the database goes away mid-run the run goes on: run.json stays the source of truth, the run is listed
in `pending/`, and it is uploaded (upserted by id: never twice) as soon as the database answers again, or
by `runbook db sync`."""
from __future__ import annotations

import hashlib
import json
import sys
import time
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import psycopg

from runner.errors import LockedError, RunbookError
from runner.store.base import (
    RUN_COLUMNS, SCHEMA_VERSION, DamagedError, SealedRunError, Store, StoreUnavailableError, folder_ids,
    index_rows, legacy_prune_link, parse_record, process_start_time, raw_record,
)
from runner.store.chain import Finding, Groups, Walk, chain_hash
from runner.store.alerts import POSTGRES_TABLES
from runner.store.files import make_private_dir, write_private
from runner.store.records import RunRecord
from runner.store.untrusted import checked_run_id

def _guard(name: str, allowed: str, refusal: str, run_id: str) -> str:
    """A trigger function refusing UPDATE and DELETE unless `allowed`, the role owns the table, or the
    update changes nothing."""
    return f"""CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF {allowed}
                OR current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID)
                OR (TG_OP = 'UPDATE' AND NEW IS NOT DISTINCT FROM OLD) THEN
               IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
               RETURN NEW;
             END IF;
             RAISE EXCEPTION '{refusal}', {run_id}, current_user USING ERRCODE = 'insufficient_privilege';
           END $$"""


# Versioned migrations, applied in order inside one transaction by `runbook db upgrade` (and by any
# command that finds an older schema). Version 1 is the schema of the first release.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE runs (
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
               started_at DOUBLE PRECISION NOT NULL,
               ended_at DOUBLE PRECISION,
               pid INTEGER,
               pid_start BIGINT,
               hostname TEXT,
               hosts_failed TEXT NOT NULL DEFAULT '',
               message TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE steps (
               run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
               idx INTEGER NOT NULL,
               name TEXT NOT NULL,
               type TEXT NOT NULL,
               status TEXT NOT NULL,
               started_at DOUBLE PRECISION,
               ended_at DOUBLE PRECISION,
               rc INTEGER,
               ok INTEGER NOT NULL DEFAULT 0,
               changed INTEGER NOT NULL DEFAULT 0,
               failed INTEGER NOT NULL DEFAULT 0,
               unreachable INTEGER NOT NULL DEFAULT 0,
               skipped INTEGER NOT NULL DEFAULT 0,
               PRIMARY KEY (run_id, idx))""",
        """CREATE TABLE host_results (
               run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
               step_idx INTEGER NOT NULL,
               host TEXT NOT NULL,
               ok INTEGER NOT NULL,
               changed INTEGER NOT NULL,
               failed INTEGER NOT NULL,
               unreachable INTEGER NOT NULL,
               skipped INTEGER NOT NULL,
               message TEXT NOT NULL DEFAULT '',
               PRIMARY KEY (run_id, step_idx, host))""",
        "CREATE INDEX runs_by_start ON runs (started_at)",
        "CREATE INDEX host_results_by_host ON host_results (host)",
    ],
    2: [
        "ALTER TABLE runs ADD COLUMN lock_name TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX runs_by_lock ON runs (lock_name, status)",
    ],
    3: [
        "ALTER TABLE runs ADD COLUMN runbook_sha256 TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE runs ADD COLUMN record TEXT",  # the run.json document (secrets as ***)
        "CREATE INDEX runs_by_runbook_id ON runs (runbook, id)",
        "CREATE INDEX runs_by_status_id ON runs (status, id)",
        """CREATE TABLE step_logs (
               run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
               step_idx INTEGER NOT NULL,
               stdout TEXT NOT NULL,
               events BYTEA,
               PRIMARY KEY (run_id, step_idx))""",
        """CREATE TABLE chain (
               seq BIGSERIAL PRIMARY KEY,
               run_id TEXT NOT NULL,
               digest TEXT NOT NULL,
               prev_hash TEXT NOT NULL,
               hash TEXT NOT NULL,
               linked_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX chain_by_run ON chain (run_id)",
        "CREATE TABLE pruned (run_id TEXT PRIMARY KEY, pruned_at DOUBLE PRECISION NOT NULL)",
        """CREATE TABLE lock_holders (
               name TEXT PRIMARY KEY, run_id TEXT NOT NULL, operator TEXT NOT NULL, hostname TEXT NOT NULL,
               acquired_at DOUBLE PRECISION NOT NULL)""",
    ],
    # The chain seals whole records and holds prune records (runner/store/chain.py); `pruned` is unused.
    # Guards: a role other than the tables' owner cannot change or delete a finished run or a sealed
    # run's rows; it prunes only through runbook_prune_rows, which removes runs a prune record lists.
    4: [
        "ALTER TABLE chain ADD COLUMN kind TEXT NOT NULL DEFAULT 'run'",
        "ALTER TABLE chain ADD COLUMN body TEXT",
        _guard("runbook_guard_run", "OLD.status NOT IN ('succeeded', 'failed', 'canceled', 'timed_out', 'aborted', "
               "'damaged')", "run % is finished: its record cannot be changed or removed by role %", "OLD.id"),
        """CREATE TRIGGER runs_finished_guard BEFORE UPDATE OR DELETE ON runs
           FOR EACH ROW EXECUTE FUNCTION runbook_guard_run()""",
        _guard("runbook_guard_sealed", "NOT EXISTS (SELECT 1 FROM chain WHERE run_id = OLD.run_id AND kind = 'run')",
               "run % is sealed in the chain: its rows cannot be changed or removed by role %", "OLD.run_id"),
        *(f"""CREATE TRIGGER {table}_sealed_guard BEFORE UPDATE OR DELETE ON {table}
              FOR EACH ROW EXECUTE FUNCTION runbook_guard_sealed()""" for table in ("steps", "host_results", "step_logs")),
        """CREATE OR REPLACE FUNCTION runbook_prune_rows(ids TEXT[]) RETURNS INTEGER
           LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
           DECLARE
             listed TEXT[];
             removed INTEGER;
           BEGIN
             SELECT coalesce(array_agg(DISTINCT r.id), '{}') INTO listed
               FROM chain c CROSS JOIN LATERAL jsonb_array_elements_text(c.body::jsonb -> 'removed') AS r(id)
               WHERE c.kind = 'prune' AND r.id = ANY(ids);
             DELETE FROM host_results WHERE run_id = ANY(listed);
             DELETE FROM steps WHERE run_id = ANY(listed);
             DELETE FROM step_logs WHERE run_id = ANY(listed);
             DELETE FROM runs WHERE id = ANY(listed);
             GET DIAGNOSTICS removed = ROW_COUNT;
             RETURN removed;
           END $$""",
    ],
    5: POSTGRES_TABLES,  # runbook serve: alerts, their keys, the queue
}

# What the role runbook runs as needs when another role owns the tables (README: "A role that cannot
# rewrite the record"): `runbook db upgrade --grant ROLE`, run as the owner.
APP_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON runs TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON steps, host_results, step_logs, lock_holders TO {role}",
    "GRANT SELECT, INSERT ON chain TO {role}",
    "GRANT USAGE ON SEQUENCE chain_seq_seq TO {role}",
    "GRANT SELECT ON schema_version, pruned TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON alerts, alert_keys, queue TO {role}",  # runbook serve
    "GRANT USAGE ON SEQUENCE alerts_seq_seq TO {role}",
    "REVOKE ALL ON FUNCTION runbook_prune_rows(TEXT[]) FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION runbook_prune_rows(TEXT[]) TO {role}",
)
assert max(MIGRATIONS) == SCHEMA_VERSION

# Each step log's sha256s computed by the server, as the chain seals them (runner/store/chain.py: text_sha).
_LOG_HASHES = ("SELECT run_id, step_idx, encode(sha256(convert_to(stdout, 'UTF8')), 'hex'), "
               "encode(sha256(events), 'hex') FROM step_logs")

_RETRY_AFTER = 3.0  # seconds between reconnection attempts while the database is away mid-run


def advisory_key(kind: str, name: str) -> int:
    """A signed 64-bit advisory lock key for ('lock', NAME) or ('run', RUN_ID)."""
    return int.from_bytes(hashlib.sha256(f"runbook:{kind}:{name}".encode()).digest()[:8], "big", signed=True)


def where(url: str) -> str:
    """host:port of the URL, never its password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}"


class PostgresStore(Store):
    backend = "postgresql"
    byte_order = ' COLLATE "C"'
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, state_dir: Path, url: str) -> None:
        super().__init__(state_dir)
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._away_since: float | None = None
        self._last_try = 0.0
        self._live: set[str] = set()  # runs whose liveness lock this session holds
        self._locks: dict[str, str] = {}  # exclusive locks this session holds: name -> run id
        self._uploaded_logs: set[tuple[str, int]] = set()
        self._cursors = 0

    def describe(self) -> str:
        return f"postgresql {where(self.url)}"

    # -- connection ----------------------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                   application_name="runbook")
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot reach the team database at {where(self.url)} ({_reason(exc)}): nothing was done; "
                "check RUNBOOK_DATABASE_URL / [store] url, or see `runbook db sync` once it is back") from None
        self._conn = conn
        if self._version(conn) < SCHEMA_VERSION:
            self._migrate(conn)
        return conn

    def _version(self, conn: psycopg.Connection[Any]) -> int:
        """The newest migration applied; a database from before versioning counts as 1 (or 2 when it
        already has lock_name). Reads pg_tables (an MVCC view), so a migration just committed by another
        process is seen."""
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename IN ('schema_version', 'runs')")}
        if "schema_version" in tables:
            found = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            if found and found[0]:
                return int(found[0])
        if "runs" not in tables:
            return 0
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'runs'")}
        return 2 if "lock_name" in columns else 1

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Apply the missing migrations in one transaction; one process at a time (the others wait, then
        find the work done)."""
        key = advisory_key("schema", "migrate")
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            with conn.transaction():
                current = self._version(conn)  # again, under the lock: another process may have migrated
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                             "applied_at DOUBLE PRECISION NOT NULL)")
                for version in range(1, current + 1):  # what a database from before versioning has
                    conn.execute("INSERT INTO schema_version VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                 (version, time.time()))
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version VALUES (%s, %s)", (version, time.time()))
                if current < 4:
                    _carry_pruned(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def schema_version(self) -> int:
        return self._version(self.conn)

    def upgrade(self) -> tuple[int, int]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"cannot reach the team database at {where(self.url)} ({_reason(exc)})") from None
        try:
            before = self._version(conn)
            if before < SCHEMA_VERSION:
                self._migrate(conn)
            return before, self._version(conn)
        finally:
            conn.close()

    def close(self) -> None:
        self.sync_pending(quiet=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- reading and writing -------------------------------------------------------------------
    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(_pg(sql), args).fetchall()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        self.execute_many([(sql, args)])

    def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        conn = self.conn
        with conn.transaction():
            for sql, args in statements:
                conn.execute(_pg(sql), args)

    def save(self, record: RunRecord) -> None:
        """run.json first, then the database; while it is away the run goes on and is kept pending."""
        self.require_writable()
        folder = self.private_dir(self.run_dir(record.id))
        write_private(folder / "run.json", json.dumps(record.to_dict(), indent=2).encode())
        if self._away_since is not None and time.monotonic() - self._last_try < _RETRY_AFTER:
            self._mark_pending(record.id)
            return
        try:
            self._index(record)
            if self._away_since is not None:
                self._back()
        except (psycopg.OperationalError, StoreUnavailableError) as exc:
            if record.id not in self._live and self._away_since is None:
                raise StoreUnavailableError(f"cannot reach the team database at {where(self.url)} "
                                            f"({_reason(exc)}): nothing was run") from None
            self._gone(record.id, exc)

    def _gone(self, run_id: str, exc: BaseException) -> None:
        if self._away_since is None:
            print(f"runbook: warning: the team database at {where(self.url)} went away ({_reason(exc)}): "
                  f"run {run_id} goes on and is kept locally until it is back (or: runbook db sync)", file=sys.stderr)
            self._away_since = time.monotonic()
        self._last_try = time.monotonic()
        self._mark_pending(run_id)
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _back(self) -> None:
        """Reconnected: hold again the locks the old session held, then upload what waited."""
        self._away_since = None
        conn = self.conn
        for run_id in self._live:
            conn.execute("SELECT pg_advisory_lock(%s)", (advisory_key("run", run_id),))
        for name in self._locks:
            conn.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key("lock", name),))
        print(f"runbook: the team database at {where(self.url)} is back", file=sys.stderr)
        self.sync_pending(quiet=True)

    @property
    def pending_dir(self) -> Path:
        return self.root / "pending"

    def _mark_pending(self, run_id: str) -> None:
        make_private_dir(self.pending_dir)
        (self.pending_dir / run_id).touch(mode=0o600)

    def sync_pending(self, quiet: bool = False) -> tuple[int, list[str]]:
        """Upload every run kept locally while the database was away: (how many, refusals: finished runs
        the chain sealed with other content, never written; their pending mark is dropped)."""
        done, refused = 0, []
        for run_id in self.pending_ids():
            try:
                record = self.load_local(run_id)
            except RunbookError:
                (self.pending_dir / run_id).unlink(missing_ok=True)
                continue
            try:
                self._index(record, all_logs=True, raw=raw_record(self.run_dir(run_id)))
            except SealedRunError as exc:
                refused.append(str(exc))
                if quiet:
                    print(f"runbook: warning: {exc}", file=sys.stderr)
            except (psycopg.Error, StoreUnavailableError):
                if quiet:
                    return done, refused
                raise
            else:
                done += 1
            (self.pending_dir / run_id).unlink(missing_ok=True)
        return done, refused

    def _write_rows(self, record: RunRecord, all_logs: bool) -> None:
        row, steps, hosts = index_rows(record, json.dumps(record.to_dict()))
        updates = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS[1:])
        conn = self.conn
        with conn.transaction():
            conn.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join(['%s'] * len(RUN_COLUMNS))}) "
                         f"ON CONFLICT (id) DO UPDATE SET {updates}", row)
            conn.execute("DELETE FROM steps WHERE run_id = %s", (record.id,))
            conn.execute("DELETE FROM host_results WHERE run_id = %s", (record.id,))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO steps VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", steps)
                cur.executemany("INSERT INTO host_results VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", hosts)
            self._upload_logs(conn, record, all_logs)

    def _upload_logs(self, conn: psycopg.Connection[Any], record: RunRecord, every: bool) -> None:
        """Each ended step's scrubbed stdout and compressed events, once (all of them on a sync)."""
        for step in record.steps:
            key = (record.id, step.index)
            if step.ended_at is None or (key in self._uploaded_logs and not every):
                continue
            folder = step.folder(self.run_dir(record.id))
            if not (folder / "stdout").exists() and not (folder / "events.jsonl.gz").exists():
                continue  # ran on another machine: its logs came from there
            stdout = (folder / "stdout").read_text(encoding="utf-8", errors="replace") \
                if (folder / "stdout").exists() else ""
            events = (folder / "events.jsonl.gz").read_bytes() if (folder / "events.jsonl.gz").exists() else None
            conn.execute("INSERT INTO step_logs VALUES (%s, %s, %s, %s) ON CONFLICT (run_id, step_idx) "
                         "DO UPDATE SET stdout = excluded.stdout, events = excluded.events",
                         (record.id, step.index, stdout, events))
            self._uploaded_logs.add(key)

    def load(self, run_id: str) -> RunRecord:
        """The database's record (it has what other machines did), cached in the local run folder; the
        local record when it is newer (pending upload) or the database is away."""
        if (self.pending_dir / checked_run_id(run_id)).exists():
            return self.load_local(run_id)
        try:
            rows = self.query("SELECT record, status, message FROM runs WHERE id = ?", (run_id,))
        except StoreUnavailableError:
            if (self.run_dir(run_id) / "run.json").exists():
                return self.load_local(run_id)
            raise
        if rows and rows[0][0] is None and rows[0][1] == "damaged":
            raise DamagedError(str(rows[0][2]))  # marked by the machine that found its run.json damaged
        if not rows or rows[0][0] is None:
            return self.load_local(run_id)
        record = parse_record(run_id, str(rows[0][0]), f"in {where(self.url)}")
        self._cache(record, str(rows[0][0]))
        return record

    def resolve(self, ref: str) -> str:
        """As on any store; while the database is away, among the runs this machine holds locally."""
        try:
            return super().resolve(ref)
        except StoreUnavailableError as exc:
            local = [i for i in folder_ids(self.runs_dir) if (self.run_dir(i) / "run.json").exists()]
            chosen = local[-1:] if ref == "last" else [i for i in local if i.startswith(ref)]
            if len(chosen) != 1:
                raise
            print(f"runbook: warning: {exc}; showing the local copy of run {chosen[0]}", file=sys.stderr)
            return chosen[0]

    def _cache(self, record: RunRecord, text: str) -> None:
        """The database's record and ended steps' logs written to the local run folder (final: they are
        uploaded once a step has ended), so reports and logs read them as they read local runs."""
        folder = self.private_dir(self.run_dir(record.id))
        write_private(folder / "run.json", json.dumps(json.loads(text), indent=2).encode())
        logs = self.query("SELECT step_idx, stdout, events FROM step_logs WHERE run_id = ?", (record.id,))
        by_index = {s.index: s for s in record.steps}
        for index, stdout, events in logs:
            step = by_index.get(int(index))
            if step is None:
                continue
            step_dir = self.private_dir(step.folder(folder))
            _refresh(step_dir / "stdout", str(stdout).encode())
            if events is not None:
                _refresh(step_dir / "events.jsonl.gz", bytes(events))

    @contextmanager
    def _row_locked(self, run_id: str) -> Iterator[None]:
        conn = self.conn
        with conn.transaction():  # the row stays locked until the record is saved and committed
            conn.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run_id,))
            yield

    def step_output(self, record: RunRecord, index: int) -> str | None:
        rows = self.query("SELECT stdout FROM step_logs WHERE run_id = ? AND step_idx = ?", (record.id, index))
        return str(rows[0][0]) if rows else super().step_output(record, index)

    def _stored_record_text(self, run_id: str, column: str | None) -> str | None:
        return column

    def mark_damaged(self, run_id: str, why: str) -> None:
        """Only a run the database holds no record of: a damaged local copy leaves the team's row alone."""
        if not self.query("SELECT 1 FROM runs WHERE id = ? AND record IS NOT NULL", (run_id,)):
            super().mark_damaged(run_id, why)

    def _stored_logs(self, record: RunRecord) -> list[list[Any]]:
        rows = self.query(f"{_LOG_HASHES} WHERE run_id = ? ORDER BY step_idx", (record.id,))
        return [[int(i), o, e] for _, i, o, e in rows]

    def _log_groups(self) -> Groups:
        return Groups(self.iter_query(f"{_LOG_HASHES} ORDER BY run_id{self.byte_order}, step_idx"))

    def iter_query(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """A server-side cursor: several stream at once inside verify's transaction."""
        self._cursors += 1
        cursor = self.conn.cursor(name=f"runbook_stream_{self._cursors}")
        cursor.itersize = 5000
        cursor.execute(_pg(sql), args)
        return iter(cursor)

    def verify(self) -> tuple[Walk, list[Finding]]:
        """As on any store, over one snapshot of the database (a repeatable-read transaction)."""
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return super().verify()

    def _delete_rows(self, run_ids: list[str]) -> None:
        """Through runbook_prune_rows: it removes only runs a prune record in the chain lists, and works
        for a role that may not delete finished runs itself."""
        self.conn.execute("SELECT runbook_prune_rows(%s)", (run_ids,))

    def grant(self, role: str) -> None:
        """Grant `role` what runbook needs under the owner of the tables (APP_GRANTS)."""
        from psycopg import sql

        schema = self.conn.execute("SELECT current_schema()").fetchone()
        with self.conn.transaction():
            for statement in APP_GRANTS:
                self.conn.execute(sql.SQL(statement).format(schema=sql.Identifier(str(schema[0] if schema else "public")),
                                                            role=sql.Identifier(role)))

    def _chain_insert(self, run_id: str, digest: str, kind: str, body: str) -> None:
        conn = self.conn
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("chain", "append"),))
            last = conn.execute("SELECT hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
            previous = str(last[0]) if last else ""
            conn.execute("INSERT INTO chain (run_id, digest, prev_hash, hash, linked_at, kind, body) "
                         "VALUES (%s,%s,%s,%s,%s,%s,%s)",
                         (run_id, digest, previous, chain_hash(previous, digest), time.time(), kind, body))

    # -- locks and liveness --------------------------------------------------------------------
    def lock(self, name: str, holder: RunRecord, wait: float | None) -> AbstractContextManager[None]:
        return self._advisory(name, holder, wait)

    @contextmanager
    def _advisory(self, name: str, holder: RunRecord, wait: float | None) -> Iterator[None]:
        key = advisory_key("lock", name)
        deadline = time.monotonic() + (wait or 0)
        while not self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() >= deadline:
                waited = f" after waiting {wait:g}s" if wait else ""
                raise LockedError(f"lock {name!r} is held by {self._holder(name)}{waited}; "
                                  "wait with --wait-lock DUR, or see: runbook history")
            time.sleep(0.5)
        self._locks[name] = holder.id
        try:
            self.execute("INSERT INTO lock_holders VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                         "run_id = excluded.run_id, operator = excluded.operator, hostname = excluded.hostname, "
                         "acquired_at = excluded.acquired_at",
                         (name, holder.id, holder.operator, holder.hostname, time.time()))
            yield
        finally:
            self._locks.pop(name, None)
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except (psycopg.Error, StoreUnavailableError):
                pass  # the session is gone, and the server freed the lock with it

    def _holder(self, name: str) -> str:
        rows = self.query("SELECT run_id, operator, hostname FROM lock_holders WHERE name = ?", (name,))
        if not rows:
            return "another run"
        run_id, operator, hostname = rows[0]
        return f"run {run_id} (operator {operator}, host {hostname})"

    def hold_liveness(self, run_id: str) -> None:
        self.conn.execute("SELECT pg_advisory_lock(%s)", (advisory_key("run", run_id),))
        self._live.add(run_id)

    def _controller_alive(self, run_id: str, pid: int | None, pid_start: int | None, hostname: str | None) -> bool:
        """Alive while some session holds the run's liveness lock, on whichever machine."""
        if run_id in self._live:
            return True
        key = advisory_key("run", run_id)
        got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if got and got[0]:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return False
        return True

    def reap_dead_runs(self) -> list[str]:
        self.sync_pending(quiet=True)
        return super().reap_dead_runs()

    # -- moving a local history in ---------------------------------------------------------------
    def import_state(self, state_dir: Path) -> tuple[int, int, int, list[str]]:
        """Copy every run folder of a local state dir (with its logs) into the database: (copied,
        already there, damaged and skipped, refused: sealed runs whose copy differs). Idempotent: a run
        already in the database is left as it is."""
        runs = state_dir / "runs"
        copied = known = damaged = 0
        refused: list[str] = []
        for run_id in folder_ids(runs):
            path = runs / run_id / "run.json"
            if not path.exists():
                continue
            try:
                record = parse_record(run_id, path.read_text(encoding="utf-8"), str(path))
            except DamagedError:
                damaged += 1
                continue
            there = bool(self.query("SELECT 1 FROM runs WHERE id = ?", (run_id,)))
            try:
                if not there or self._latest_link(run_id) is not None:
                    self._index_from(record, runs / run_id)
            except SealedRunError as exc:
                refused.append(str(exc))
                continue
            known, copied = known + there, copied + (not there)
        return copied, known, damaged, refused

    def _index_from(self, record: RunRecord, folder: Path) -> None:
        """Index a record whose logs live in another state dir's run folder."""
        saved_root = self.root
        self.root = folder.parent.parent
        try:
            self._index(record, all_logs=True, raw=raw_record(folder))
        finally:
            self.root = saved_root


def _carry_pruned(conn: psycopg.Connection[Any]) -> None:
    """Schema 3's `pruned` table into the chain, once, as a prune record (see legacy_prune_link)."""
    removed = sorted(str(r[0]) for r in conn.execute("SELECT run_id FROM pruned"))
    if removed:
        last = conn.execute("SELECT hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
        conn.execute("INSERT INTO chain (run_id, digest, prev_hash, hash, kind, body, linked_at) "
                     "VALUES ('', %s, %s, %s, %s, %s, %s)",
                     (*legacy_prune_link(removed, str(last[0]) if last else ""), time.time()))
    conn.execute("DELETE FROM pruned")


def _refresh(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    write_private(path, data)


def _pg(sql: str) -> str:
    """The shared SQL uses `?` placeholders; psycopg wants `%s`."""
    return sql.replace("?", "%s")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    # libpq's messages name host and port (already said) but never the password: keep the cause only.
    return text.rsplit(" failed: ", 1)[-1] if " failed: " in text else text


__all__ = ["PostgresStore", "advisory_key", "where", "process_start_time"]
