from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

from runner import identity
from runner.commands.run import interactive_session, publish
from runner.errors import InvalidError, Problem, RunbookError, UsageError
from runner.execution.executor import Execution, ResumeAction, RunRequest
from runner.definition.loader import load_runbook
from runner.definition.model import Approval, Runbook
from runner.execution.signoffs import Signer, counted_approvers, in_groups
from runner.definition.params import ResolvedParams, coerce, forget_secrets
from runner.execution.progress import Progress
from runner.output import check_writable
from runner.store.records import RunRecord, StepRecord
from runner.store.backends import open_store
from runner.store.base import Store
from runner.definition.workspace import Workspace


def resume(ws: Workspace, ref: str, confirm: bool, note: str, non_interactive: bool = False,
           junit: str | None = None, quiet: bool = False, inventory: str | None = None) -> int:
    """Continue a run waiting at a manual step or an approval, in the same run."""
    if junit:
        check_writable(Path(junit), "--junit")
    store = open_store(ws)
    store.require_writable()
    record = store.load(resolve_waiting(store, ref))
    step = waiting_step(record)
    signer = Signer.for_workspace(ws, identity.operator())
    signer.verify(record)  # again under the record's lock as it continues; this is to refuse before asking for secrets
    interactive = interactive_session(non_interactive)
    execution = execution_for(ws, record, interactive, quiet, signer, inventory)
    if not quiet:
        print(f"resuming run {record.id} at step {step.index + 1} {step.name!r}", file=sys.stderr)
    done = execution.resume(record, ResumeAction(signer.who, confirm=confirm, note=note))
    publish(ws, done, junit)
    return int(done.exit_code or 0)


def approve(ws: Workspace, ref: str, reject: bool, note: str, inventory: str | None = None) -> int:
    """Record an approval (or a rejection) by someone other than the run's operator: signed and checked
    against the team's allowed_signers with [team] on; added under the record's lock, so that approvals
    given at the same time are all kept."""
    store = open_store(ws)
    run_id = resolve_waiting(store, ref)
    signer = Signer.for_workspace(ws, identity.operator())
    who = signer.who
    if reject:
        record = store.load(run_id)
        _may_sign_off(signer, record, waiting_step(record))
        done = execution_for(ws, record, interactive=False, signer=signer, inventory=inventory).resume(
            record, ResumeAction(who, note=note, reject=True))
        print(f"run {record.id} rejected by {who}: {done.status}", file=sys.stderr)
        return 0
    with store.updating(run_id) as record:
        step = waiting_step(record)
        approval = _approval_of(ws, record, step)  # refuses a workspace whose runbook file differs
        _may_sign_off(signer, record, step)
        groups = ws.config.team.groups
        if approval is not None and not in_groups(who, approval, groups):
            raise InvalidError(f"{who} is not in {' or '.join(approval.from_groups)} ([team] groups): their "
                               f"approval would not count for run {record.id}; nothing was recorded")
        step.signoffs.append(signer.signoff(record, step.name, "approved", note))
    have = len(counted_approvers(step, approval, record.operator, groups))
    needed = approval.approvers if approval is not None else 1
    print(f"run {record.id}: approved by {who} ({have}/{needed})", file=sys.stderr)
    if have >= needed:
        print(f"continue with: runbook resume {record.id}", file=sys.stderr)
    return 0


def _may_sign_off(signer: Signer, record: RunRecord, step: StepRecord) -> None:
    """Refuse (nothing recorded) a step that is no approval, an operator approving their own run, a second
    approval by the same person, and a record holding a sign-off that does not verify."""
    if step.type != "approval":
        raise UsageError(f"run {record.id} waits at the manual step {step.name!r}, not an approval: "
                         f"continue it with: runbook resume {record.id}")
    signer.verify(record)
    who = signer.who
    if identity.same_person(who, record.operator):
        refusal = InvalidError if signer.signed else RunbookError  # a proven identity: exit 3
        raise refusal(f"{who} started run {record.id} and cannot approve it: an approval must come "
                      "from someone other than the run's operator")
    if any(s.decision == "approved" and identity.same_person(s.who, who) for s in step.signoffs):
        raise UsageError(f"{who} has already approved run {record.id}")


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


def _approval_of(ws: Workspace, record: RunRecord, step: StepRecord) -> Approval | None:
    path = ws.runbook_path(record.runbook)
    runbook = load_runbook(path, ws.display(path))
    if runbook.sha256 != record.runbook_sha256:
        raise InvalidError(f"{ws.display(path)} differs from the file run {record.id} started with (version "
                           f"{record.version} then, {runbook.version} here): approve from a workspace holding "
                           "the same runbook file")
    spec = next((s for s in runbook.steps if s.name == step.name), None)
    return spec.approval if spec is not None else None


