"""Run ids: `20261130T161114.310518Z-health-check-5c40`, the UTC start time to the microsecond, the
runbook's name and 16 random bits, and the marker that carries them in a run's processes. Ids sort by start time; light enough to import before anything else
(`runbook run` names its run before it loads the runbook, see execution/ahead.py)."""
from __future__ import annotations

import os
import time

# The environment variable that makes a process one of run <id>'s (execution/processes.py): set on every
# process a run starts, from the interpreter started ahead (execution/ahead.py) to ansible-playbook's.
MARKER = "RUNBOOK_RUN_MARKER"

_last_stamp = 0


def new_stamp() -> str:
    """UTC start time to the microsecond, strictly increasing within this process, so that ids sort by
    start time even for runs started in the same second (and by one process in the same microsecond)."""
    global _last_stamp
    micros = max(time.time_ns() // 1000, _last_stamp + 1)
    _last_stamp = micros
    seconds, fraction = divmod(micros, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{fraction:06d}Z"


def new_run_id(runbook: str) -> str:
    return f"{new_stamp()}-{runbook}-{os.urandom(2).hex()}"


def is_run_id_of(text: str, runbook: str) -> bool:
    """Whether `text` has the shape of an id new_run_id gave for `runbook`."""
    import re

    return re.fullmatch(rf"\d{{8}}T\d{{6}}\.\d{{6}}Z-{re.escape(runbook)}-[0-9a-f]{{4}}", text) is not None
