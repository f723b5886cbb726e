"""Which schedule entry a cron firing belongs to, and what a firing that never became a run leaves behind.

The crontab line of entry N sets RUNBOOK_ENTRY=N; the run records it (RunRecord.schedule_entry), so
`schedule status` tells two entries of one runbook apart. A firing refused before its run started (a lock
held, an invalid parameter, the team's store away) has no run record: it is kept as a small JSON file in the
state dir, `schedule/<runbook>.<N>.refusals.json` (the newest few, 0600, written atomically), on the machine
whose crontab fired it, which is where `schedule status` reads the crontab too. A file rather than a store
table: nothing to migrate in two backends, and a firing refused because the database is away is kept too."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.store.files import make_private_dir, write_private

ENTRY_VARIABLE = "RUNBOOK_ENTRY"  # short: a crontab command holds at most 998 bytes
FOLDER = "schedule"
KEEP = 20  # refusals kept per entry
REFUSED_CODES = (3, 6, 7)  # invalid, locked, store unreachable: refused before anything ran
_HOLDER = re.compile(r"held by run ([A-Za-z0-9._-]+)")
_RUNBOOK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # as the schema allows: never a path of its own


@dataclass(frozen=True)
class Refusal:
    """A cron firing of one entry that was refused before its run started."""

    at: float
    exit_code: int
    message: str
    holder: str = ""  # the run holding the lock (exit 6)
    holder_who: str = ""  # its operator@host

    @property
    def outcome(self) -> str:
        if self.exit_code == 6 and self.holder:
            return f"refused: locked by {self.holder}" + (f" ({self.holder_who})" if self.holder_who else "")
        first = self.message.splitlines()[0] if self.message else ""
        return f"refused: exit {self.exit_code}" + (f": {first}" if first else "")


def entry_of(trigger: str | None, environ: Mapping[str, str] | None = None) -> int | None:
    """The schedule entry index the crontab line set, for a cron-triggered run; None otherwise."""
    text = (os.environ if environ is None else environ).get(ENTRY_VARIABLE, "")
    return int(text) if trigger == "cron" and text.isdigit() and len(text) < 6 else None


def lock_holder(message: str) -> str:
    """The run id a lock refusal names."""
    found = _HOLDER.search(message)
    return found.group(1).rstrip(".") if found else ""


def _path(state_dir: Path, runbook: str, index: int) -> Path:
    if not _RUNBOOK_NAME.fullmatch(runbook):
        raise ValueError(f"{runbook!r} is not a runbook name")
    return state_dir / FOLDER / f"{runbook}.{index}.refusals.json"


def record_refusal(state_dir: Path, runbook: str, index: int, refusal: Refusal) -> None:
    """Keep `refusal` with the entry's newest ones; a name that is no runbook's (`run ../x`) keeps nothing."""
    if not _RUNBOOK_NAME.fullmatch(runbook):
        return
    folder = make_private_dir(state_dir / FOLDER)
    kept = refusals(state_dir, runbook, index)[-(KEEP - 1):]
    data = json.dumps([asdict(r) for r in [*kept, refusal]], indent=1)
    write_private(folder / _path(state_dir, runbook, index).name, data.encode())


def refusals(state_dir: Path, runbook: str, index: int) -> list[Refusal]:
    """The entry's recorded refusals, oldest first; a damaged file counts as none (it is data, not trusted)."""
    path = _path(state_dir, runbook, index)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [r for r in map(_refusal, raw if isinstance(raw, list) else []) if r is not None]


def _refusal(item: Any) -> Refusal | None:
    if not isinstance(item, dict):
        return None
    try:
        refusal = Refusal(float(item["at"]), int(item["exit_code"]), str(item.get("message", ""))[:2000],
                          str(item.get("holder", ""))[:200], str(item.get("holder_who", ""))[:200])
    except (KeyError, TypeError, ValueError):
        return None
    return refusal if refusal.at == refusal.at else None  # NaN is no time
