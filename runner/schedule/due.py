"""When a schedule entry is due, by its calendar: cron times on business days only (`on_holiday: skip`),
moved to the next or previous business day (`next` / `previous`, 振替), or the N-th business day of every
month (`business-day: N`, `monthly: last-business-day`) at a time of day. Pure functions over aware local
times; the crontab path and `schedule list` ask the same questions."""
from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from runner.definition.calendars import Calendar
from runner.definition.cron import CronExpr, parse_cron
from runner.definition.model import Schedule

ON_HOLIDAY = ("skip", "next", "previous")
MAX_SHIFT_DAYS = 40  # the longest run of days off a shift looks across (年末年始 plus a long weekend is ~10)
_HORIZON_DAYS = 366 * 3  # an entry with no due time within three years never fires


@dataclass(frozen=True)
class Rule:
    """An entry's timing: a cron expression, or the N-th business day of the month (1 = first, -1 = last)
    at `at`; with a calendar, what happens to a cron time on a day off."""

    cron: CronExpr | None = None
    business_day: int | None = None
    at: dt.time | None = None
    calendar: Calendar | None = None
    on_holiday: str = "skip"


def due_times(rule: Rule, start: dt.datetime, count: int, until: dt.datetime | None = None) -> list[dt.datetime]:
    """The first `count` due times at or after `start` (aware) and at or before `until`, in order; fewer
    when the rule stops firing within three years."""
    end = min(start + dt.timedelta(days=_HORIZON_DAYS), until or start + dt.timedelta(days=_HORIZON_DAYS))
    if rule.business_day is not None:
        return _monthly(rule, start, count, end)
    return _cron(rule, start, count, end)


def next_due(rule: Rule, after: dt.datetime) -> dt.datetime | None:
    """The first due time strictly after `after`."""
    found = due_times(rule, after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1), 1)
    return found[0] if found else None


def previous_due(rule: Rule, before: dt.datetime) -> dt.datetime | None:
    """The last due time at or before `before` (aware), within 400 days."""
    if rule.calendar is None and rule.business_day is None and rule.cron is not None:
        previous = rule.cron.previous_before(before.replace(tzinfo=None))
        return previous.replace(tzinfo=before.tzinfo) if previous else None
    for days in (3, 45, 400):
        found = due_times(rule, before - dt.timedelta(days=days), 10**6, until=before)
        if found:
            return found[-1]
    return None


def is_due(rule: Rule, when: dt.datetime) -> bool:
    """Whether the minute `when` (aware) is one of the rule's due times."""
    minute = when.replace(second=0, microsecond=0)
    found = due_times(rule, minute, 1)
    return bool(found) and found[0] == minute


def skip_reason(rule: Rule, when: dt.datetime) -> str | None:
    """Why the cron firing at `when` starts no run (the day is off, or its run moved), or None when due."""
    if is_due(rule, when) or rule.calendar is None:
        return None
    day = when.date()
    reason = rule.calendar.day_off(day)
    following = next_due(rule, when)
    moved = f"; next due {following:%Y-%m-%d %H:%M}" if following else ""
    if reason:
        return f"{day} is {reason} in calendar {rule.calendar.name}: skipped{moved}"
    return f"{day} is not a due day of this entry in calendar {rule.calendar.name}{moved}"


def never_fires(rule: Rule, start: dt.datetime) -> bool:
    return not due_times(rule, start, 1)


