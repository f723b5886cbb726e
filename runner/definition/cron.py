"""Five-field cron expressions (and @daily-style macros): validation and next due times."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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
    return CronExpr(text, sets[0], sets[1], sets[2], sets[3], weekdays,
                    not fields[2].startswith("*"), not fields[4].startswith("*"))  # cron: "*/2" counts as "*"


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
