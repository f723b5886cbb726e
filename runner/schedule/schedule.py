"""Cron entries from the runbooks' `schedule:` blocks: one crontab line per entry, kept in a block of the
user's crontab that belongs to one workspace, and the status of each entry (last cron run, next due
time, a due time that passed without a run). Pure functions over crontab text: only
runner/commands/schedule.py calls the `crontab` binary."""
from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.definition.cron import crontab_problem, parse_cron
from runner.errors import InvalidError, Problem, RunbookError
from runner.definition.loader import check_runbook
from runner.definition.model import Runbook, Schedule
from runner.definition.workspace import Workspace
from runner.schedule import due as dues
from runner.schedule.firings import ENTRY_VARIABLE, FOLDER as FIRINGS_FOLDER, Refusal

GRACE_SECONDS = 600  # a cron run counts for a due time when it starts within this window after it
LOG_NAME = "cron.log"
_SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
_NUMBERS = {  # month and weekday names as cron numbers
    **{m: str(i) for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec"), 1)},
    **{d: str(i) for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
}
_META = re.compile(r"^# (?P<runbook>\S+) schedule\[(?P<index>\d+)\] installed (?P<at>\S+)$")
_MAX_COMMAND = 998  # cron refuses a longer command (its buffer holds 1000 bytes)


@dataclass(frozen=True)
class Entry:
    """One `schedule:` entry of one runbook and the crontab line that runs it."""

    runbook: str
    index: int
    schedule: Schedule
    line: str
    siblings: int = 1  # how many entries the runbook has (a run that recorded no entry is one of them)
    rule: dues.Rule | None = None  # when it is due, by its calendar (None: by its cron expression alone)

    @property
    def timing(self) -> dues.Rule:
        return self.rule or dues.Rule(cron=parse_cron(self.schedule.cron))


@dataclass(frozen=True)
class Installed:
    """One line of a workspace's block in the crontab, with the install time its comment records."""

    runbook: str
    index: int
    line: str
    installed_at: float | None


@dataclass(frozen=True)
class CronRun:
    id: str
    runbook: str
    status: str
    exit_code: int | None
    started_at: float
    entry: int | None = None  # the schedule[N] that fired it (None: recorded before runs said so)
    waiting_since: float | None = None  # when a waiting run began waiting
    operator: str = ""


@dataclass(frozen=True)
class Status:
    entry: Entry
    installed: str  # yes | outdated (the crontab runs an older line: install again) | no
    installed_at: float | None
    next_due: dt.datetime  # local time, as cron reads the crontab
    checked_due: dt.datetime | None  # the latest due time since install whose grace window has closed
    last_run: CronRun | None  # this entry's own last cron run
    missed: bool
    last_refusal: Refusal | None = None  # this entry's last firing refused before a run started

    @property
    def refused(self) -> bool:
        """The entry's last firing was refused (no run), newer than its last run."""
        refusal, run = self.last_refusal, self.last_run
        return refusal is not None and (run is None or refusal.at >= run.started_at)

    @property
    def failed(self) -> bool:
        return not self.refused and self.last_run is not None and self.last_run.status in FAILED

    @property
    def problem(self) -> str | None:
        """missed, refused or failed: what makes `schedule status` exit 1."""
        if self.installed == "no":
            return None
        return "missed" if self.missed else "refused" if self.refused else "failed" if self.failed else None

    @property
    def state(self) -> str:
        if self.installed == "no":
            return "not installed"
        if self.problem:
            return self.problem.upper()
        return "ok" if self.checked_due is not None else "pending"

    def to_dict(self) -> dict[str, Any]:
        run, refusal = self.last_run, self.last_refusal
        return {
            **entry_dict(self.entry), "installed": self.installed == "yes", "install_state": self.installed,
            "installed_at": iso_local(self.installed_at),
            "next_due": self.next_due.isoformat(), "checked_due": self.checked_due and self.checked_due.isoformat(),
            "missed": self.missed, "state": self.state, "problem": self.problem,
            "last_run": run and {"id": run.id, "status": run.status, "exit_code": run.exit_code,
                                 "started_at": iso_local(run.started_at),
                                 "waiting_since": iso_local(run.waiting_since)},
            "last_refusal": refusal and {"at": iso_local(refusal.at), "exit_code": refusal.exit_code,
                                         "holder": refusal.holder or None, "holder_who": refusal.holder_who or None,
                                         "outcome": refusal.outcome},
            "last_firing": "refusal" if self.refused else "run" if run else None,
        }


FAILED = frozenset({"failed", "timed_out", "canceled", "aborted", "damaged"})


# -- the runbooks' schedules ---------------------------------------------------------------------------
def scheduled_runbooks(ws: Workspace) -> tuple[list[Runbook], list[Problem]]:
    """Every valid runbook with a schedule, and the problems of the invalid ones."""
    found: list[Runbook] = []
    problems: list[Problem] = []
    for path in ws.runbook_files():
        runbook, found_problems = check_runbook(path, ws.display(path), ws.state_dir / "cache" / "validated")
        problems += found_problems
        if runbook is not None and runbook.schedule:
            found.append(runbook)
    return found, problems


def entries(ws: Workspace, runbooks: Sequence[Runbook], command: Sequence[str] | None = None) -> list[Entry]:
    invocation = tuple(command or runbook_command())
    return [Entry(rb.name, i, s, crontab_line(ws, invocation, rb.name, s, i), len(rb.schedule), entry_rule(ws, rb, i))
            for rb in runbooks for i, s in enumerate(rb.schedule)]


def entry_rule(ws: Workspace, runbook: Runbook, index: int) -> dues.Rule:
    """schedule[index]'s timing with its calendar; InvalidError naming the entry for an unknown calendar."""
    entry = runbook.schedule[index]
    try:
        return dues.rule_for(entry, ws.config.calendars)
    except KeyError:
        where = f"schedule[{index}].calendar"
        line = runbook.lines.get(where) or runbook.lines.get(f"schedule[{index}]")
        message = dues.calendar_problems(entry, ws.config.calendars, dt.datetime.now().astimezone())[0]
        raise InvalidError(f"{runbook.name}: {message}",
                           (Problem(ws.display(runbook.path), line, where, message),)) from None


def entry_dict(entry: Entry) -> dict[str, Any]:
    s = entry.schedule
    return {"runbook": entry.runbook, "index": entry.index, "cron": s.cron, "timing": s.timing,
            "calendar": s.calendar, "on_holiday": s.on_holiday if s.calendar else None, "params": dict(s.params),
            "inventory": s.inventory, "limit": s.limit, "waits": s.waits}


# -- one crontab line ----------------------------------------------------------------------------------
def runbook_command() -> list[str]:
    """The `runbook` executable by absolute path: the one beside this Python (a virtualenv), else on PATH."""
    beside = Path(sys.executable).absolute().parent / "runbook"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("runbook")
    return [str(Path(found).absolute())] if found else [str(Path(sys.executable).absolute()), "-m", "runner"]


def default_state_dir(ws: Workspace) -> Path:
    """The state dir a run finds without RUNBOOK_STATE_DIR: runbook.toml's, else <workspace>/.runbook."""
    if ws.config.state_dir:
        return (ws.root / Path(ws.config.state_dir).expanduser()).resolve()
    return ws.root / ".runbook"


def log_path(ws: Workspace) -> Path:
    return ws.state_dir / "logs" / LOG_NAME


def store_url_path(ws: Workspace) -> Path:
    """Where `install` keeps RUNBOOK_DATABASE_URL for the crontab lines (0600: a URL may hold a password)."""
    return ws.state_dir / FIRINGS_FOLDER / "database.url"


def crontab_line(ws: Workspace, command: Sequence[str], name: str, schedule: Schedule, index: int = 0) -> str:
    """`schedule` (the runbook's schedule[index]) as a crontab line that works in cron's bare environment
    (PATH=/usr/bin:/bin, maybe no HOME, cwd $HOME): absolute paths only, the entry's index for the run to
    record, output appended to the state dir's cron log, and a line with the exit code and time when the
    run does not succeed."""
    bin_dir = str(Path(command[0]).parent)  # ansible-playbook and ssh are found beside it or in the system
    env = [f"PATH={shlex.quote(':'.join(dict.fromkeys([bin_dir, *_SYSTEM_PATH])))}", f"{ENTRY_VARIABLE}={index}"]
    if ws.state_dir != default_state_dir(ws):
        env.append(f"RUNBOOK_STATE_DIR={shlex.quote(str(ws.state_dir))}")
    if store_url_path(ws).is_file():  # `install` saw RUNBOOK_DATABASE_URL: the runs go to the same store
        env.append(f"RUNBOOK_DATABASE_URL_FILE={shlex.quote(str(store_url_path(ws)))}")
    # No --non-interactive: cron gives no terminal, which implies it, and a crontab command holds 998 bytes.
    argv = [*command, "-w", str(ws.root), "run", name, "--trigger", "cron", "-q"]
    if schedule.inventory:
        argv += ["-i", str(ws.inventory_path(schedule.inventory).absolute())]
    if schedule.limit:
        argv += ["-l", schedule.limit]
    for key, value in schedule.params.items():
        argv += ["-p", f"{key}={param_text(value)}"]
    log = shlex.quote(str(log_path(ws)))
    run = " ".join(env + [shlex.quote(a) for a in argv])
    command_text = (f"umask 077; {{ {run} || echo \"runbook cron: {name} exit $? at $(date -u +%FT%TZ)\"; }} "
                    f">>{log} 2>&1")
    escaped = escape_percent(command_text, name)
    if len(escaped.encode()) > _MAX_COMMAND:
        raise InvalidError(f"{name}: its crontab command would be {len(escaped.encode())} bytes, more than cron "
                           f"takes ({_MAX_COMMAND}): use shorter paths or fewer schedule params")
    return f"{cron_time(firing_cron(schedule))} {escaped}"


def firing_cron(schedule: Schedule) -> str:
    """When cron starts the entry's line: its own expression, or, where a calendar can move a due time to
    another day (next, previous) or picks the day itself (business-day), every day at its times of day;
    the run then asks the calendar whether this minute is due (runner/schedule/due.py)."""
    if not schedule.calendar or (schedule.business_day is None and schedule.on_holiday == "skip"):
        return schedule.cron
    expr = parse_cron(schedule.cron)
    return f"{','.join(map(str, sorted(expr.minutes)))} {','.join(map(str, sorted(expr.hours)))} * * *"


def param_text(value: Any) -> str:
    """A schedule's YAML value as the text `-p NAME=TEXT` turns back into the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def escape_percent(command: str, name: str) -> str:
    """cron turns an unescaped % into a newline; `\\%` gives a %. A backslash before a % in the text
    itself cannot be written for cron, so it is refused rather than installed broken."""
    problem = crontab_problem(command)
    if problem:
        raise InvalidError(f"{name}: a schedule value {problem}")
    return command.replace("%", "\\%")


def cron_time(text: str) -> str:
    """The time fields for the crontab: macros as they are, names as numbers (some crons refuse
    ranges of names such as mon-fri)."""
    parse_cron(text)  # the loader validated it; a hand-built Schedule is checked here too
    fields = text.strip().lower().split()
    if len(fields) == 1:
        return fields[0]
    return " ".join(fields[:3] + [re.sub("[a-z]{3}", lambda m: _NUMBERS[m.group()], f) for f in fields[3:]])


def cron_command(line: str) -> str:
    """The shell command cron runs for `line` (what follows the time fields, `\\%` read back as %)."""
    fields = line.split(None, 1 if line.startswith("@") else 5)
    command = fields[-1]
    out: list[str] = []
    escaped = False
    for ch in command:
        if escaped:
            out.append(ch if ch == "%" else "\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            break  # the rest would be the command's stdin
        else:
            out.append(ch)
    return "".join(out) + ("\\" if escaped else "")


# -- the workspace's block in the crontab ----------------------------------------------------------------
def begin_marker(root: Path) -> str:
    return f"# BEGIN runbook {root}"


def end_marker(root: Path) -> str:
    return f"# END runbook {root}"


def render_block(root: Path, wanted: Sequence[Entry], previous: Sequence[Installed], now: float) -> str:
    """The block for `wanted`; a line already installed keeps its install time, so installing again
    changes nothing."""
    kept = {p.line: p.installed_at for p in previous if p.installed_at is not None}
    notice = (f"# Managed by `runbook schedule install`: edits inside this block are replaced. "
              f"Remove it with: runbook -w {shlex.quote(str(root))} schedule remove")
    lines = [begin_marker(root), notice]
    for entry in wanted:
        at = kept.get(entry.line, now)
        lines += [f"# {entry.runbook} schedule[{entry.index}] installed {iso_utc(at)}", entry.line]
    return "\n".join(lines + [end_marker(root)]) + "\n"


def split_crontab(text: str, root: Path) -> tuple[str, str, str]:
    """(before, this workspace's block, after); the block is "" when absent. Several blocks of the
    same workspace (an old hand edit) come back as one, at the first one's place."""
    begin, end = begin_marker(root), end_marker(root)
    outside: list[str] = []
    inside: list[str] = []
    position: int | None = None
    in_block = False
    for line in _lines(text, keepends=True):
        bare = line.rstrip("\r\n")
        if not in_block and bare == begin:
            in_block = True
            position = len(outside) if position is None else position
            inside.append(line)
        elif in_block:
            inside.append(line)
            in_block = bare != end
        else:
            outside.append(line)
    if in_block:
        raise RunbookError(f"the crontab has `{begin}` without its `{end}` line: fix it with crontab -e")
    if position is None:
        return text, "", ""
    return "".join(outside[:position]), "".join(inside), "".join(outside[position:])


def _lines(text: str, keepends: bool = False) -> list[str]:
    """`text` split as cron splits a crontab: at \n only (str.splitlines would also split at VT, FF, NEL,
    U+2028..., turning one entry into several)."""
    lines = text.split("\n")
    if keepends:
        lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    elif lines and not lines[-1]:
        lines.pop()
    return lines


def parse_block(block: str) -> list[Installed]:
    found: list[Installed] = []
    meta: re.Match[str] | None = None
    for line in _lines(block):
        if not line.strip():
            continue
        if line.startswith("#"):
            meta = _META.match(line) or meta
            continue
        if meta:
            found.append(Installed(meta["runbook"], int(meta["index"]), line, parse_utc(meta["at"])))
        else:
            found.append(Installed("?", -1, line, None))
        meta = None
    return found


def installed_entries(crontab: str, root: Path) -> list[Installed]:
    return parse_block(split_crontab(crontab, root)[1])


def install(crontab: str, root: Path, wanted: Sequence[Entry], now: float) -> str:
    """`crontab` with this workspace's block holding `wanted` (no block when nothing is wanted); every
    other line stays as it was, byte for byte."""
    before, block, after = split_crontab(crontab, root)
    if not block and before and not before.endswith("\n"):
        before += "\n"  # a crontab's last line needs its newline
    new_block = render_block(root, wanted, parse_block(block), now) if wanted else ""
    return before + new_block + after


def remove(crontab: str, root: Path) -> str:
    before, _, after = split_crontab(crontab, root)
    return before + after


# -- status ------------------------------------------------------------------------------------------------
def install_state(entry: Entry, installed: Sequence[Installed]) -> tuple[str, Installed | None]:
    for item in installed:
        if item.line == entry.line:
            return "yes", item
    for item in installed:
        if (item.runbook, item.index) == (entry.runbook, entry.index):
            return "outdated", item
    return "no", None


def orphans(wanted: Sequence[Entry], installed: Sequence[Installed]) -> list[Installed]:
    """Installed lines no schedule asks for any more (a runbook or an entry was removed)."""
    lines = {e.line for e in wanted}
    keys = {(e.runbook, e.index) for e in wanted}
    return [i for i in installed if i.line not in lines and (i.runbook, i.index) not in keys]


def next_due(entry: Entry, now: dt.datetime) -> dt.datetime:
    """The next time `entry` is due (by its calendar), as an aware local time; `now` is naive local time."""
    found = dues.next_due(entry.timing, now.astimezone())
    return found or parse_cron(entry.schedule.cron).next_after(now).astimezone()


def calendar_skip(ws: Workspace, runbook: Runbook, index: int, now: dt.datetime | None = None) -> str | None:
    """Why the cron firing of schedule[index] at `now` starts no run by its calendar, or None when it is
    due. The minute before counts too (a slow start may cross into the next minute), but only on the same
    day: the first minute of a day off is not due because the last minute of a working day was."""
    rule = entry_rule(ws, runbook, index)
    now = (now or dt.datetime.now()).astimezone()
    before = now - dt.timedelta(minutes=1)
    if before.date() == now.date() and dues.is_due(rule, before):
        return None
    return dues.skip_reason(rule, now)


def due_times(entry: Entry, start: dt.datetime, count: int) -> list[dt.datetime]:
    """The entry's next `count` due times from `start` (aware), by its calendar."""
    return dues.due_times(entry.timing, start, count)


def checked_due(rule: dues.Rule, installed_at: float | None, now: dt.datetime,
                grace: float = GRACE_SECONDS) -> dt.datetime | None:
    """The latest due time (by the entry's calendar: a day off is no due time) whose grace window has
    closed by `now`, if it is at or after the install time: cron should have started a run for it. `now`
    is naive local time, as cron reads the crontab."""
    if installed_at is None:
        return None
    due = dues.previous_due(rule, (now - dt.timedelta(seconds=grace)).astimezone())
    if due is None or due.timestamp() < installed_at:
        return None
    return due.replace(tzinfo=None)


def schedule_status(entry: Entry, installed: Sequence[Installed], runs: Sequence[CronRun], now: dt.datetime,
                    grace: float = GRACE_SECONDS, refusals: Sequence[Refusal] = ()) -> Status:
    """`entry`'s status from the crontab's block, the cron runs of its runbook (at least each entry's last
    one and every one started since the due time to check) and the entry's refused firings. `now` is
    naive local time."""
    state, item = install_state(entry, installed)
    installed_at = item.installed_at if item else None
    due = checked_due(entry.timing, installed_at, now, grace) if item else None
    own = [r for r in runs if r.runbook == entry.runbook and fired_by(r, entry, state)]
    fired = [r.started_at for r in own] + [r.at for r in refusals]
    missed = due is not None and not any(0 <= at - due.timestamp() <= grace for at in fired)
    last = max(own, key=lambda r: r.started_at, default=None)
    refusal = max(refusals, key=lambda r: r.at, default=None)
    return Status(entry, state, installed_at, next_due(entry, now), due and due.astimezone(), last, missed, refusal)


def fired_by(run: CronRun, entry: Entry, install_state: str) -> bool:
    """Whether `entry`'s line started `run`. A run that recorded no entry (an older line) counts for
    the runbook's only entry, or for an entry whose installed line is that older one."""
    if run.entry is not None:
        return run.entry == entry.index
    return entry.siblings == 1 or install_state == "outdated"


# -- times ----------------------------------------------------------------------------------------------------
def iso_utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def iso_local(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts).astimezone().isoformat()