def _cron(rule: Rule, start: dt.datetime, count: int, end: dt.datetime) -> list[dt.datetime]:
    assert rule.cron is not None
    calendar, shift = rule.calendar, rule.on_holiday
    lookback = dt.timedelta(days=MAX_SHIFT_DAYS if calendar and shift == "next" else 0)
    lookahead = dt.timedelta(days=MAX_SHIFT_DAYS if calendar and shift == "previous" else 0)
    found: list[dt.datetime] = []  # sorted; a shift can bring a later cron time before an earlier one
    cursor = (start - lookback).replace(tzinfo=None) - dt.timedelta(minutes=1)
    while True:
        try:
            raw = rule.cron.next_after(cursor).replace(tzinfo=start.tzinfo)
        except ValueError:  # never matches
            break
        cursor = raw.replace(tzinfo=None)
        if raw - lookahead > end or (len(found) >= count and raw - lookahead > found[count - 1]):
            break
        moved = raw if calendar is None else _moved(raw, calendar, shift)
        if moved is not None and start <= moved <= end and moved not in found:
            bisect.insort(found, moved)
    return found[:count]


def _moved(when: dt.datetime, calendar: Calendar, shift: str) -> dt.datetime | None:
    if calendar.is_business_day(when.date()):
        return when
    if shift == "skip":
        return None
    step = dt.timedelta(days=1 if shift == "next" else -1)
    day = when.date()
    for _ in range(MAX_SHIFT_DAYS):
        day += step
        if calendar.is_business_day(day):
            return dt.datetime.combine(day, when.timetz())
    return None


def _monthly(rule: Rule, start: dt.datetime, count: int, end: dt.datetime) -> list[dt.datetime]:
    assert rule.business_day is not None and rule.at is not None
    found: list[dt.datetime] = []
    year, month = start.year, start.month
    for _ in range(_HORIZON_DAYS // 28):
        day = nth_business_day(year, month, rule.business_day, rule.calendar)
        if day is not None:
            when = dt.datetime.combine(day, rule.at, tzinfo=start.tzinfo)
            if when > end:
                break
            if when >= start:
                found.append(when)
                if len(found) == count:
                    break
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def nth_business_day(year: int, month: int, n: int, calendar: Calendar | None) -> dt.date | None:
    """The n-th business day of the month (1 first, -1 last), or None when the month has fewer."""
    day = dt.date(year, month, 1)
    days = []
    while day.month == month:
        if calendar is None or calendar.is_business_day(day):
            days.append(day)
        day += dt.timedelta(days=1)
    index = n - 1 if n > 0 else n
    return days[index] if -len(days) <= index < len(days) else None


def rule_for(schedule: Schedule, calendars: Mapping[str, Calendar]) -> Rule:
    """The timing of a `schedule:` entry with its calendar (KeyError: runbook.toml has no such calendar)."""
    calendar = calendars[schedule.calendar] if schedule.calendar else None
    if schedule.business_day is not None and schedule.at:
        hour, minute = (int(part) for part in schedule.at.split(":"))
        return Rule(business_day=schedule.business_day, at=dt.time(hour, minute), calendar=calendar)
    return Rule(cron=parse_cron(schedule.cron), calendar=calendar, on_holiday=schedule.on_holiday)


def calendar_problems(schedule: Schedule, calendars: Mapping[str, Calendar], now: dt.datetime) -> list[str]:
    """What is wrong with an entry's calendar: unknown, or the entry can never fire by it."""
    if schedule.calendar and schedule.calendar not in calendars:
        known = ", ".join(sorted(calendars)) or "none"
        return [f"no calendar {schedule.calendar!r} in runbook.toml [calendars] (known: {known})"]
    if schedule.calendar and never_fires(rule_for(schedule, calendars), now):
        return [f"never fires: no due time within three years by calendar {schedule.calendar}"]
    return []


def data_end_warning(schedule: Schedule, calendars: Mapping[str, Calendar], now: dt.datetime) -> str | None:
    """A warning when the entry's calendar's holiday data ends before next year is over: past that year
    public holidays would silently count as working days."""
    calendar = calendars.get(schedule.calendar) if schedule.calendar else None
    end = calendar.data_ends() if calendar else None
    if calendar is None or end is None or now.year + 1 <= end:
        return None
    return (f"calendar {calendar.name}: the holiday data for {calendar.country} ends in {end}; "
            f"after {end} public holidays are unknown and count as working days (upgrade the holidays package)")
