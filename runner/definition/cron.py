"""Five-field cron expressions (and @daily-style macros): validation and next due times."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_NAMES = {
    3: {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")


# What a crontab line cannot carry: cron ends a line at \n only, but readers such as str.splitlines() also
# break at \r, VT, FF, \x1c-\x1e, NEL and U+2028/U+2029, and the other control characters are garbage
# on a terminal. Refused in schedule values so that one entry is always one line whoever reads it.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def crontab_problem(value: Any) -> str | None:
    """Why `value` (a schedule's param, limit or inventory; lists and mappings searched) cannot be written
    into a crontab line, or None."""
    texts = [str(v) for v in (value.values() if isinstance(value, dict) else value)] \
        if isinstance(value, (list, dict)) else [str(value)]
    for text in texts:
        found = _UNSAFE.search(text)
        if found:
            return (f"holds a line break or control character (U+{ord(found.group()):04X}), which a crontab line cannot carry "
                    "(one entry is one line)")
        if "\\%" in text:
            return "holds a backslash before a %, which cron cannot carry"
    return None


@dataclass(frozen=True)
class CronExpr:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        day_ok = day.day in self.days
        weekday_ok = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok  # cron's rule: either field may match
        return day_ok and weekday_ok

    def _times(self, day: dt.date, tz: dt.tzinfo | None, reverse: bool) -> list[dt.datetime]:
        pairs = sorted((h, m) for h in self.hours for m in self.minutes)
        times = [dt.datetime.combine(day, dt.time(h, m), tzinfo=tz) for h, m in pairs]
        return times[::-1] if reverse else times

    def next_after(self, when: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after `when`."""
        start = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(366 * 8):
            if self.day_matches(day):
                for t in self._times(day, when.tzinfo, reverse=False):
                    if t >= start:
                        return t
            day += dt.timedelta(days=1)
        raise ValueError(f"{self.text!r} never matches")

    def previous_before(self, when: dt.datetime) -> dt.datetime | None:
        """The last matching minute at or before `when`, within 400 days."""
        end = when.replace(second=0, microsecond=0)
        day = end.date()
        for _ in range(400):
            if self.day_matches(day):
                for t in self._times(day, when.tzinfo, reverse=True):
                    if t <= end:
                        return t
            day -= dt.timedelta(days=1)
        return None


def parse_cron(text: str) -> CronExpr:
    """Parse `text`; ValueError says which field is wrong."""
    expanded = _MACROS.get(text.strip().lower(), text)
    fields = expanded.split()
    if len(fields) != 5:
        raise ValueError(f"{text!r} is not a cron expression (5 fields: minute hour day month weekday)")
    sets = [_parse_field(f, i) for i, f in enumerate(fields)]
    weekdays = frozenset(d % 7 for d in sets[4])
    expr = CronExpr(text, sets[0], sets[1], sets[2], sets[3], weekdays,
                    not fields[2].startswith("*"), not fields[4].startswith("*"))  # cron: "*/2" counts as "*"
    if not _fires(expr):
        raise ValueError(f"{text!r} never fires: no month in it has such a day")
    return expr


_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February 29 comes every leap year


def _fires(expr: CronExpr) -> bool:
    """Whether some date matches: cron takes either field when both day fields are restricted; otherwise a
    day of the month must exist in one of the months (every weekday falls on it in some year)."""
    if expr.days_restricted and expr.weekdays_restricted:
        return True
    return any(day <= _LONGEST_MONTH[month] for month in expr.months for day in expr.days)


def _parse_field(text: str, index: int) -> frozenset[int]:
    low, high = _RANGES[index]
    values: set[int] = set()
    for part in text.lower().split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                a, b = base.split("-", 1)
                start, end = _value(a, index), _value(b, index)
            else:
                start = _value(base, index)
                end = high if step_text else start
        except ValueError:
            raise ValueError(f"{text!r} is not a valid {_FIELD_NAMES[index]} field") from None
        if step < 1 or not (low <= start <= end <= high):
            raise ValueError(f"{text!r} is out of range for the {_FIELD_NAMES[index]} field ({low}-{high})")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, index: int) -> int:
    names = _NAMES.get(index, {})
    return names[text] if text in names else int(text)
