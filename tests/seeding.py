"""A history made to order: run records written through the real records and Store APIs, with the
times, outcomes and step data a test needs (a trend over weeks cannot wait for weeks)."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from runner.store.records import HostResult, RunRecord, StepRecord
from runner.store.sqlite import Store

_serial = itertools.count(1)


def seed_run(state_dir: Path, runbook: str, started: float, duration: float = 60.0, status: str = "succeeded",
             check: bool = False, steps: list[StepRecord] | None = None) -> str:
    """Save one finished run of `runbook` started at `started`; returns its id."""
    run_id = f"{_stamp(started)}-{runbook}-{next(_serial):04x}"
    record = RunRecord(
        id=run_id, runbook=runbook, version="1.0.0", runbook_sha256="0" * 64, workspace="/seeded",
        inventory="seeded", limit="all", started_at=started, operator="seeder", trigger="cron", check=check,
        ended_at=started + duration, status=status, exit_code=0 if status == "succeeded" else 1,
        steps=steps if steps is not None else [StepRecord(0, "main", "playbook", status, started, started + duration)],
    )
    store = Store(state_dir)
    try:
        store.save(record)
    finally:
        store.close()
    return run_id


def step(name: str, status: str, started: float, hosts: dict[str, HostResult] | None = None,
         data: dict[str, Any] | None = None, index: int = 0, message: str = "") -> StepRecord:
    return StepRecord(index, name, "playbook", status, started, started + 30, rc=0 if status == "succeeded" else 2,
                      attempts=1, hosts=hosts or {}, data=data or {}, message=message)


def _stamp(timestamp: float) -> str:
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp))
