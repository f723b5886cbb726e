from __future__ import annotations

import sys
import time

from runner.definition.durations import parse_duration
from runner.definition.workspace import Workspace
from runner.errors import UsageError
from runner.output import emit, emit_json, table
from runner.reports.capacity import CAPACITY_RUNBOOK, FILL_SOON_DAYS, Trend, forecast
from runner.store.backends import open_store


def capacity(ws: Workspace, host: str | None, since: str, as_json: bool) -> int:
    """Per host and filesystem: current use, growth per day, projected full date; flags what fills soon."""
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    until = time.time()
    result = forecast(open_store(ws), until - window, until, host)
    if as_json:
        emit_json(result.to_dict())
        return 0
    if not result.trends:
        print(f"no {CAPACITY_RUNBOOK} figures in the last {since}" + (f" for host {host}" if host else "")
              + f": run `runbook run {CAPACITY_RUNBOOK}` regularly (e.g. daily) to build the trend", file=sys.stderr)
        return 0
    emit(table(("HOST", "MOUNT", "SIZE", "USED", "USE%", "GROWTH/DAY", "FULL ON", ""),
               [_row(t, until) for t in result.trends]))
    filling = result.filling()
    print(f"{len(filling)} filesystem(s) fill within {FILL_SOON_DAYS} days" if filling
          else f"nothing fills within {FILL_SOON_DAYS} days at the current growth", file=sys.stderr)
    return 0


def _row(trend: Trend, now: float) -> tuple[str, ...]:
    growth = trend.growth_mib_per_day
    left = trend.days_left(now)
    return (trend.host, trend.mount, _size(trend.current.size_mib), _size(trend.current.used_mib),
            f"{trend.used_pct:.0f}%", "-" if growth is None else ("+" if growth >= 0 else "-") + _size(abs(growth)),
            trend.full_on or "-",
            f"FILLS IN {left:.0f} DAYS" if trend.fills_soon(now) and left is not None else "")


def _size(mib: float) -> str:
    for unit, scale in (("TiB", 1024.0 ** 2), ("GiB", 1024.0)):
        if mib >= scale:
            return f"{mib / scale:.1f} {unit}"
    return f"{mib:.1f} MiB"
