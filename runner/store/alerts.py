"""The service's tables, for both backends: alerts received with their outcome, the key that lets one alert
(hook, fingerprint, startsAt) start at most one run, and the durable queue of runs the service executes.
A mixin of Store: its SQL uses the shared `?` placeholders and runs through query/execute_many."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

# Schema version 5 (both backends): the alert and queue tables.
_TABLES = """
CREATE TABLE IF NOT EXISTS alerts (
    seq {serial} PRIMARY KEY, hook TEXT NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
    starts_at TEXT NOT NULL, labels TEXT NOT NULL, annotations TEXT NOT NULL, generator_url TEXT NOT NULL,
    received_at {real} NOT NULL, outcome TEXT NOT NULL, run_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS alerts_by_received ON alerts (received_at);
CREATE TABLE IF NOT EXISTS alert_keys (
    hook TEXT NOT NULL, fingerprint TEXT NOT NULL, starts_at TEXT NOT NULL, run_id TEXT NOT NULL,
    runbook TEXT NOT NULL, trigger_idx INTEGER NOT NULL, created_at {real} NOT NULL,
    PRIMARY KEY (hook, fingerprint, starts_at));
CREATE INDEX IF NOT EXISTS alert_keys_by_trigger ON alert_keys (runbook, trigger_idx, created_at);
CREATE TABLE IF NOT EXISTS queue (
    run_id TEXT PRIMARY KEY, runbook TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
    claimed_by TEXT NOT NULL DEFAULT '', created_at {real} NOT NULL);
CREATE INDEX IF NOT EXISTS queue_by_state ON queue (state, run_id)
"""
SQLITE_TABLES = [s.strip() for s in _TABLES.format(serial="INTEGER", real="REAL").split(";") if s.strip()]
POSTGRES_TABLES = [s.strip() for s in _TABLES.format(serial="BIGSERIAL", real="DOUBLE PRECISION").split(";") if s.strip()]


@dataclass(frozen=True)
class AlertKey:
    """What makes one alert one: Alertmanager resends a group with the same fingerprint and startsAt."""

    hook: str
    fingerprint: str
    starts_at: str


@dataclass(frozen=True)
class AlertRow:
    hook: str
    fingerprint: str
    status: str
    starts_at: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    received_at: float
    outcome: str
    run_id: str = ""
    reason: str = ""


_ALERT_COLUMNS = ("hook, fingerprint, status, starts_at, labels, annotations, generator_url, received_at, "
                  "outcome, run_id, reason")


class AlertStore:
    """Typed access to the service's tables (see the module docstring)."""

    # PostgreSQL: claim without waiting on a row another instance is claiming.
    skip_locked = ""

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        raise NotImplementedError

    def record_alert(self, row: AlertRow) -> None:
        self.execute_many([(f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (row.hook, row.fingerprint, row.status, row.starts_at, json.dumps(row.labels),
                             json.dumps(row.annotations), row.generator_url, row.received_at, row.outcome,
                             row.run_id, row.reason))])

    def alerts_since(self, since: float, limit: int = 1000) -> list[AlertRow]:
        rows = self.query(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE received_at >= ? ORDER BY seq DESC LIMIT ?",
                          (since, limit))
        return [AlertRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), _strings(r[4]), _strings(r[5]), str(r[6]),
                         float(r[7]), str(r[8]), str(r[9]), str(r[10])) for r in rows]

    def enqueue(self, key: AlertKey, run_id: str, runbook: str, trigger_idx: int, payload: dict[str, Any]) -> str:
        """The run `run_id` queued for the alert `key` in one transaction, unless the alert already has a run:
        returns the run the alert has (`run_id` when it was queued now)."""
        match = (key.hook, key.fingerprint, key.starts_at, run_id)
        self.execute_many([
            ("INSERT INTO alert_keys (hook, fingerprint, starts_at, run_id, runbook, trigger_idx, created_at) "
             "VALUES (?,?,?,?,?,?,?) ON CONFLICT (hook, fingerprint, starts_at) DO NOTHING",
             (*match, runbook, trigger_idx, time.time())),
            ("INSERT INTO queue (run_id, runbook, payload, state, created_at) SELECT ?, ?, ?, 'queued', ? "
             "WHERE EXISTS (SELECT 1 FROM alert_keys WHERE hook = ? AND fingerprint = ? AND starts_at = ? AND run_id = ?)",
             (run_id, runbook, json.dumps(payload), time.time(), *match)),
        ])
        return self.run_of_alert(key) or run_id

    def run_of_alert(self, key: AlertKey) -> str | None:
        rows = self.query("SELECT run_id FROM alert_keys WHERE hook = ? AND fingerprint = ? AND starts_at = ?",
                          (key.hook, key.fingerprint, key.starts_at))
        return str(rows[0][0]) if rows else None

    def runs_started_since(self, runbook: str, trigger_idx: int, since: float) -> int:
        """Runs this trigger queued since `since` (the storm guard counts them)."""
        rows = self.query("SELECT COUNT(*) FROM alert_keys WHERE runbook = ? AND trigger_idx = ? AND created_at >= ?",
                          (runbook, trigger_idx, since))
        return int(rows[0][0])

    def claim_queued(self, instance: str) -> str | None:
        """The oldest queued run, now claimed by `instance` (one statement: no two claim the same run)."""
        rows = self.query("UPDATE queue SET state = 'claimed', claimed_by = ? WHERE run_id = "
                          f"(SELECT run_id FROM queue WHERE state = 'queued' ORDER BY run_id LIMIT 1{self.skip_locked}) "
                          "AND state = 'queued' RETURNING run_id", (instance,))
        return str(rows[0][0]) if rows else None

    def queued_payload(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT payload FROM queue WHERE run_id = ?", (run_id,))
        data = json.loads(rows[0][0]) if rows else None
        return data if isinstance(data, dict) else None

    def set_queue_state(self, run_id: str, state: str, only_from: str | None = None) -> bool:
        """Moves the queue entry to `state` (from `only_from` only, when given); whether it moved."""
        where = " AND state = ?" if only_from else ""
        self.execute_many([(f"UPDATE queue SET state = ? WHERE run_id = ?{where}",
                            (state, run_id, *((only_from,) if only_from else ())))])
        rows = self.query("SELECT state FROM queue WHERE run_id = ?", (run_id,))
        return bool(rows) and rows[0][0] == state

    def claimed_not_started(self) -> list[tuple[str, str]]:
        """(run id, claimed_by) of queue entries claimed whose run has not started (still queued)."""
        rows = self.query("SELECT q.run_id, q.claimed_by FROM queue q LEFT JOIN runs r ON r.id = q.run_id "
                          "WHERE q.state = 'claimed' AND (r.id IS NULL OR r.status = 'queued') ORDER BY q.run_id")
        return [(str(a), str(b)) for a, b in rows]

    def requeue(self, run_ids: list[str]) -> None:
        """Claimed entries back in the queue, for any instance to run."""
        self.execute_many([("UPDATE queue SET state = 'queued', claimed_by = '' WHERE run_id = ? AND state = 'claimed'",
                            (run_id,)) for run_id in run_ids])

    def queue_depth(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM queue WHERE state = 'queued'")[0][0])

    def runs_by_status(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self.query("SELECT status, COUNT(*) FROM runs GROUP BY status")}

    def ping(self) -> None:
        """Raises when the database does not answer."""
        self.query("SELECT 1")


def _strings(text: Any) -> dict[str, str]:
    try:
        data = json.loads(str(text))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
