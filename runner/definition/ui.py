"""`[ui]` in runbook.toml: how the tool speaks to people. `timezone` (an IANA zone such as "Asia/Tokyo";
default the machine's zone) and `lang` ("ja" or "en"; default from RUNBOOK_LANG or the locale)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runner.errors import Problem

LANGUAGES = ("en", "ja")
_UI_KEYS = ("timezone", "lang")


@dataclass(frozen=True)
class Ui:
    timezone: str | None = None
    lang: str | None = None


def parse_ui(data: Any, filename: str, text: str) -> tuple[Ui, list[Problem]]:
    """The [ui] table, with the line of each problem."""
    if not isinstance(data, dict):
        return Ui(), [Problem(filename, _line(text, None), "ui", 'expected a table: [ui] timezone = "Asia/Tokyo"')]
    problems = [Problem(filename, _line(text, k), f"ui.{k}", "unknown key") for k in data if k not in _UI_KEYS]
    zone, lang = data.get("timezone"), data.get("lang")
    if zone is not None and not _known_zone(zone):
        problems.append(Problem(filename, _line(text, "timezone"), "ui.timezone",
                                f"{zone!r} is not a known time zone (an IANA name such as \"Asia/Tokyo\" or \"UTC\")"))
    if lang is not None and lang not in LANGUAGES:
        problems.append(Problem(filename, _line(text, "lang"), "ui.lang", f"{lang!r} is not one of: {', '.join(LANGUAGES)}"))
    return (Ui(), problems) if problems else (Ui(zone, lang), [])


def _known_zone(name: Any) -> bool:
    if not isinstance(name, str) or not name or len(name) > 100 or "\0" in name:
        return False
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _line(text: str, key: str | None) -> int | None:
    """The line of `key = ...` in the [ui] table (or of the table itself)."""
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines) if re.match(r"^\s*\[\s*ui\s*\]", line)), None)
    if start is None:
        return next((n + 1 for n, line in enumerate(lines) if re.match(r"^\s*ui\s*[.=]", line)), None)
    if key is None:
        return start + 1
    for number in range(start + 1, len(lines)):
        line = lines[number].strip()
        if line.startswith("["):
            break
        if re.match(rf"^{re.escape(key)}\s*=", line):
            return number + 1
    return start + 1
