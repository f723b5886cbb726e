"""Durations as runbooks and the CLI write them: 90s, 10m, 2h, 1d, or combined as 1h30m."""
from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SECONDS = 100 * 366 * 86400  # a century: beyond it a time stamp overflows the platform's time_t
_DURATION = re.compile(r"^(?:\d+[smhdw])+$")
_PART = re.compile(r"(\d+)([smhdw])")


def is_duration(text: str) -> bool:
    return bool(_DURATION.match(text))


def parse_duration(text: str) -> int:
    """Seconds in `text`; ValueError names the text when it is not a duration."""
    text = text.strip()
    if len(text) > 40 or not is_duration(text):
        shown = text if len(text) <= 40 else text[:30] + "..."
        raise ValueError(f"{shown!r} is not a duration (use e.g. 90s, 10m, 2h, 1d)")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than a century")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
