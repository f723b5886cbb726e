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

from runner.schedule import checks, firings, schedule
from runner.errors import ExitCode, InvalidError, Problem, RunbookError, UsageError
from runner.store.files import make_private_dir, write_private
from runner.output import emit, emit_json, table
from runner.times import human_time
from runner.schedule.schedule import CronRun, Entry, Installed
from runner.store.backends import open_store
from runner.store.base import HistoryRow, Store
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
        emit(table(("RUNBOOK", "WHEN", "CALENDAR", "PARAMS", "INVENTORY", "NEXT DUE", "INSTALLED"),
                   [(e.runbook, e.schedule.timing, _calendar(e), _params(dict(e.schedule.params)),
                     e.schedule.inventory or "-", _local(due), state) for e, state, _, due in rows]))
    elif not invalid:
        print(f"no runbook in {ws.runbooks_dir} has a schedule", file=sys.stderr)
    return _invalid_exit(invalid, 0)


def list_due_times(ws: Workspace, start_text: str | None, count: int, as_json: bool) -> int:
    """Each entry's next `count` due times from `start_text` (default now), by its calendar."""
    start = _start(start_text)
    wanted, invalid = _wanted(ws, strict=False)
    found = [(e, schedule.due_times(e, start, count)) for e in wanted]
    if as_json:
        emit_json([{**schedule.entry_dict(e), "due": [t.isoformat() for t in times]} for e, times in found])
    elif found:
        emit(table(("RUNBOOK", "ENTRY", "WHEN", "CALENDAR", "DUE"),
                   [(e.runbook, f"schedule[{e.index}]", e.schedule.timing, _calendar(e), _local_day(t))
                    for e, times in found for t in times]))
    elif not invalid:
        print(f"no runbook in {ws.runbooks_dir} has a schedule", file=sys.stderr)
    _warn_calendar_data(ws, wanted, start)
    return _invalid_exit(invalid, 0)


