"""`runbook schedule list|install|remove|status`: the runbooks' schedules in the current user's crontab.
The only module that runs the `crontab` binary; everything else is in runner/schedule.py."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.schedule import schedule
from runner.errors import ExitCode, InvalidError, Problem, RunbookError
from runner.store.files import make_private_dir
from runner.definition.model import Runbook
from runner.output import emit, emit_json, table
from runner.schedule.schedule import CronRun, Entry, Installed
from runner.store.backends import open_store
from runner.store.base import NEWEST_FIRST
from runner.definition.workspace import Workspace


def list_schedules(ws: Workspace, as_json: bool) -> int:
    wanted, invalid = _wanted(ws, strict=False)
    installed = schedule.installed_entries(_read_crontab(), ws.root)
    now = dt.datetime.now()
    _warn_orphans(wanted, installed)
    rows = [(e, *schedule.install_state(e, installed), schedule.next_due(e, now)) for e in wanted]
    if as_json:
        emit_json([{**schedule.entry_dict(e), "next_due": due.isoformat(), "installed": state == "yes",
                    "install_state": state, "installed_at": schedule.iso_local(item.installed_at if item else None)}
                   for e, state, item, due in rows])
    elif rows:
        emit(table(("RUNBOOK", "CRON", "PARAMS", "INVENTORY", "NEXT DUE", "INSTALLED"),
                   [(e.runbook, e.schedule.cron, _params(dict(e.schedule.params)), e.schedule.inventory or "-",
                     _local(due), state) for e, state, _, due in rows]))
    elif not invalid:
        print(f"no runbook in {ws.runbooks_dir} has a schedule", file=sys.stderr)
    return _invalid_exit(invalid, 0)


def install_schedules(ws: Workspace) -> int:
    wanted, _ = _wanted(ws, strict=True)
    before = _read_crontab()
    after = schedule.install(before, ws.root, wanted, time.time())
    log = schedule.log_path(ws)
    if wanted:
        _create_private_file(log)
    if after != before:
        _write_crontab(after)
    if not wanted:
        emit(f"no runbook in {ws.runbooks_dir} has a schedule: nothing installed"
             + (" (the old entries were removed)" if after != before else ""))
        return 0
    count = f"{len(wanted)} schedule entr{'y' if len(wanted) == 1 else 'ies'}"
    emit(f"{count} {'installed' if after != before else 'already installed'} in the crontab "
         f"({schedule.begin_marker(ws.root)}); runs append to {log}")
    return 0


def remove_schedules(ws: Workspace) -> int:
    before = _read_crontab()
    after = schedule.remove(before, ws.root)
    if after == before:
        emit(f"no schedules of {ws.root} in the crontab: nothing removed")
        return 0
    _write_crontab(after)
    emit(f"removed {len(schedule.installed_entries(before, ws.root))} schedule entries of {ws.root} from the crontab")
    return 0


def show_status(ws: Workspace, as_json: bool) -> int:
    wanted, invalid = _wanted(ws, strict=False)
    installed = schedule.installed_entries(_read_crontab(), ws.root)
    now = dt.datetime.now()
    runs = _cron_runs(ws, wanted, installed, now)
    statuses = [schedule.schedule_status(e, installed, runs, now) for e in wanted]
    _warn_orphans(wanted, installed)
    for s in statuses:
        if s.missed and s.checked_due is not None:
            print(f"MISSED: {s.entry.runbook} schedule[{s.entry.index}] ({s.entry.schedule.cron}) was due at "
                  f"{_local(s.checked_due)}: no cron run started within {schedule.GRACE_SECONDS // 60} minutes "
                  f"(see {schedule.log_path(ws)})", file=sys.stderr)
    if as_json:
        emit_json([s.to_dict() for s in statuses])
    elif statuses:
        emit(table(("RUNBOOK", "CRON", "LAST CRON RUN", "OUTCOME", "NEXT DUE", "STATE"),
                   [(s.entry.runbook, s.entry.schedule.cron, _when(s.last_run), _outcome(s.last_run),
                     _local(s.next_due), s.state) for s in statuses]))
    elif not invalid:
        print(f"no runbook in {ws.runbooks_dir} has a schedule", file=sys.stderr)
    return _invalid_exit(invalid, 1 if any(s.missed for s in statuses) else 0)


# -- the runbooks and the crontab -------------------------------------------------------------------------
def _wanted(ws: Workspace, strict: bool) -> tuple[list[Entry], int]:
    """Every schedule entry of the valid runbooks, and how many runbooks are invalid. An invalid runbook
    stops `install` (exit 3, nothing installed); elsewhere it is shown on stderr and the rest is listed."""
    runbooks, problems = schedule.scheduled_runbooks(ws)
    wanted: list[Entry] = []
    bad_files = {p.file for p in problems}
    for runbook in runbooks:
        try:
            wanted += schedule.entries(ws, [runbook])
        except InvalidError as exc:  # a crontab line cron cannot take, an inventory gone
            problems += list(exc.problems) or [Problem(ws.display(runbook.path), None, "schedule", str(exc))]
            bad_files.add(ws.display(runbook.path))
    if problems and strict:
        raise InvalidError("invalid runbooks: nothing installed (see: runbook validate)", tuple(problems))
    for problem in problems:
        print(problem, file=sys.stderr)
    if strict:
        _warn_secrets(runbooks)
    return wanted, len(bad_files)


def _invalid_exit(invalid: int, code: int) -> int:
    """Exit 3 when some runbook was invalid (after showing the valid ones), else `code`."""
    if not invalid:
        return code
    print(f"runbook: {invalid} invalid runbook(s) left out (see: runbook validate)", file=sys.stderr)
    return int(ExitCode.INVALID)


def _warn_secrets(runbooks: Sequence[Runbook]) -> None:
    for runbook in runbooks:
        for param in runbook.parameters:
            if param.secret and param.required and param.env:
                print(f"warning: {runbook.name} needs the secret {param.name} from ${param.env}, which cron's "
                      "environment does not set: its scheduled runs will exit 3", file=sys.stderr)


def _create_private_file(path: Path) -> None:
    """The cron log, ready before the first run: the state dir 0700, the file 0600."""
    make_private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    path.chmod(0o600)


def _crontab() -> str:
    found = shutil.which("crontab")
    if not found:
        raise RunbookError("crontab not found: install cron (Debian/Ubuntu: apt-get install cron)")
    return found


def _read_crontab() -> str:
    done = subprocess.run([_crontab(), "-l"], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return done.stdout
    if "no crontab" in done.stderr.lower():
        return ""
    raise RunbookError(f"crontab -l: {done.stderr.strip() or f'exit {done.returncode}'}")


def _write_crontab(text: str) -> None:
    """Replace the crontab with `text`; nothing left removes it (`crontab -l` then says there is none)."""
    option = "-" if text else "-r"
    done = subprocess.run([_crontab(), option], input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RunbookError(f"crontab {option}: {done.stderr.strip() or f'exit {done.returncode}'}")


def _warn_orphans(wanted: Sequence[Entry], installed: Sequence[Installed]) -> None:
    stale = schedule.orphans(wanted, installed)
    if stale:
        names = ", ".join(sorted({f"{i.runbook} schedule[{i.index}]" for i in stale}))
        print(f"warning: the crontab runs entries no runbook schedules any more ({names}): "
              "run `runbook schedule install` to drop them", file=sys.stderr)


def _cron_runs(ws: Workspace, wanted: Sequence[Entry], installed: Sequence[Installed],
               now: dt.datetime) -> list[CronRun]:
    """The last cron run of each scheduled runbook, and the cron runs in each due time's grace window."""
    store = open_store(ws)
    if not store.has_history():
        return []
    columns = "SELECT id, runbook, status, exit_code, started_at FROM runs WHERE trigger = 'cron' AND runbook = ?"
    try:
        store.reap_dead_runs()
        rows: list[tuple[Any, ...]] = []
        for name in sorted({e.runbook for e in wanted}):
            rows += store.query(columns + f" ORDER BY {NEWEST_FIRST} LIMIT 1", (name,))
        for entry in wanted:
            _, item = schedule.install_state(entry, installed)
            due = schedule.checked_due(entry.schedule.cron, item.installed_at if item else None, now)
            if due is not None:
                start = due.timestamp()
                rows += store.query(columns + " AND started_at BETWEEN ? AND ?",
                                    (entry.runbook, start, start + schedule.GRACE_SECONDS))
    finally:
        store.close()
    return [CronRun(*row) for row in rows]


# -- output -----------------------------------------------------------------------------------------------
def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={schedule.param_text(v)}" for k, v in params.items()) or "-"


def _local(when: dt.datetime) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


def _when(run: CronRun | None) -> str:
    return "-" if run is None else _local(dt.datetime.fromtimestamp(run.started_at))


def _outcome(run: CronRun | None) -> str:
    return "-" if run is None else f"{run.status} (exit {'-' if run.exit_code is None else run.exit_code})"

