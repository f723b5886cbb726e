"""Times for people: the one way every human-readable view (history, log, reports, the periodic summary,
the site, show) writes a moment: `2026-12-05 03:52:01 JST`, to the second, in one zone, labelled. JSON
and records keep ISO 8601 with its offset (runner.store.records.iso)."""
from __future__ import annotations

import datetime as dt

_ZONE: dt.tzinfo | None = None  # runbook.toml's [ui] timezone, set when the workspace is opened


def use_zone(name: str | None) -> None:
    """Read times in the IANA zone `name` from now on (`[ui] timezone`); None is the machine's zone."""
    global _ZONE
    if name is None:
        _ZONE = None
        return
    import zoneinfo

    _ZONE = zoneinfo.ZoneInfo(name)


def zone() -> dt.tzinfo | None:
    """The zone people read times in: `[ui] timezone`, else None, the machine's local zone (with its own
    daylight saving rules at each moment)."""
    return _ZONE


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
