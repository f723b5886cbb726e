from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from runner import identity
from runner.definition.durations import parse_duration
from runner.errors import UsageError
from runner.definition.loader import load_runbook
from runner.definition.model import Parameter
from runner.output import check_writable, emit_json, write_file
from runner.definition.params import parse_assignments, read_params_file, resolve
from runner.execution.progress import Progress
from runner.store.records import RunRecord
from runner.definition.workspace import Workspace


def interactive_session(non_interactive: bool) -> bool:
    """--non-interactive is implied when stdin is not a terminal or CI is set."""
    return not non_interactive and sys.stdin.isatty() and not identity.is_ci()


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
