"""`runbook serve` and `runbook alerts`: the service (runner/serve/, imported only here) and what it received."""
from __future__ import annotations

import sys
import time

from runner.definition.durations import parse_duration
from runner.definition.workspace import Workspace
from runner.errors import UsageError
from runner.output import emit, emit_json, table
from runner.store.backends import open_store
from runner.store.records import iso
from runner.times import human_time


def serve(ws: Workspace, listen: str | None) -> int:
    from runner.serve.service import serve as run_service  # Starlette, uvicorn, prometheus-client: only here

    return run_service(ws, listen)


def alerts(ws: Workspace, since: str | None, limit: int, as_json: bool) -> int:
    try:
        since_ts = time.time() - parse_duration(since) if since else 0.0
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    rows = open_store(ws).alerts_since(since_ts, limit)
    if as_json:
        emit_json([{"hook": r.hook, "fingerprint": r.fingerprint, "status": r.status, "startsAt": r.starts_at,
                    "labels": r.labels, "annotations": r.annotations, "generatorURL": r.generator_url,
                    "received_at": iso(r.received_at), "outcome": r.outcome, "run": r.run_id or None,
                    "reason": r.reason or None} for r in rows])
        return 0
    if not rows:
        print("no alerts received" + (" in that time" if since else ""), file=sys.stderr)
        return 0
    emit(table(("RECEIVED", "HOOK", "ALERT", "FINGERPRINT", "STATUS", "OUTCOME", "RUN / REASON"),
               [(human_time(r.received_at), r.hook, r.labels.get("alertname", "-"), r.fingerprint, r.status,
                 r.outcome, r.run_id or r.reason) for r in rows]))
    return 0
