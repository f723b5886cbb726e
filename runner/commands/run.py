from __future__ import annotations

import functools
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner import identity
from runner.definition.durations import parse_duration
from runner.errors import RunbookError, UsageError
from runner.definition.loader import load_runbook
from runner.definition.model import Parameter, Runbook
from runner.output import check_writable, emit_json, write_file
from runner.definition.params import parse_assignments, read_params_file, resolve
from runner.execution.progress import Progress
from runner.schedule import firings
from runner.store.records import RunRecord
from runner.definition.workspace import Workspace


def interactive_session(non_interactive: bool) -> bool:
    """--non-interactive is implied when stdin is not a terminal or CI is set."""
    return not non_interactive and sys.stdin.isatty() and not identity.is_ci()


def cron_refusals_recorded(func: Callable[..., int]) -> Callable[..., int]:
    """A cron firing refused before its run started leaves a refusal where `schedule status` reads it."""
    @functools.wraps(func)
    def wrapper(ws: Workspace, name: str, *args: Any, **kwargs: Any) -> int:
        try:
            return func(ws, name, *args, **kwargs)
        except RunbookError as exc:
            entry = firings.entry_of(kwargs.get("trigger"))
            if entry is not None and int(exc.exit_code) in firings.REFUSED_CODES:
                try:
                    firings.record_refusal(ws.state_dir, name, entry, _refusal(ws, exc))
                except (RunbookError, OSError) as unrecorded:  # the refusal itself stays the error shown
                    print(f"runbook: warning: the refusal was not recorded: {unrecorded}", file=sys.stderr)
            raise
    return wrapper


def _refusal(ws: Workspace, exc: RunbookError) -> firings.Refusal:
    from runner.store.records import now

    holder = firings.lock_holder(str(exc)) if int(exc.exit_code) == 6 else ""
    who = ""
    if holder:
        try:
            from runner.store.backends import open_store

            record = open_store(ws).load(holder)
            host = record.hostname
            shown_host = host and not record.operator.endswith(f"@{host}")
            who = f"{record.operator} on {host}" if shown_host else record.operator
        except (RunbookError, OSError):
            who = ""  # the holder's record is unreadable: the refusal still names its id
    problems = [str(p) for p in getattr(exc, "problems", ())]  # the first one is what `schedule status` shows
    return firings.Refusal(now(), int(exc.exit_code), "\n".join([*problems, str(exc)]), holder, who)


@cron_refusals_recorded
def run(
    ws: Workspace,
    name: str,
    assignments: list[str],
    params_file: str | None,
    inventory: str | None = None,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    forks: int | None = None,
    yes: bool = False,
    non_interactive: bool = False,
    as_json: bool = False,
    trigger: str | None = None,
    wait_lock: str | None = None,
    quiet: bool = False,
    verbose: bool = False,
    junit: str | None = None,
    worker: str | None = None,
    run_id: str | None = None,
) -> int:
    """`run_id`: the id the run was given ahead (execution/ahead.py), used if still free."""
    from runner.execution.executor import Execution, RunRequest  # imports ansible_runner lazily below it
    from runner.store.backends import open_store

    if junit:
        check_writable(Path(junit), "--junit")  # refused before anything runs, not after
    open_store(ws).require_writable()  # a read-only state dir: a clear refusal before anything runs
    path = ws.runbook_path(name)
    runbook = load_runbook(path, ws.display(path), cache=ws.state_dir / "cache" / "validated")
    if _not_due_today(ws, runbook, firings.entry_of(trigger)):
        return 0
    interactive = interactive_session(non_interactive)
    file_values = read_params_file(Path(params_file)) if params_file else {}
    params = resolve(runbook, parse_assignments(assignments), file_values, os.environ,
                     prompt_secret=_ask_secret if interactive else None, display=ws.display(path))
    try:
        wait = parse_duration(wait_lock) if wait_lock else None
    except ValueError as exc:
        raise UsageError(f"--wait-lock: {exc}") from None
    if forks is not None and forks < 1:
        raise UsageError("--forks must be at least 1")
    from runner.execution.signoffs import Signer

    signer = Signer.for_workspace(ws, identity.operator())  # [team] on: the principal of the key, else a label
    request = RunRequest(
        params=params, operator=signer.who, trigger=trigger or identity.default_trigger(),
        inventory=inventory, limit=limit, check=check, diff=diff, forks=forks,
        ci_job_url=identity.ci_job_url(), interactive=interactive, wait_lock=wait, worker=worker, run_id=run_id,
        schedule_entry=firings.entry_of(trigger),
    )
    execution = Execution(ws, runbook, request, Progress(quiet=quiet, verbose=verbose), signer=signer)
    if interactive and runbook.kind == "maintenance" and not check and not yes:
        if not _confirm(f"Run maintenance {runbook.name} {runbook.version} on {execution.inventory} "
                        f"(hosts: {execution.limit})?"):
            print("not started", file=sys.stderr)
            return 0
    record = execution.start()
    publish(ws, record, junit)
    if as_json:
        emit_json(record.to_dict())
    return int(record.exit_code or 0)


def _not_due_today(ws: Workspace, runbook: Runbook, entry: int | None) -> bool:
    """A cron firing of an entry with a calendar that is not due now (a day off, a moved or monthly due
    time): says why on stdout, which the crontab line appends to the cron log, and records no run."""
    if entry is None or entry >= len(runbook.schedule) or not runbook.schedule[entry].calendar:
        return False
    from runner.schedule.schedule import calendar_skip

    reason = calendar_skip(ws, runbook, entry)
    if reason:
        print(f"runbook cron: {runbook.name} schedule[{entry}] not run: {reason}", flush=True)
    return reason is not None


def publish(ws: Workspace, record: RunRecord, junit: str | None) -> None:
    """The run for CI: a JUnit file when asked, and the job summary where GITHUB_STEP_SUMMARY is set."""
    if junit:
        from runner.reports.junit import junit_xml
        from runner.store.backends import open_store

        try:
            write_file(Path(junit), junit_xml(record, open_store(ws).run_dir(record.id)), "--junit")
        except UsageError as exc:  # checked before the run; if it fails now, the run's outcome stands
            print(f"runbook: warning: {exc}", file=sys.stderr)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        from runner.reports.summary import markdown

        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown(record))


def _ask_secret(param: Parameter) -> str:
    return getpass.getpass(f"{param.name} ({param.description or 'secret'}): ")


def _confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except (EOFError, OSError):  # end of input or a terminal gone (EIO): not started, nothing recorded
        return False
    return answer.strip().lower() in ("y", "yes")
