from __future__ import annotations

import sys
import textwrap

from runner.definition.durations import format_duration
from runner.definition.loader import load_runbook
from runner.definition.model import Runbook, Step
from runner.definition.translations import localized
from runner.language import language
from runner.output import emit, emit_json, table
from runner.reports.playbooks import recorded_keys, task_names
from runner.reports.procedures import PastRuns, past_runs, run_command
from runner.reports.values import human
from runner.store.records import iso
from runner.times import human_time
from runner.store.backends import open_store
from runner.store.base import StoreUnavailableError
from runner.definition.workspace import Workspace
from runner.execution.signoffs import team_note


def show(ws: Workspace, name: str, as_json: bool = False) -> int:
    runbook = load_runbook(ws.runbook_path(name), ws.display(ws.runbook_path(name)))
    store = open_store(ws)
    try:
        known = store.has_history()
        runs = store.history(runbook.name, limit=5) if known else []
        durations = past_runs(store if known else None, runbook.name)
    except StoreUnavailableError as exc:  # the procedure itself needs no database
        print(f"runbook: warning: last runs not shown: {exc}", file=sys.stderr)
        runs, durations = [], past_runs(None, runbook.name)
    if as_json:
        emit_json({
            "name": runbook.name, "version": runbook.version, "title": runbook.title, "kind": runbook.kind,
            "maintenance_type": runbook.maintenance_type, "owner": runbook.owner, "contact": runbook.contact or None,
            "escalation": runbook.escalation, "tags": list(runbook.tags),
            "description": runbook.description, "targets": runbook.targets, "worker": runbook.worker,
            "parameters": [{k: getattr(p, k) for k in ("name", "type", "required", "default", "description")}
                           for p in runbook.parameters],
            "steps": [_step_dict(ws, s) for s in runbook.steps],
            "on_failure": [_step_dict(ws, s) for s in runbook.on_failure],
            "schedule": [{"cron": s.cron, "params": dict(s.params), "inventory": s.inventory} for s in runbook.schedule],
            "last_runs": [{"id": r.id, "status": r.status, "started_at": iso(r.started_at)} for r in runs],
            "expected_duration": {"runs": len(durations.durations),
                                  "median": round(durations.median, 3) if durations.durations else None,
                                  "p95": round(durations.p95, 3) if durations.durations else None},
            "run": run_command(ws, runbook),
        })
        return 0
    # People read the runbook's texts in their language where it translates them; JSON keeps the original.
    emit("\n".join(_document(ws, localized(runbook, language()), runs, durations)))
    return 0


def _step_dict(ws: Workspace, step: Step) -> dict[str, object]:
    data: dict[str, object] = {"name": step.name, "type": step.type}
    if step.playbook:
        data["playbook"] = step.playbook
        data["tasks"] = task_names(ws.playbook_path(step.playbook), ws.roles_dir)
        data["records"] = recorded_keys(ws.playbook_path(step.playbook), ws.roles_dir)
        data["worker"] = step.worker
    if step.manual:
        data["manual"], data["checklist"] = step.manual, list(step.checklist)
    if step.approval:
        data["approval"] = step.approval.message
    return data


def _document(ws: Workspace, rb: Runbook, runs: list, durations: PastRuns) -> list[str]:  # type: ignore[type-arg]
    kind = rb.kind + (f" ({rb.maintenance_type})" if rb.maintenance_type else "")
    past = durations.durations
    expected = (f"median {format_duration(durations.median)}, p95 {format_duration(durations.p95)} "
                f"({len(past)} successful runs)") if past else "no runs yet"
    out = [f"{rb.name} {rb.version}: {rb.title}", "",
           f"  kind:        {kind}", f"  owner:       {rb.owner or '-'}", f"  escalation:  {rb.escalation or '-'}",
           f"  tags:        {', '.join(rb.tags) or '-'}", f"  duration:    {expected}",
           f"  targets:     {rb.targets}", f"  inventory:   {rb.inventory or ws.config.inventory}",
           f"  concurrency: {rb.concurrency}" + (f" (lock {rb.lock_name})" if rb.concurrency == "exclusive" else ""),
           f"  sign-offs:   {team_note(ws)}"]
    if rb.worker:
        out.append(f"  worker:      {rb.worker}")
    if rb.timeout:
        out.append(f"  timeout:     {format_duration(rb.timeout)}")
    if rb.rollout.serial is not None or rb.rollout.max_fail_percentage is not None:
        out.append(f"  rollout:     serial {rb.rollout.serial}, max fail {rb.rollout.max_fail_percentage}%")
    if rb.description:
        out += ["", textwrap.indent(rb.description.rstrip(), "  ")]
    if rb.parameters:
        rows = [(p.name, p.type + (" *" if p.required else ""), _default(p.default, p.env), p.description)
                for p in rb.parameters]
        out += ["", "Parameters (* required):", textwrap.indent(table(("NAME", "TYPE", "DEFAULT", "DESCRIPTION"), rows), "  ")]
    out += ["", "Steps:"] + _steps(ws, rb.steps)
    if rb.on_failure:
        out += ["", "On failure:"] + _steps(ws, rb.on_failure)
    if rb.schedule:
        out += ["", "Schedule:"] + [f"  {s.cron}  {human(dict(s.params)) if s.params else ''} {s.inventory or ''}".rstrip()
                                    for s in rb.schedule]
    out += ["", "Last runs:"] + ([f"  {r.id}  {r.status}  {human_time(r.started_at)}" for r in runs] or ["  (none)"])
    out += ["", "Run it:", f"  {run_command(ws, rb)}",
            "", "What the steps recorded: runbook log RUN --data  (the full manual: runbook docs)"]
    return out


def _default(default: object, env: str | None) -> str:
    text = "" if default is None else human(default)
    return f"{text} (env {env})".strip() if env else text


def _steps(ws: Workspace, steps: tuple[Step, ...]) -> list[str]:
    out = []
    for number, step in enumerate(steps, 1):
        extra = [f"when {step.when}"] if step.when else []
        extra += [f"timeout {format_duration(step.timeout)}"] if step.timeout else []
        extra += [f"retries {step.retries}"] if step.retries else []
        extra += ["on failure: continue"] if step.on_failure == "continue" else []
        extra += [f"on worker {step.worker}"] if step.worker else []
        head = f"  {number}. {step.name} ({step.type}" + (f": {step.playbook}" if step.playbook else "") + ")"
        out.append(head + (f"  [{'; '.join(extra)}]" if extra else ""))
        if step.description:
            out.append(textwrap.indent(step.description.strip(), "       "))
        if step.playbook:
            out += [f"       - {t}" for t in task_names(ws.playbook_path(step.playbook), ws.roles_dir)]
            keys = recorded_keys(ws.playbook_path(step.playbook), ws.roles_dir)
            out += [f"       records step data: {', '.join(keys)}"] if keys else []
        if step.manual:
            out.append(textwrap.indent(step.manual.strip(), "       "))
            out += [f"       [ ] {item}" for item in step.checklist]
        if step.approval:
            groups = f" from {' or '.join(step.approval.from_groups)}" if step.approval.from_groups else ""
            out.append(f"       approval by {step.approval.approvers} other person(s){groups}: {step.approval.message}")
    return out
