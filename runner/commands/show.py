from __future__ import annotations

import sys
import textwrap

from runner.definition.durations import format_duration
from runner.definition.loader import load_runbook
from runner.definition.model import Runbook, Step
from runner.output import emit, emit_json, table
from runner.reports.playbooks import task_names
from runner.store.records import iso
from runner.store.backends import open_store
from runner.store.base import StoreUnavailableError
from runner.definition.workspace import Workspace


def show(ws: Workspace, name: str, as_json: bool = False) -> int:
    runbook = load_runbook(ws.runbook_path(name), ws.display(ws.runbook_path(name)))
    store = open_store(ws)
    try:
        runs = store.history(runbook.name, limit=5) if store.has_history() else []
    except StoreUnavailableError as exc:  # the procedure itself needs no database
        print(f"runbook: warning: last runs not shown: {exc}", file=sys.stderr)
        runs = []
    if as_json:
        emit_json({
            "name": runbook.name, "version": runbook.version, "title": runbook.title, "kind": runbook.kind,
            "maintenance_type": runbook.maintenance_type, "owner": runbook.owner, "tags": list(runbook.tags),
            "description": runbook.description, "targets": runbook.targets,
            "parameters": [{k: getattr(p, k) for k in ("name", "type", "required", "default", "description")}
                           for p in runbook.parameters],
            "steps": [_step_dict(ws, s) for s in runbook.steps],
            "on_failure": [_step_dict(ws, s) for s in runbook.on_failure],
            "schedule": [{"cron": s.cron, "params": dict(s.params), "inventory": s.inventory} for s in runbook.schedule],
            "last_runs": [{"id": r.id, "status": r.status, "started_at": iso(r.started_at)} for r in runs],
        })
        return 0
    emit("\n".join(_document(ws, runbook, runs)))
    return 0


def _step_dict(ws: Workspace, step: Step) -> dict[str, object]:
    data: dict[str, object] = {"name": step.name, "type": step.type}
    if step.playbook:
        data["playbook"] = step.playbook
        data["tasks"] = task_names(ws.playbook_path(step.playbook), ws.roles_dir)
    if step.manual:
        data["manual"], data["checklist"] = step.manual, list(step.checklist)
    if step.approval:
        data["approval"] = step.approval.message
    return data


def _document(ws: Workspace, rb: Runbook, runs: list) -> list[str]:  # type: ignore[type-arg]
    kind = rb.kind + (f" ({rb.maintenance_type})" if rb.maintenance_type else "")
    out = [f"{rb.name} {rb.version}: {rb.title}", "",
           f"  kind:        {kind}", f"  owner:       {rb.owner or '-'}", f"  tags:        {', '.join(rb.tags) or '-'}",
           f"  targets:     {rb.targets}", f"  inventory:   {rb.inventory or ws.config.inventory}",
           f"  concurrency: {rb.concurrency}" + (f" (lock {rb.lock_name})" if rb.concurrency == "exclusive" else "")]
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
        out += ["", "Schedule:"] + [f"  {s.cron}  {dict(s.params) or ''} {s.inventory or ''}".rstrip() for s in rb.schedule]
    out += ["", "Last runs:"] + ([f"  {r.id}  {r.status}" for r in runs] or ["  (none)"])
    return out


def _default(default: object, env: str | None) -> str:
    text = "" if default is None else str(default)
    return f"{text} (env {env})".strip() if env else text


def _steps(ws: Workspace, steps: tuple[Step, ...]) -> list[str]:
    out = []
    for number, step in enumerate(steps, 1):
        extra = [f"when {step.when}"] if step.when else []
        extra += [f"timeout {format_duration(step.timeout)}"] if step.timeout else []
        extra += [f"retries {step.retries}"] if step.retries else []
        extra += ["on failure: continue"] if step.on_failure == "continue" else []
        head = f"  {number}. {step.name} ({step.type}" + (f": {step.playbook}" if step.playbook else "") + ")"
        out.append(head + (f"  [{'; '.join(extra)}]" if extra else ""))
        if step.description:
            out.append(textwrap.indent(step.description.strip(), "       "))
        if step.playbook:
            out += [f"       - {t}" for t in task_names(ws.playbook_path(step.playbook), ws.roles_dir)]
        if step.manual:
            out.append(textwrap.indent(step.manual.strip(), "       "))
            out += [f"       [ ] {item}" for item in step.checklist]
        if step.approval:
            out.append(f"       approval by {step.approval.approvers} other person(s): {step.approval.message}")
    return out
