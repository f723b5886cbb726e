from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from runner import identity
from runner.commands.run import interactive_session, publish
from runner.errors import InvalidError, Problem, RunbookError, UsageError
from runner.execution.executor import Execution, ResumeAction, RunRequest
from runner.definition.loader import load_runbook
from runner.execution.manual import approvers
from runner.definition.params import ResolvedParams
from runner.execution.progress import Progress
from runner.output import check_writable
from runner.store.records import RunRecord, Signoff, StepRecord, now
from runner.store.backends import open_store
from runner.store.base import Store
from runner.definition.workspace import Workspace


def resume(ws: Workspace, ref: str, confirm: bool, note: str, non_interactive: bool = False,
           junit: str | None = None, quiet: bool = False) -> int:
    """Continue a run waiting at a manual step or an approval, in the same run."""
    if junit:
        check_writable(Path(junit), "--junit")
    store = open_store(ws)
    store.require_writable()
    record = store.load(resolve_waiting(store, ref))
    step = waiting_step(record)
    interactive = interactive_session(non_interactive)
    execution = execution_for(ws, record, interactive, quiet)
    if not quiet:
        print(f"resuming run {record.id} at step {step.index + 1} {step.name!r}", file=sys.stderr)
    done = execution.resume(record, ResumeAction(identity.operator(), confirm=confirm, note=note))
    publish(ws, done, junit)
    return int(done.exit_code or 0)


def approve(ws: Workspace, ref: str, reject: bool, note: str) -> int:
    """Record an approval (or a rejection) by someone other than the run's operator."""
    store = open_store(ws)
    record = store.load(resolve_waiting(store, ref))
    step = waiting_step(record)
    if step.type != "approval":
        raise UsageError(f"run {record.id} waits at the manual step {step.name!r}, not an approval: "
                         f"continue it with: runbook resume {record.id}")
    who = identity.operator()
    if who == record.operator:
        raise RunbookError(f"{who} started run {record.id} and cannot approve it: an approval must come "
                           "from someone other than the run's operator")
    if who in approvers(step):
        raise UsageError(f"{who} has already approved run {record.id}")
    if reject:
        done = execution_for(ws, record, interactive=False).resume(
            record, ResumeAction(who, note=note, reject=True))
        print(f"run {record.id} rejected by {who}: {done.status}", file=sys.stderr)
        return 0
    needed = _required_approvers(ws, record, step)  # refuses a workspace whose runbook file differs
    step.signoffs.append(Signoff(who, now(), note, decision="approved"))
    store.save(record)
    have = len(approvers(step))
    print(f"run {record.id}: approved by {who} ({have}/{needed})", file=sys.stderr)
    if have >= needed:
        print(f"continue with: runbook resume {record.id}", file=sys.stderr)
    return 0


def resolve_waiting(store: Store, ref: str) -> str:
    """RUN for resume and approve: `last` is the one waiting real run; rehearsals (--check, which no longer
    wait, but older ones may) are never picked. Refused (exit 2, listing each waiting run with its step,
    hosts and whether it is a rehearsal) when several real runs wait, or only rehearsals do; with none
    waiting it is the last run, as elsewhere."""
    if ref != "last":
        return store.resolve(ref)
    waiting = store.history(status="waiting", limit=100)
    real = [row for row in waiting if not row.check_mode]
    if len(real) == 1:
        return real[0].id
    if not waiting:
        return store.resolve(ref)
    if real:
        first = f"{len(real)} runs are waiting; `last` could mean any of them: give the run id"
    else:
        first = "no real run is waiting, only rehearsals (--check), which `last` never picks: give the run id"
    raise UsageError("\n".join([first, *(_waiting_line(store, row.id) for row in waiting)]))


def _waiting_line(store: Store, run_id: str) -> str:
    record = store.load(run_id)
    step = next((s for s in record.steps if s.status == "waiting"), None)
    at = f"step {step.index + 1} {step.name!r} ({step.type})" if step else "?"
    hosts = ", ".join(record.hosts()) or record.limit
    kind = "  REHEARSAL (--check)" if record.check else ""
    return f"  {record.id}  {record.runbook}  waits at {at}  hosts: {hosts}  operator: {record.operator}{kind}"


def waiting_step(record: RunRecord) -> StepRecord:
    if record.status != "waiting":
        raise UsageError(f"run {record.id} is {record.status}, not waiting: there is nothing to continue")
    return next(s for s in record.steps if s.status == "waiting")


def _required_approvers(ws: Workspace, record: RunRecord, step: StepRecord) -> int:
    path = ws.runbook_path(record.runbook)
    runbook = load_runbook(path, ws.display(path))
    if runbook.sha256 != record.runbook_sha256:
        raise InvalidError(f"{ws.display(path)} differs from the file run {record.id} started with (version "
                           f"{record.version} then, {runbook.version} here): approve from a workspace holding "
                           "the same runbook file")
    spec = next((s for s in runbook.steps if s.name == step.name), None)
    return spec.approval.approvers if spec is not None and spec.approval is not None else 1


def execution_for(ws: Workspace, record: RunRecord, interactive: bool, quiet: bool = False) -> Execution:
    """An Execution that continues `record` exactly as it started: same runbook file, parameters,
    inventory, limit and modes. Secrets are not stored: they come again from their env: variable."""
    path = ws.runbook_path(record.runbook)
    runbook = load_runbook(path, ws.display(path), cache=ws.state_dir / "cache" / "validated")
    if runbook.sha256 != record.runbook_sha256:
        raise InvalidError(f"{ws.display(path)} changed since run {record.id} started (version {record.version} "
                           f"then, {runbook.version} now): finish or cancel the run with the file it started with")
    values = {k: v for k, v in record.params.items() if k in {p.name for p in runbook.parameters}}
    problems = []
    for param in runbook.parameters:
        if not param.secret:
            continue
        value = os.environ.pop(param.env, None) if param.env else None
        if value is None and interactive:
            value = getpass.getpass(f"{param.name} (secret, needed to continue): ")
        if value is None and param.required:
            problems.append(Problem(ws.display(path), param.line, f"parameters.{param.name}",
                                    f"secrets are never stored: set {param.env or 'its env variable'} to continue"))
        values[param.name] = value
    if problems:
        raise InvalidError("cannot continue: nothing was run", tuple(problems))
    params = ResolvedParams(values, frozenset(p.name for p in runbook.parameters if p.secret))
    request = RunRequest(params=params, operator=record.operator, trigger=record.trigger,
                         inventory=record.inventory, check=record.check, diff=record.diff, forks=record.forks,
                         ci_job_url=record.ci_job_url, interactive=interactive, worker=record.worker or None)
    execution = Execution(ws, runbook, request, Progress(quiet=quiet))
    execution.limit = record.limit
    return execution
