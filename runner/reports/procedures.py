"""The procedure manual: every runbook as a page a new team member can follow, in Markdown or HTML."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.definition.durations import format_duration
from runner.definition.model import Runbook, Step
from runner.reports.playbooks import task_names
from runner.definition.workspace import Workspace


@dataclass(frozen=True)
class StepPage:
    number: int
    step: Step
    tasks: tuple[str, ...]
    notes: tuple[str, ...]


def step_pages(ws: Workspace, steps: tuple[Step, ...]) -> list[StepPage]:
    pages = []
    for number, step in enumerate(steps, 1):
        tasks = tuple(task_names(ws.playbook_path(step.playbook), ws.roles_dir)) if step.playbook else ()
        notes = [f"only when `{step.when}`"] if step.when else []
        notes += [f"timeout {format_duration(step.timeout)}"] if step.timeout else []
        notes += [f"retried {step.retries} time(s) on the hosts that failed"] if step.retries else []
        notes += ["a failure here does not stop the run"] if step.on_failure == "continue" else []
        pages.append(StepPage(number, step, tasks, tuple(notes)))
    return pages


def markdown_page(ws: Workspace, rb: Runbook) -> str:
    kind = rb.kind + (f", {rb.maintenance_type}" if rb.maintenance_type else "")
    out = [f"# {rb.title}", "", f"`{rb.name}` {rb.version} ({kind}), owner {rb.owner or '-'}"
           + (f", tags {', '.join(rb.tags)}" if rb.tags else ""), "", rb.description.strip(), "",
           "## Before you start", "",
           f"- Hosts: `{rb.targets}` in inventory `{rb.inventory or ws.config.inventory}` (narrow with `-l`)",
           f"- Concurrency: {rb.concurrency}" + (f" (lock `{rb.lock_name}`)" if rb.concurrency == "exclusive" else "")]
    if rb.timeout:
        out.append(f"- The whole run times out after {format_duration(rb.timeout)}")
    if rb.rollout.serial is not None:
        out.append(f"- Rolls out in batches of {rb.rollout.serial}, stopping above "
                   f"{rb.rollout.max_fail_percentage if rb.rollout.max_fail_percentage is not None else 100}% failed hosts")
    if rb.parameters:
        out += ["", "## Parameters", "", "| name | type | default | description |", "|---|---|---|---|"]
        for p in rb.parameters:
            default = "" if p.default is None else f"`{p.default}`"
            default += f" (env `{p.env}`)" if p.env else ""
            out.append(f"| `{p.name}`{' (required)' if p.required else ''} | {p.type} | {default} | {p.description} |")
    out += ["", "## Procedure", ""] + _md_steps(step_pages(ws, rb.steps))
    if rb.on_failure:
        out += ["", "## If a step fails", "", "These steps run, then the run ends failed:", ""]
        out += _md_steps(step_pages(ws, rb.on_failure))
    if rb.schedule:
        out += ["", "## Schedule", ""] + [f"- `{s.cron}` {dict(s.params) or ''}" for s in rb.schedule]
    out += ["", "## Run it", "", "```sh", f"runbook run {rb.name}" + "".join(
        f" -p {p.name}=..." for p in rb.parameters if p.required and not p.secret), "```", ""]
    return "\n".join(out)


def _md_steps(pages: list[StepPage]) -> list[str]:
    out = []
    for page in pages:
        step = page.step
        head = f"{page.number}. **{step.name}**"
        if step.type == "playbook":
            head += f" (playbook `{step.playbook}`)"
        elif step.type == "manual":
            head += " (manual)"
        else:
            head += " (approval)"
        out.append(head + (f": {'; '.join(page.notes)}" if page.notes else ""))
        if step.description:
            out.append(f"   {step.description.strip()}")
        out += [f"   - {t}" for t in page.tasks]
        if step.manual:
            out.append(f"   {step.manual.strip()}")
            out += [f"   - [ ] {item}" for item in step.checklist]
        if step.approval:
            out.append(f"   Needs {step.approval.approvers} approval(s) from someone other than the operator: "
                       f"{step.approval.message}")
    return out


def write_manual(ws: Workspace, runbooks: list[Runbook], fmt: str, target: Path) -> list[Path]:
    """index + one page per runbook in `target`; returns the files written."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    suffix = "md" if fmt == "md" else "html"
    for rb in runbooks:
        text = markdown_page(ws, rb)
        if fmt == "html":
            text = _html(rb.title, text)
        path = target / f"{rb.name}.{suffix}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    index = ["# Procedure manual", "", "| runbook | version | kind | title | owner |", "|---|---|---|---|---|"]
    index += [f"| [{rb.name}]({rb.name}.{suffix}) | {rb.version} | {rb.kind} | {rb.title} | {rb.owner} |"
              for rb in runbooks]
    text = "\n".join(index) + "\n"
    path = target / f"index.{suffix}"
    path.write_text(_html("Procedure manual", text) if fmt == "html" else text, encoding="utf-8")
    return [path] + written


def _html(title: str, markdown_text: str) -> str:
    import markdown  # only the HTML manual needs it

    from runner.reports.reports import render_html

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code", "sane_lists"])
    return render_html("page.html.j2", title=title, body=body)