def _start(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now().astimezone()
    try:
        return dt.datetime.fromisoformat(text).astimezone()
    except ValueError:
        raise UsageError(f"--from: {text!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None


def _calendar(entry: Entry) -> str:
    s = entry.schedule
    if not s.calendar:
        return "-"
    return s.calendar if s.business_day is not None or s.on_holiday == "skip" else f"{s.calendar} ({s.on_holiday})"


def _warn_calendar_data(ws: Workspace, wanted: Sequence[Entry], now: dt.datetime) -> None:
    from runner.schedule.due import data_end_warning

    warnings = {data_end_warning(e.schedule, ws.config.calendars, now) for e in wanted}
    for warning in sorted(w for w in warnings if w):
        print(f"runbook: warning: {warning}", file=sys.stderr)


def install_schedules(ws: Workspace) -> int:
    before = _read_crontab()
    _wanted(ws, strict=True, crontab=before)  # refused before anything is written
    _keep_store_url(ws)
    wanted, _ = _wanted(ws, strict=False)
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
    if not checks.cron_daemon_running():
        print("warning: no cron daemon is running on this machine (no cron or crond process): nothing will "
              "start these entries until one runs (e.g. systemctl enable --now cron, or service cron start)",
              file=sys.stderr)
    return 0


def _keep_store_url(ws: Workspace) -> None:
    """RUNBOOK_DATABASE_URL in install's environment: cron's has none, so the lines name a 0600 file in the
    state dir holding it (never the URL itself, which may carry a password); without it, no file is left."""
    url = os.environ.get("RUNBOOK_DATABASE_URL")
    path = schedule.store_url_path(ws)
    if url and url != ws.config.store_url:
        make_private_dir(path.parent)
        write_private(path, url.encode() + b"\n")
    else:
        path.unlink(missing_ok=True)


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
    statuses = [schedule.schedule_status(e, installed, runs, now,
                                         refusals=firings.refusals(ws.state_dir, e.runbook, e.index)) for e in wanted]
    _warn_orphans(wanted, installed)
    _warn_calendar_data(ws, wanted, now.astimezone())
    for s in statuses:
        if s.problem:
            print(_problem_line(ws, s), file=sys.stderr)
    if as_json:
        emit_json([s.to_dict() for s in statuses])
    elif statuses:
        emit(table(("RUNBOOK", "ENTRY", "CRON", "LAST CRON RUN", "OUTCOME", "NEXT DUE", "STATE"),
                   [(s.entry.runbook, f"schedule[{s.entry.index}]", s.entry.schedule.cron, _when(s), _outcome(s),
                     _local(s.next_due), s.state) for s in statuses]))
    elif not invalid:
        print(f"no runbook in {ws.runbooks_dir} has a schedule", file=sys.stderr)
    return _invalid_exit(invalid, 1 if any(s.problem for s in statuses) else 0)


def _problem_line(ws: Workspace, s: schedule.Status) -> str:
    name = f"{s.entry.runbook} schedule[{s.entry.index}] ({s.entry.schedule.cron})"
    if s.problem == "missed" and s.checked_due is not None:
        return (f"MISSED: {name} was due at {_local(s.checked_due)}: no cron firing of this entry was recorded "
                f"within {schedule.GRACE_SECONDS // 60} minutes: neither a run nor a refusal (is cron running? "
                f"see {schedule.log_path(ws)})")
    return f"{s.problem.upper() if s.problem else ''}: {name}: its last cron firing at {_when(s)}: {_outcome(s)}"


# -- the runbooks and the crontab -------------------------------------------------------------------------
def _wanted(ws: Workspace, strict: bool, crontab: str = "") -> tuple[list[Entry], int]:
    """Every schedule entry of the valid runbooks, and how many runbooks are invalid. An invalid runbook,
    or an entry whose cron run would not run unattended, stops `install` (exit 3, nothing installed);
    elsewhere it is shown on stderr and the rest is listed."""
    runbooks, problems = schedule.scheduled_runbooks(ws)
    wanted: list[Entry] = []
    bad_files = {p.file for p in problems}
    if strict:
        before_block = schedule.split_crontab(crontab, ws.root)[0]
        problems += checks.install_problems(ws, runbooks, checks.crontab_environment(before_block))
    for runbook in runbooks:
        try:
            wanted += schedule.entries(ws, [runbook])
        except InvalidError as exc:  # a crontab line cron cannot take, an inventory gone
            found = list(exc.problems) or [Problem(ws.display(runbook.path), None, "schedule", str(exc))]
            problems += [p for p in found if not any(p.message in q.message for q in problems)]  # once, with its entry
            bad_files.add(ws.display(runbook.path))
    if problems and strict:
        raise InvalidError("schedule entries that would not run: nothing installed", tuple(problems))
    for problem in problems:
        print(problem, file=sys.stderr)
    return wanted, len(bad_files)


def _invalid_exit(invalid: int, code: int) -> int:
    """Exit 3 when some runbook was invalid (after showing the valid ones), else `code`."""
    if not invalid:
        return code
    print(f"runbook: {invalid} invalid runbook(s) left out (see: runbook validate)", file=sys.stderr)
    return int(ExitCode.INVALID)


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
    """Per scheduled runbook, its cron runs newest first until each entry has its last one and every due
    time's grace window is covered; each record read for the entry that fired it."""
    store = open_store(ws)
    if not store.has_history():
        return []
    found: list[CronRun] = []
    try:
        store.reap_dead_runs()
        for name in sorted({e.runbook for e in wanted}):
            mine = [e for e in wanted if e.runbook == name]
            found += _runs_of(store, mine, _earliest_due(mine, installed, now))
    finally:
        store.close()
    return found


def _earliest_due(entries: Sequence[Entry], installed: Sequence[Installed], now: dt.datetime) -> float:
    dues = [schedule.checked_due(e.timing, item.installed_at, now)
            for e in entries for _, item in [schedule.install_state(e, installed)] if item]
    return min((d.timestamp() for d in dues if d is not None), default=float("inf"))


def _runs_of(store: Store, entries: Sequence[Entry], earliest_due: float) -> list[CronRun]:
    found: list[CronRun] = []
    missing = {e.index for e in entries}
    for row in store.cron_runs(entries[0].runbook):
        if not missing and row.started_at < earliest_due:
            break
        run = _cron_run(store, row)
        if run is not None:
            found.append(run)
            missing -= {e.index for e in entries if schedule.fired_by(run, e, "yes")}
    return found


def _cron_run(store: Store, row: HistoryRow) -> CronRun | None:
    try:
        record = store.load(row.id)
    except RunbookError:
        return None  # unreadable: `runbook history` shows it as damaged
    waiting = next((st.started_at for st in record.steps if st.status == "waiting"), None)
    return CronRun(row.id, row.runbook, row.status, row.exit_code, row.started_at, record.schedule_entry,
                   waiting if row.status == "waiting" else None, row.operator)


# -- output -----------------------------------------------------------------------------------------------
def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={schedule.param_text(v)}" for k, v in params.items()) or "-"


def _local(when: dt.datetime) -> str:
    """A due time as every view writes a time for people (runner/times.py)."""
    return human_time(when.timestamp())


def _local_day(when: dt.datetime) -> str:
    """A due time with its weekday, which a calendar decides on: `2027-01-12 09:00:00 JST Tue`."""
    return f"{human_time(when.timestamp())} {when.strftime('%a')}"


def _stamp(ts: float) -> str:
    return human_time(ts)


def _when(s: schedule.Status) -> str:
    """When the entry last fired: its refusal's time, else its last run's start."""
    if s.refused and s.last_refusal is not None:
        return _stamp(s.last_refusal.at)
    return "-" if s.last_run is None else _stamp(s.last_run.started_at)


def _outcome(s: schedule.Status) -> str:
    """The entry's last firing as a word an operator reads: succeeded, failed (exit 1), waiting since
    TIME, running, refused: locked by RUN (operator@host)."""
    run = s.last_run
    if s.refused and s.last_refusal is not None:
        return s.last_refusal.outcome
    if run is None:
        return "-"
    if run.status == "waiting":
        return f"waiting since {_stamp(run.waiting_since or run.started_at)} (runbook resume {run.id})"
    if run.status in ("succeeded", "running"):
        return run.status
    return f"{run.status} (exit {'-' if run.exit_code is None else run.exit_code})"

