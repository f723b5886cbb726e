"""Business-day calendars from runbook.toml's `[calendars.NAME]` tables: public holidays of a country (the
`holidays` library, imported only when a day is asked about), company days off every year (MM-DD), one-off
closures and extra working days from a dates file, and the weekend."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner.errors import Problem

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CALENDAR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_KEYS = {"holidays", "extra", "dates_file", "weekend"}
_MONTH_DAY = re.compile(r"^(\d\d)-(\d\d)$")
_DATE_LINE = re.compile(r"^(\+?)(\d{4}-\d\d-\d\d)$")


@dataclass(frozen=True)
class Calendar:
    """Which days are days off, and why. A `+` date of the dates file is a working day whatever else says."""

    name: str
    country: str | None = None
    extra: frozenset[tuple[int, int]] = frozenset()
    closures: frozenset[dt.date] = frozenset()
    working: frozenset[dt.date] = frozenset()
    weekend: frozenset[int] = frozenset({5, 6})  # date.weekday(): Monday is 0
    source: str = "runbook.toml"
    line: int | None = None
    _names: dict[int, dict[dt.date, str]] = field(default_factory=dict, compare=False, repr=False)

    def day_off(self, day: dt.date) -> str | None:
        """Why `day` is no business day (a holiday's name, "company day off", ...), or None."""
        if day in self.working:
            return None
        holiday = self._holidays(day.year).get(day)
        if holiday:
            return holiday
        if (day.month, day.day) in self.extra:
            return "company day off"
        if day in self.closures:
            return "closure"
        if day.weekday() in self.weekend:
            return WEEKDAYS[day.weekday()]
        return None

    def is_business_day(self, day: dt.date) -> bool:
        return self.day_off(day) is None

    def days_off(self, year: int) -> list[tuple[dt.date, str]]:
        """Every day off of `year` that is not merely a weekend, with its reason, in date order."""
        days = {d for d in self._holidays(year) if d not in self.working}
        days |= {d for d in self.closures if d.year == year}
        for month, day in self.extra:
            try:
                days.add(dt.date(year, month, day))
            except ValueError:  # 02-29 outside a leap year
                pass
        return [(d, reason) for d in sorted(days) if (reason := self.day_off(d))]

    def data_ends(self) -> int | None:
        """The last year the holiday library knows this country's holidays for, or None."""
        return country_end_year(self.country) if self.country else None

    def _holidays(self, year: int) -> dict[dt.date, str]:
        if not self.country:
            return {}
        if year not in self._names:
            self._names[year] = country_holidays(self.country, year)
        return self._names[year]


def country_holidays(country: str, year: int) -> dict[dt.date, str]:
    """The public holidays of `country` in `year` (substitute holidays included), named in the reader's
    language where the library has it (Japanese for a Japanese reader), else in its default."""
    import holidays

    found = holidays.country_holidays(country, years=year)
    language = _reader_language(getattr(found, "supported_languages", ()))
    if language:
        found = holidays.country_holidays(country, years=year, language=language)
    return {day: str(name) for day, name in found.items()}


def _reader_language(supported: tuple[str, ...]) -> str | None:
    """The library's spelling of the reader's language (runner/language.py decides it), if it has it."""
    from runner.language import language

    code = language()
    return next((s for s in supported if s.split("_", 1)[0].lower() == code), None)


@lru_cache(maxsize=None)
def country_end_year(country: str) -> int | None:
    import holidays

    end = getattr(holidays.country_holidays(country), "end_year", None)
    return int(end) if isinstance(end, int) else None


def known_country(code: str) -> bool:
    import holidays

    return code in holidays.list_supported_countries()


def parse_calendars(data: Any, root: Path, filename: str, text: str) -> tuple[dict[str, Calendar], list[Problem]]:
    """`[calendars.NAME]` tables into calendars; every problem found, with the line of its table or key."""
    if not isinstance(data, dict):
        return {}, [Problem(filename, None, "calendars", "expected tables like [calendars.jp-business]")]
    calendars: dict[str, Calendar] = {}
    problems: list[Problem] = []
    for name, spec in data.items():
        line = _table_line(text, name)
        where = f"calendars.{name}"
        if not CALENDAR_NAME.match(str(name)):
            problems.append(Problem(filename, line, where, "is not a calendar name (lower case letters, digits, - and _)"))
        elif not isinstance(spec, dict):
            problems.append(Problem(filename, line, where, 'expected a table with holidays = "JP" ...'))
        else:
            found = _calendar(name, spec, root, filename, text, line)
            if isinstance(found, Calendar):
                calendars[name] = found
            else:
                problems += found
    return calendars, problems


def _calendar(name: str, spec: dict[str, Any], root: Path, filename: str, text: str,
              line: int | None) -> Calendar | list[Problem]:
    where = f"calendars.{name}"

    def problem(key: str, message: str) -> Problem:
        return Problem(filename, _key_line(text, line, key), f"{where}.{key}", message)

    problems = [problem(k, "unknown key") for k in spec if k not in _KEYS]
    country = spec.get("holidays")
    if country is not None and not (isinstance(country, str) and country.isupper() and known_country(country)):
        problems.append(problem("holidays", f"{country!r} is not a country code the holidays library knows "
                                            "(ISO 3166 alpha-2, e.g. \"JP\")"))
    extra, extra_problems = _month_days(spec.get("extra", []))
    problems += [problem("extra", p) for p in extra_problems]
    weekend = spec.get("weekend", ["sat", "sun"])
    if not (isinstance(weekend, list) and all(d in WEEKDAYS for d in weekend)):
        problems.append(problem("weekend", f"{weekend!r}: expected a list of {', '.join(WEEKDAYS)}"))
        weekend = []
    closures: set[dt.date] = set()
    working: set[dt.date] = set()
    dates_file = spec.get("dates_file")
    if dates_file is not None:
        if not (isinstance(dates_file, str) and dates_file):
            problems.append(problem("dates_file", f"{dates_file!r} is not a path"))
        else:
            problems += read_dates_file(root, dates_file, closures, working) or []
    if problems:
        return problems
    return Calendar(name, country, frozenset(extra), frozenset(closures), frozenset(working),
                    frozenset(WEEKDAYS.index(d) for d in weekend), filename, line)


def _month_days(values: Any) -> tuple[set[tuple[int, int]], list[str]]:
    if not isinstance(values, list):
        return set(), [f"{values!r}: expected a list of MM-DD, e.g. [\"12-29\", \"01-03\"]"]
    days, problems = set(), []
    for value in values:
        found = _MONTH_DAY.match(value) if isinstance(value, str) else None
        month, day = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
        if not found or not _valid_month_day(month, day):
            problems.append(f"{value!r} is not a date MM-DD")
            continue
        days.add((month, day))
    return days, problems


def _valid_month_day(month: int, day: int) -> bool:
    try:
        dt.date(2024, month, day)  # a leap year: 02-29 is a valid yearly day
    except ValueError:
        return False
    return True


def read_dates_file(root: Path, name: str, closures: set[dt.date], working: set[dt.date]) -> list[Problem]:
    """The dates file's lines into `closures` (YYYY-MM-DD) and `working` (+YYYY-MM-DD); blank lines and
    `#` comments are skipped. The file is workspace-relative and may not leave the workspace."""
    path = (root / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(root.resolve()):
        return [Problem(name, None, "", "the dates file must be inside the workspace")]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(name, None, "", f"cannot be read ({exc.__class__.__name__}): create it or fix dates_file")]
    problems = []
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        found = _DATE_LINE.match(text)
        day = _date(found.group(2)) if found else None
        if found is None or day is None:
            problems.append(Problem(name, number, "", f"{text!r} is not YYYY-MM-DD (closure) or +YYYY-MM-DD (working day)"))
            continue
        (working if found.group(1) else closures).add(day)
    return problems


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _table_line(text: str, name: str) -> int | None:
    pattern = re.compile(rf"^\s*\[\s*calendars\s*\.\s*(\"{re.escape(name)}\"|{re.escape(name)})\s*\]")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


def _key_line(text: str, table_line: int | None, key: str) -> int | None:
    """The line of `key = ...` inside the table that starts at `table_line`."""
    if table_line is None:
        return None
    lines = text.splitlines()
    for number in range(table_line, len(lines)):
        line = lines[number].strip()
        if line.startswith("["):
            break
        if re.match(rf"^{re.escape(key)}\s*=", line):
            return number + 1
    return table_line
