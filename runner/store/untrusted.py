"""What a store hands out is untrusted input: anyone holding the team database's URL writes its rows, and
a run.json or a pending/ entry is only a file. Ids, runbook and step names, hosts and workers are checked
here, where rows and records become domain objects, and every path made from them is made by `inside`,
which refuses anything but single safe components. A row or record that fails is shown as damaged (its id
written out by `escaped`) and is never read as a path."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from runner.definition.workspace import WORKER_NAME
from runner.errors import RunbookError

if TYPE_CHECKING:
    from runner.store.records import RunRecord, StepRecord

# ids.new_run_id's shape (older ids carry whole seconds); the name is the runbook's (runbook.schema.json).
RUN_ID = re.compile(r"\d{8}T\d{6}(?:\.\d{6})?Z-([a-z0-9][a-z0-9-]{0,63})-[0-9a-f]{4}")
RUNBOOK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
STEP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # the loader's (runbook.schema.json: $defs.step.name)
STATUS = re.compile(r"[a-z_]{1,32}")
_LAST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: later times do not format
_TEXT_COLUMNS = ("version", "operator", "trigger", "inventory", "limit_pattern", "hosts_failed")


class DamagedError(RunbookError):
    """A run's record (run.json, or its row in the database) cannot be read or trusted; it is shown as damaged."""


def escaped(text: object) -> str:
    """`text` safe to print and never a path: control and format characters, path separators and the
    backslash written out (`/` as `\\x2f`, ESC as `\\x1b`, U+202E as `\\u202e`)."""
    return "".join(_escape_char(c) for c in ("" if text is None else str(text)))


def _escape_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char != "/" and char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def checked_run_id(text: object) -> str:
    """`text` if it has the shape of a run id, else DamagedError naming it escaped."""
    if not isinstance(text, str) or not is_run_id(text):
        raise DamagedError(f"run {escaped(text)}: its id is not a run id: it is shown as damaged and never "
                           "read; the rest of the history is intact")
    return text


def is_safe_component(name: object) -> bool:
    """One path component that stays where it is put: no separator, no `.`/`..` or hidden name, nothing unprintable."""
    return (isinstance(name, str) and name.isprintable() and 0 < len(name.encode()) <= 255
            and "/" not in name and "\\" not in name and not name.startswith("."))


def inside(root: Path, *parts: str) -> Path:
    """`root / part / ...`: the one way a path is made from what a store handed out; DamagedError unless
    every part is a single safe component."""
    for part in parts:
        if not is_safe_component(part):
            raise DamagedError(f"{escaped(part)} is not a safe folder name: refusing to make a path of it under {root}")
    return root.joinpath(*parts)


def row_problem(row: Mapping[str, Any]) -> str | None:
    """Why a history row cannot be shown as it is (None: it can)."""
    found = RUN_ID.fullmatch(row["id"]) if isinstance(row["id"], str) else None
    if found is None:
        return "its id is not a run id"
    if row["runbook"] != found.group(1):
        return "its runbook is not the one its id names"
    if not isinstance(row["status"], str) or not STATUS.fullmatch(row["status"]):
        return "its status is not a status"
    for column in _TEXT_COLUMNS:
        if row[column] is not None and not isinstance(row[column], str):  # shown escaped, never a path
            return f"its {column} is not text"
    if not is_time(row["started_at"]) or not (row["ended_at"] is None or is_time(row["ended_at"])):
        return "its times are not times"
    if not _is_int(row["check_mode"]) or not (row["exit_code"] is None or _is_int(row["exit_code"])):
        return "its exit code or check mode is not a number"
    return None


def record_problem(run_id: str, record: RunRecord) -> str | None:
    """Why a parsed record cannot be trusted as run `run_id`'s (None: it can)."""
    found = RUN_ID.fullmatch(run_id)
    if found is None:
        return "its id is not a run id"
    if record.id != run_id:
        return f"it names another run, {escaped(record.id)}"
    if record.runbook != found.group(1):
        return f"it names another runbook, {escaped(record.runbook)}"
    if not is_time(record.started_at) or not (record.ended_at is None or is_time(record.ended_at)):
        return "its times are not times"
    if not _is_worker(record.worker):
        return f"its worker {escaped(record.worker)} is not a worker name"
    seen: set[int] = set()
    for step in record.steps:
        problem = step_problem(step, seen)
        if problem:
            return problem
    return None


def step_problem(step: StepRecord, seen: set[int]) -> str | None:
    if not _is_int(step.index) or not 0 <= step.index < 10_000 or step.index in seen:
        return f"a step's index {escaped(step.index)} is not a new step number"
    seen.add(step.index)
    if not isinstance(step.name, str) or not STEP_NAME.fullmatch(step.name) or not is_safe_component(step.folder_name):
        return f"step {step.index + 1} is named {escaped(step.name)}, not a step name"
    if not _is_worker(step.worker):
        return f"step {step.index + 1} names the worker {escaped(step.worker)}"
    for host, result in step.hosts.items():
        if not is_safe_component(host):
            return f"step {step.index + 1} names the host {escaped(host)}"
        if not all(_is_int(getattr(result, c)) for c in ("ok", "changed", "failed", "unreachable", "skipped")):
            return f"step {step.index + 1}: the counts of host {escaped(host)} are not numbers"
    return None


def is_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and 0 <= value <= _LAST_TIME


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_worker(name: object) -> bool:
    return name == "" or (isinstance(name, str) and WORKER_NAME.fullmatch(name) is not None)
