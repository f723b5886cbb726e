"""Durations as runbooks and the CLI write them: 90s, 10m, 2h, 1d, or combined as 1h30m."""
from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(?:\d+[smhdw])+$")
_PART = re.compile(r"(\d+)([smhdw])")


def is_duration(text: str) -> bool:
    return bool(_DURATION.match(text))


def parse_duration(text: str) -> int:
    """Seconds in `text`; ValueError names the text when it is not a duration."""
    text = text.strip()
    if not is_duration(text):
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 10m, 2h, 1d)")
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
