from __future__ import annotations

import sys
import time

from runner.definition.durations import format_duration, parse_duration
from runner.errors import UsageError
from runner.output import emit, emit_json, table
from runner.store.records import iso
from runner.times import human_time
from runner.store.backends import open_store
from runner.definition.workspace import Workspace


def history(ws: Workspace, name: str | None, status: str | None, since: str | None, limit: int, as_json: bool) -> int:
    try:
        since_ts = time.time() - parse_duration(since) if since else None
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    rows = open_store(ws).history(name, status, since_ts, min(limit, 2**62))
    if as_json:
        emit_json([{
            "id": r.id, "runbook": r.runbook, "version": r.version, "status": r.status, "exit_code": r.exit_code,
            "operator": r.operator, "trigger": r.trigger, "inventory": r.inventory, "limit": r.limit_pattern,
            "check": bool(r.check_mode), "started_at": iso(r.started_at), "ended_at": iso(r.ended_at),
            "duration": r.duration, "failed_hosts": [h for h in r.hosts_failed.split(",") if h],
            "message": r.message,
        } for r in rows])
        return 0
    if not rows:
        print("no runs recorded" + (" that match" if name or status or since else ""), file=sys.stderr)
        return 0
    emit(table(
        ("RUN", "STATUS", "VERSION", "STARTED", "DURATION", "OPERATOR", "TRIGGER", "FAILED HOSTS"),
        [(r.id, r.status + (" (check)" if r.check_mode else ""), r.version,
          human_time(r.started_at),
          format_duration(r.duration) if r.duration is not None else "-", r.operator, r.trigger, r.hosts_failed)
         for r in rows],
    ))
    return 0
