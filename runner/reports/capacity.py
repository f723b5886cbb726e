"""Capacity trends from the figures capacity-report keeps in each run's record (step data
`capacity.<host>.filesystems.<mount>`): per host and filesystem the current use, the growth per day
(a least-squares line through the window's samples) and the date the filesystem is full at that rate."""
from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from runner.errors import RunbookError
from runner.store.records import RunRecord, iso
from runner.store.base import Store

CAPACITY_RUNBOOK = "capacity-report"
FILL_SOON_DAYS = 30
_DAY = 86400.0


@dataclass(frozen=True)
class Sample:
    at: float
    used_mib: float
    size_mib: float
    used_pct: float | None = None  # as measured (df: used / (used + available), rounded up), when recorded


@dataclass
class Trend:
    host: str
    mount: str
    fstype: str = ""
    samples: list[Sample] = field(default_factory=list)

    @property
    def current(self) -> Sample:
        return self.samples[-1]

    @property
    def used_pct(self) -> float:
        """The use the run measured; else used / size, rounded up as df does (1% used never reads 0%)."""
        if self.current.used_pct is not None:
            return self.current.used_pct
        return math.ceil(100.0 * self.current.used_mib / self.current.size_mib) if self.current.size_mib else 0.0

    @property
    def growth_mib_per_day(self) -> float | None:
        """The slope of the least-squares line of used MiB over days; None with fewer than two times."""
        if len({s.at for s in self.samples}) < 2:
            return None
        days = [(s.at - self.samples[0].at) / _DAY for s in self.samples]
        slope, _ = statistics.linear_regression(days, [s.used_mib for s in self.samples])
        return float(slope)

    @property
    def full_at(self) -> float | None:
        """When the filesystem is full if it keeps growing at that rate, from its current use."""
        growth = self.growth_mib_per_day
        free = self.current.size_mib - self.current.used_mib
        if free <= 0:
            return self.current.at
        if growth is None or growth <= 0:
            return None
        return self.current.at + free / growth * _DAY

    @property
    def full_on(self) -> str | None:
        full = self.full_at
        return None if full is None else dt.datetime.fromtimestamp(full, dt.timezone.utc).date().isoformat()

    def days_left(self, now: float) -> float | None:
        full = self.full_at
        return None if full is None else max(0.0, (full - now) / _DAY)

    def fills_soon(self, now: float, days: int = FILL_SOON_DAYS) -> bool:
        left = self.days_left(now)
        return left is not None and left <= days

    def percent_series(self) -> list[tuple[float, float]]:
        return [(s.at, 100.0 * s.used_mib / s.size_mib if s.size_mib else 0.0) for s in self.samples]

    def to_dict(self, now: float) -> dict[str, Any]:
        growth, left = self.growth_mib_per_day, self.days_left(now)
        return {
            "host": self.host, "mount": self.mount, "fstype": self.fstype,
            "size_mib": round(self.current.size_mib, 1), "used_mib": round(self.current.used_mib, 1),
            "used_pct": round(self.used_pct, 1), "measured_at": iso(self.current.at), "samples": len(self.samples),
            "growth_mib_per_day": None if growth is None else round(growth, 2),
            "full_on": self.full_on, "days_left": None if left is None else round(left, 1),
            "fills_soon": self.fills_soon(now),
        }


@dataclass
class Forecast:
    since: float
    until: float
    runs: int
    trends: list[Trend]

    def hosts(self) -> list[str]:
        return sorted({t.host for t in self.trends})

    def of_host(self, host: str) -> list[Trend]:
        return [t for t in self.trends if t.host == host]

    def filling(self) -> list[Trend]:
        return [t for t in self.trends if t.fills_soon(self.until)]

    def to_dict(self) -> dict[str, Any]:
        return {"since": iso(self.since), "until": iso(self.until), "runbook": CAPACITY_RUNBOOK, "runs": self.runs,
                "fill_soon_days": FILL_SOON_DAYS, "filesystems": [t.to_dict(self.until) for t in self.trends]}


def forecast(store: Store, since: float, until: float, host: str | None = None) -> Forecast:
    """Trends from the capacity-report runs started in [since, until), check mode included (it measures
    the same), failed runs included (their figures are recorded too)."""
    ids = [r[0] for r in store.query(
        "SELECT id FROM runs WHERE runbook = ? AND started_at >= ? AND started_at < ? ORDER BY started_at, id",
        (CAPACITY_RUNBOOK, since, until))]
    trends: dict[tuple[str, str], Trend] = {}
    for run_id in ids:
        try:
            record = store.load(run_id)
        except RunbookError:
            continue  # a row whose folder was pruned
        for name, mount, fstype, sample in _samples(record):
            if host is None or name == host:
                trend = trends.setdefault((name, mount), Trend(name, mount))
                trend.fstype = fstype or trend.fstype
                trend.samples.append(sample)
    for trend in trends.values():
        trend.samples.sort(key=lambda s: s.at)
    return Forecast(since, until, len(ids), [trends[k] for k in sorted(trends)])


def _samples(record: RunRecord) -> list[tuple[str, str, str, Sample]]:
    """(host, mount, fstype, sample) for every filesystem figure of the run; malformed figures are skipped."""
    found = []
    for step in record.steps:
        capacity = step.data.get("capacity") if isinstance(step.data, dict) else None
        if not isinstance(capacity, dict):
            continue
        at = step.ended_at or step.started_at or record.started_at
        for host, figures in capacity.items():
            filesystems = figures.get("filesystems") if isinstance(figures, dict) else None
            for mount, fs in (filesystems or {}).items() if isinstance(filesystems, dict) else ():
                try:
                    sample = Sample(at, float(fs["used_mib"]), float(fs["size_mib"]), _percent(fs.get("used_pct")))
                except (KeyError, TypeError, ValueError):
                    continue
                found.append((str(host), str(mount), str(fs.get("fstype", "")), sample))
    return found


def _percent(value: Any) -> float | None:
    """A recorded percentage (0 to 100), or None when it is missing or not one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0.0 <= number <= 100.0 else None
