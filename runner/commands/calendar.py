"""`runbook calendar NAME`: a business-day calendar's days off in one year, with their names."""
from __future__ import annotations

import datetime as dt
import sys

from runner.definition.calendars import WEEKDAYS, Calendar
from runner.definition.workspace import Workspace
from runner.errors import UsageError
from runner.output import emit, emit_json, table


def show_calendar(ws: Workspace, name: str, year: int | None, as_json: bool) -> int:
    """Every day off of `year` (default: this year) that is not merely a weekend, then the weekend rule."""
    calendar = find_calendar(ws, name)
    year = year or dt.date.today().year
    days = calendar.days_off(year)
    if as_json:
        emit_json({"calendar": name, "year": year, "holidays": calendar.country,
                   "weekend": [WEEKDAYS[d] for d in sorted(calendar.weekend)],
                   "working_days": [d.isoformat() for d in sorted(calendar.working) if d.year == year],
                   "days_off": [{"date": d.isoformat(), "weekday": WEEKDAYS[d.weekday()], "reason": reason}
                                for d, reason in days]})
        return 0
    emit(table(("DATE", "DAY", "REASON"), [(d.isoformat(), WEEKDAYS[d.weekday()], reason) for d, reason in days]))
    weekend = ", ".join(WEEKDAYS[d] for d in sorted(calendar.weekend)) or "none"
    working = [d.isoformat() for d in sorted(calendar.working) if d.year == year]
    print(f"{len(days)} days off in {year} besides the weekend ({weekend})"
          + (f"; working days by the dates file: {', '.join(working)}" if working else ""), file=sys.stderr)
    warn_data_end(calendar, year)
    return 0


def find_calendar(ws: Workspace, name: str) -> Calendar:
    calendar = ws.config.calendars.get(name)
    if calendar is None:
        known = ", ".join(sorted(ws.config.calendars)) or "none: add [calendars.NAME] to runbook.toml"
        raise UsageError(f"no calendar {name!r} in runbook.toml (known: {known})")
    return calendar


def warn_data_end(calendar: Calendar, year: int) -> None:
    """A warning on stderr when `year` is past the last year the holiday library has data for."""
    end = calendar.data_ends()
    if end is not None and year > end:
        print(f"runbook: warning: calendar {calendar.name}: the holiday data for {calendar.country} ends in {end}; "
              f"{year}'s public holidays are unknown and count as working days", file=sys.stderr)