def execution_for(ws: Workspace, record: RunRecord, interactive: bool, quiet: bool = False,
                  signer: Signer | None = None, inventory: str | None = None) -> Execution:
    """An Execution that continues `record` exactly as it started: same runbook file, parameters,
    inventory, limit and modes. Secrets are not stored: they come again from their env: variable."""
    path = ws.runbook_path(record.runbook)
    runbook = load_runbook(path, ws.display(path), cache=ws.state_dir / "cache" / "validated")
    if runbook.sha256 != record.runbook_sha256:
        raise InvalidError(f"{ws.display(path)} changed since run {record.id} started (version {record.version} "
                           f"then, {runbook.version} now): finish or cancel the run with the file it started with")
    values = {k: v for k, v in record.params.items() if k in {p.name for p in runbook.parameters}}
    params = _secrets_again(ws, runbook, values, interactive)
    request = RunRequest(params=params, operator=record.operator, trigger=record.trigger,
                         inventory=inventory_again(ws, record, inventory), check=record.check, diff=record.diff, forks=record.forks,
                         ci_job_url=record.ci_job_url, interactive=interactive, worker=record.worker or None)
    execution = Execution(ws, runbook, request, Progress(quiet=quiet), signer=signer)
    execution.limit = record.limit
    return execution


def inventory_again(ws: Workspace, record: RunRecord, given: str | None) -> str:
    """The inventory the run continues on. The record's path may come from the shared database, so it is
    trusted only inside this workspace's inventories/ (the same file under the workspace the run started
    in, when that was elsewhere); any other is used only when the operator names it again with -i."""
    recorded = Path(record.inventory)
    if given is not None:
        path = ws.inventory_path(given)
        if path.resolve() != recorded.resolve():
            raise InvalidError(f"-i {given}: run {record.id} started on another inventory ({_shown(record.inventory)}): "
                               "a run continues on the inventory it started with; nothing was run")
        return str(path)
    base = ws.inventories_dir.resolve()
    for candidate in (recorded, _moved(recorded, Path(record.workspace) / "inventories", ws.inventories_dir)):
        if candidate is not None and _inside(candidate, base):
            return str(candidate.resolve())
    raise InvalidError(f"run {record.id}: its record names the inventory {_shown(record.inventory)}, which is not in "
                       f"{ws.display(ws.inventories_dir)}/ (a record may come from the shared database: it is not "
                       f"trusted as a path); if it is the inventory the run started with, give it again: "
                       f"runbook resume {record.id} -i PATH; nothing was run")


def _moved(path: Path, folder: Path, to: Path) -> Path | None:
    """`path` under `folder` as the same name under `to`; None when it is not under `folder`."""
    try:
        return to / path.relative_to(folder)
    except ValueError:
        return None


def _inside(path: Path, base: Path) -> bool:
    """An existing file or folder strictly inside `base`, links resolved."""
    try:
        real = path.resolve()
        return path.is_absolute() and path.exists() and real != base and real.is_relative_to(base)
    except (OSError, RuntimeError):
        return False


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 120 else f"{text[:100]!r}... ({len(text)} characters)"


def _secrets_again(ws: Workspace, runbook: Runbook, values: dict[str, Any], interactive: bool) -> ResolvedParams:
    """The stored parameters with each secret given again (its env: variable, else asked), checked as `run`
    checks it (the minimum length, its pattern) and then forgotten by runbook's own environment."""
    display = ws.display(runbook.path)
    problems = []
    for param in (p for p in runbook.parameters if p.secret):
        value = os.environ.pop(param.env, None) if param.env else None
        if value is None and interactive:
            value = getpass.getpass(f"{param.name} (secret, needed to continue): ")
        where = f"parameters.{param.name}"
        if value is None and param.required:
            problems.append(Problem(display, param.line, where,
                                    f"secrets are never stored: set {param.env or 'its env variable'} to continue"))
        elif value is not None:
            try:
                value = coerce(param, value)
            except ValueError as exc:
                problems.append(Problem(display, param.line, where, str(exc)))
        values[param.name] = value
    if problems:
        raise InvalidError("cannot continue: nothing was run", tuple(problems))
    params = ResolvedParams(values, frozenset(p.name for p in runbook.parameters if p.secret))
    forget_secrets(os.environ, [p.env for p in runbook.parameters if p.secret and p.env], params.secret_values)
    return params
