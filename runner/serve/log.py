"""The service's log: one line per event on stderr, `runbook serve: EVENT key=value ...`; values are
quoted when they hold spaces, and control characters never reach the line (alert fields are data)."""
from __future__ import annotations

import sys
import time


def log(event: str, **fields: object) -> None:
    parts = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runbook serve:", event]
    parts += [f"{key}={_shown(value)}" for key, value in fields.items() if value not in (None, "")]
    print(" ".join(parts), file=sys.stderr, flush=True)


def _shown(value: object) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(value))[:300]
    return repr(text) if (" " in text or not text or "'" in text or '"' in text) else text
