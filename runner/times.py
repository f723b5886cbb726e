"""Times for people: the one way every human-readable view (history, log, reports, the periodic summary,
the site, show) writes a moment: `2026-12-05 03:52:01 JST`, to the second, in one zone, labelled. JSON
and records keep ISO 8601 with its offset (runner.store.records.iso)."""
from __future__ import annotations

import datetime as dt


def zone() -> dt.tzinfo | None:
    """The zone people read times in; None is the machine's local zone (with its own daylight saving
    rules at each moment). The one place a setting such as `[ui] timezone` would be read."""
    return None


def local(timestamp: float) -> dt.datetime:
    """`timestamp` (seconds since the epoch) as an aware datetime in the people's zone."""
    tz = zone()
    return dt.datetime.fromtimestamp(timestamp, tz) if tz is not None else dt.datetime.fromtimestamp(timestamp).astimezone()


def human_time(timestamp: float | None) -> str:
    """`2026-12-05 03:52:01 JST`; `-` for no time. The label is the zone's abbreviation, else its offset."""
    if timestamp is None:
        return "-"
    when = local(timestamp)
    return when.strftime("%Y-%m-%d %H:%M:%S ") + (when.tzname() or when.strftime("%z"))
