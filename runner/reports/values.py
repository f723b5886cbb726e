"""Values as a person writes them, never as Python prints them: the one formatter for every report,
manual page and terminal listing (`None`, `False` and `['cron']` are what a reader must never see)."""
from __future__ import annotations

import math
from typing import Any

from runner.times import human_time as human_time  # the one formatter of times (runner/times.py), also here


def human(value: Any) -> str:
    """One line: `-` for nothing, true/false, lists comma-separated, mappings as key=value."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return ", ".join(human(item) for item in items) if items else "(none)"
    if isinstance(value, dict) or hasattr(value, "items"):
        pairs = list(value.items())
        return ", ".join(f"{k}={human(v)}" for k, v in pairs) if pairs else "(none)"
    return str(value)


def human_block(value: Any) -> str:
    """Nested data (a step's set_stats figures) as YAML: the way people write structured values here."""
    import yaml

    return str(yaml.safe_dump(_plain(value), sort_keys=False, allow_unicode=True, default_flow_style=False,
                              width=100)).rstrip("\n")


def _plain(value: Any) -> Any:
    """Mappings and sequences of any kind as dicts and lists, so the YAML carries no Python tags."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return str(int(value)) if value.is_integer() else f"{value:.6g}"
