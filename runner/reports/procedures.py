"""The procedure manual: every runbook as a page a new team member can follow, in Markdown (CommonMark,
as GitHub and GitLab render it) or HTML (the same Markdown through the same parser, sanitized).

A page: what the runbook is for (its description), before you start, expected duration, parameters,
the procedure as ONE ordered list of steps (tasks and checklists nested inside), when it fails,
rollback, what each step records, escalation, schedule, and how to run it. Description sections titled
"Before you start"/"Access", "When it fails", "Rollback" (or any other of the page's headings, in English or
Japanese: headings.py) are moved into the page's own sections. Headings follow the reader's language, and
so do the runbook's texts where it carries `translations:`."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from runner.definition.durations import format_duration
from runner.definition.model import Runbook, Step
from runner.definition.translations import localized
from runner.definition.workspace import Workspace
from runner.execution.signoffs import team_note
from runner.language import language
from runner.reports.headings import heading, list_ids, manual_title, section_key
from runner.reports.markup import code, demote, escape, fenced, neutral, sections, to_html
from runner.reports.playbooks import privileges, recorded_keys, task_names
from runner.reports.values import human

if TYPE_CHECKING:
    from runner.store.base import Store



@dataclass(frozen=True)
class PastRuns:
    """Durations of the runbook's successful non-check runs, for "expected duration"."""

    durations: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.durations)

    @property
    def p95(self) -> float:
        ordered = sorted(self.durations)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def past_runs(store: Store | None, name: str) -> PastRuns:
    """From the history index (None when there is no history yet)."""
    if store is None:
        return PastRuns()
    rows = store.query(
        "SELECT ended_at - started_at FROM runs WHERE runbook = ? AND status = 'succeeded'"
        " AND check_mode = 0 AND ended_at IS NOT NULL", (name,))
    return PastRuns(tuple(float(r[0]) for r in rows))


def markdown_page(ws: Workspace, rb: Runbook, history: PastRuns = PastRuns()) -> str:
    rb = localized(rb, language())
    intro, parts = sections(neutral(rb.description or ""))
    lifted: dict[str, list[str]] = {}
    other: list[str] = []
    for title, body in parts:
        key = section_key(title)
        if key:
            lifted.setdefault(key, []).append(demote(body, 3))
        else:
            other += [f"## {title}", "", demote(body, 3), ""]
    out = [f"# {escape(rb.title)}", "", _meta_line(rb), ""]
    out += [intro, ""] if intro else []
    out += other
    out += _before(ws, rb, lifted.get("before", []))
    out += _extra(_duration(rb, history), lifted.get("duration"))
    out += _extra(_parameters(rb), lifted.get("parameters"), "parameters")
    out += _extra([f"## {heading('procedure')}", ""] + _steps(ws, rb.steps, rb), lifted.get("procedure"))
    out += _failures(rb, lifted.get("fails", []))
    out += _rollback(ws, rb, lifted.get("rollback", []))
    out += _extra(_records(ws, rb), lifted.get("records"))
    out += _extra([f"## {heading('escalation')}", "", _escalation(rb), ""], lifted.get("escalation"))
    schedule = [_schedule_line(s.cron, dict(s.params), s.inventory, s.limit) for s in rb.schedule]
    out += _extra([f"## {heading('schedule')}", ""] + schedule + [""] if schedule else [], lifted.get("schedule"), "schedule")
    out += _extra([f"## {heading('run')}", ""] + fenced(run_command(ws, rb), "sh") + [""], lifted.get("run"))
    return "\n".join(out)


def _extra(section: list[str], texts: list[str] | None, key: str = "") -> list[str]:
    """A generated section followed by what the description wrote under the same heading (a section the
    page would leave out, such as Parameters of a runbook without any, then holds only that)."""
    if not texts:
        return section
    section = section or [f"## {heading(key)}", ""]
    return section + [line for text in texts for line in (text, "")]


def _meta_line(rb: Runbook) -> str:
    kind = rb.kind + (f", {rb.maintenance_type}" if rb.maintenance_type else "")
    parts = [f"{code(rb.name)} {escape(rb.version)} ({escape(kind)})", f"owner {escape(rb.owner or '-')}",
             f"contact {escape(rb.escalation or '-')}"]
    if rb.tags:
        parts.append(f"tags {escape(', '.join(rb.tags))}")
    return ", ".join(parts)


def _escalation(rb: Runbook) -> str:
    if rb.contact:
        return f"Escalate to {escape(rb.contact)} (owner: {escape(rb.owner or '-')})."
    if rb.owner:
        return f"Escalate to the owner, {escape(rb.owner)} (this runbook names no `contact`)."
    return "This runbook names neither a `contact` nor an `owner`: ask whoever maintains the workspace."


def _before(ws: Workspace, rb: Runbook, extra: list[str]) -> list[str]:
    if rb.inventory or rb.kind != "maintenance":
        inventory = f"inventory {code(rb.inventory or ws.config.inventory)}"
    elif ws.config.inventory != "local":  # maintenance never falls back on the built-in local
        inventory = f"inventory {code(ws.config.inventory)} (the workspace default) unless you give `-i INVENTORY`"
    else:
        inventory = "no inventory set: give `-i INVENTORY`"
    items = [f"**Inventory and hosts**: hosts {code(rb.targets)}, {inventory}; narrow them with `-l HOST`."]
    items.append(f"**Access needed**: {_access(ws, rb)}")
    manual = [s for s in rb.steps if s.type == "manual"]
    approvals = [s for s in rb.steps if s.type == "approval"]
    items.append("**Manual steps**: " + (", ".join(
        f"{escape(s.name)} ({len(s.checklist) or 1} checklist item{'s' if len(s.checklist) != 1 else ''})" for s in manual)
        + ". The run stops at each (exit 5) until `runbook resume RUN`." if manual else "none."))
    items.append("**Approvals**: " + ("; ".join(
        f"{escape(s.name)}: {s.approval.approvers} person(s) other than the operator "
        f"(`runbook approve RUN`)" for s in approvals if s.approval) + f"; {escape(team_note(ws))}."
        if approvals else "none."))
    required = [p for p in rb.parameters if p.required]
    secrets = [p for p in rb.parameters if p.secret and p.env]
    if required:
        items.append("**Values you must supply**: " + ", ".join(code(p.name) for p in required) + ".")
    if secrets:
        items.append("**Secrets**: from the environment, never on the command line: "
                     + ", ".join(code(p.env or "") for p in secrets) + ".")
    lock = f" (lock {code(rb.lock_name)})" if rb.concurrency == "exclusive" else ""
    items.append(f"**Concurrency**: {rb.concurrency}{lock}"
                 + (f"; the whole run times out after {format_duration(rb.timeout)}" if rb.timeout else "") + ".")
    if rb.rollout.serial is not None:
        stop = rb.rollout.max_fail_percentage if rb.rollout.max_fail_percentage is not None else 100
        items.append(f"**Rollout**: batches of {escape(human(rb.rollout.serial))}, stopping above {human(stop)}% failed hosts.")
    out = [f"## {heading('before')}", ""] + [f"- {item}" for item in items] + [""]
    for text in extra:
        out += [text, ""]
    return out


def _access(ws: Workspace, rb: Runbook) -> str:
    become, writes = False, []
    for step in (s for s in rb.steps + rb.on_failure if s.playbook):
        path = ws.playbook_path(step.playbook or "")
        uses, written = privileges(path, ws.roles_dir)
        become = become or uses or _uses_become(path)
        writes += written
    where = "the local machine" if (rb.inventory or "") == "local" else "SSH to every target host as the inventory's user"
    if become:
        return where + ", with sudo (the playbooks use `become`)."
    if writes:
        shown = ", ".join(code(w) for w in sorted(set(writes)))
        return where + f", as root or a user who may write to {shown} (the playbooks write there without `become`)."
    return where + ", no root needed."


def _uses_become(playbook: Path) -> bool:
    """A play-level `become: true` (task-level ones, in roles too, are found by `privileges`)."""
    try:
        text = playbook.read_text(encoding="utf-8")
    except OSError:
        return False
    return any(line.strip().startswith("become:") and line.split(":", 1)[1].strip().lower() in ("true", "yes")
               for line in text.splitlines())


def _duration(rb: Runbook, history: PastRuns) -> list[str]:
    out = [f"## {heading('duration')}", ""]
    if not history.durations:
        return out + ["No runs yet: no successful run (outside `--check`) is in the history.", ""]
    waits = " It includes the time spent waiting at manual steps and approvals." if any(
        s.type != "playbook" for s in rb.steps) else ""
    n = len(history.durations)
    return out + [f"Median {format_duration(history.median)}, p95 {format_duration(history.p95)}, "
                  f"from {n} successful run{'s' if n != 1 else ''} (check-mode runs left out).{waits}", ""]


def _parameters(rb: Runbook) -> list[str]:
    if not rb.parameters:
        return []
    out = [f"## {heading('parameters')}", "", "| name | type | default | description |", "|---|---|---|---|"]
    for p in rb.parameters:
        default = "" if p.default is None else code(human(p.default))
        default += f" (env {code(p.env)})" if p.env else ""
        name = code(p.name) + (" (required)" if p.required else "")
        out.append(f"| {name} | {p.type} | {default} | {escape(p.description)} |")
    return out + [""]


def _steps(ws: Workspace, steps: Sequence[Step], rb: Runbook) -> list[str]:
    """One ordered list, one item per step; everything about a step is indented inside its item."""
    out: list[str] = []
    for number, step in enumerate(steps, 1):
        marker = f"{number}. "
        body = _step_body(ws, step, rb)
        out.append(marker + body[0])
        out += [("" if not line else " " * len(marker) + line) for line in body[1:]]
        out.append("")
    return out


def _step_body(ws: Workspace, step: Step, rb: Runbook) -> list[str]:
    kind = {"playbook": f"playbook {code(step.playbook or '')}", "manual": "manual step",
            "approval": "approval"}[step.type]
    notes = [f"only when {code(step.when)}"] if step.when else []
    notes += [f"timeout {format_duration(step.timeout)}"] if step.timeout else []
    notes += [f"retried {step.retries} time(s) on the hosts that failed"] if step.retries else []
    notes += ["a failure here does not stop the run"] if step.on_failure == "continue" else []
    lines = [f"**{escape(step.name)}**: {kind}" + (f" ({'; '.join(notes)})" if notes else "")]
    if step.description:
        lines += ["", *neutral(step.description.strip()).splitlines()]
    if step.playbook:
        tasks = task_names(ws.playbook_path(step.playbook), ws.roles_dir)
        lines += ["", "Tasks:", ""] + [f"- {escape(t, line_start=True)}" for t in tasks]
    if step.type == "manual":
        lines += ["", "The run stops here (exit 5) until someone confirms the checklist:", ""]
        lines += [*neutral((step.manual or "").strip()).splitlines(), ""] if step.manual else []
        lines += [f"- [ ] {escape(item, line_start=True)}" for item in (step.checklist or ("Step done",))]
        if "runbook resume" not in (step.manual or ""):
            lines += ["", "Then continue:", ""] + fenced('runbook resume RUN --confirm --note "WHAT YOU DID"', "sh")
    if step.approval:
        groups = f" in {' or '.join(step.approval.from_groups)}" if step.approval.from_groups else ""
        lines += ["", f"Needs {step.approval.approvers} approval(s) from someone other than the operator{groups}: "
                      f"{escape(step.approval.message)}", ""]
        lines += ["- [ ] Approved (`runbook approve RUN --note TEXT`; `--reject` ends the run)"]
    return lines


def _failures(rb: Runbook, extra: list[str]) -> list[str]:
    out = [f"## {heading('fails')}", ""]
    for text in extra:
        out += [text, ""]
    handlers = " The on_failure steps under Rollback run first." if rb.on_failure else ""
    cases = [
        f"**A task failed on a host** (exit 1): the message names the host. Read "
        f"`runbook log RUN --step STEP --host HOST`.{handlers}",
        "**Hosts unreachable** (exit 4): check SSH access and the inventory, then run again on them with `-l`.",
        "**Another run holds the lock** (exit 6): see `runbook history --status running`; wait with "
        "`--wait-lock DUR` or `runbook cancel RUN`.",
        "**Timed out** (exit 124) or **canceled** (exit 130): every process the run started is stopped; "
        "see the last step in `runbook log RUN`.",
        "**Invalid parameter** (exit 3): nothing ran; the message names the parameter.",
    ]
    if any(s.type != "playbook" for s in rb.steps):
        cases.append("**Waiting** (exit 5) is not a failure: the run waits at a manual step or an approval; "
                     "`runbook resume RUN` continues it.")
    if extra:
        out += ["Whatever the runbook:", ""]
    return out + [f"- {c}" for c in cases] + [""]


def _rollback(ws: Workspace, rb: Runbook, extra: list[str]) -> list[str]:
    out = [f"## {heading('rollback')}", "", "**What the runbook undoes by itself:**", ""]
    if rb.on_failure:
        out += ["After a failed step these steps run, then the run ends failed:", ""]
        out += _steps(ws, rb.on_failure, rb)
    else:
        out += ["Nothing: it has no `on_failure` steps.", ""]
    out += ["**What a person must do:**", ""]
    if extra:
        for text in extra:
            out += [text, ""]
    else:
        out += [f"Nothing is written down for this runbook: ask {escape(rb.escalation or 'its owner')} before you undo anything by hand.", ""]
    return out


def _records(ws: Workspace, rb: Runbook) -> list[str]:
    out = [f"## {heading('records')}", "",
           "Every step records its status, times and the result per host. Beyond that:", ""]
    for step in rb.steps + rb.on_failure:
        if step.playbook:
            keys = recorded_keys(ws.playbook_path(step.playbook), ws.roles_dir)
            what = ("step data " + ", ".join(code(k) for k in keys)) if keys else "no step data"
        elif step.type == "manual":
            what = "who confirmed each checklist item, when, and the note given"
        else:
            what = "who approved or rejected, when, and the note given"
        out.append(f"- **{escape(step.name)}**: {what}")
    out += ["", "Read it from the command line:", ""]
    out += fenced("runbook log RUN --data                  # every step's data and sign-offs\n"
                  "runbook log RUN --step STEP --data      # one step\n"
                  "runbook report RUN --format json        # everything, for programs", "sh")
    return out + [""]


def _schedule_line(cron: str, params: dict[str, object], inventory: str | None, limit: str | None) -> str:
    where = "".join(f", {label} {code(v)}" for label, v in (("inventory", inventory), ("limit", limit)) if v)
    values = ", ".join(f"{code(k)} = {code(human(v))}" for k, v in params.items())
    return f"- {code(cron)}" + (f" with {values}" if values else "") + where


def run_command(ws: Workspace, rb: Runbook) -> str:
    """How to run it; maintenance takes an inventory and one host, named as placeholders."""
    words = ["runbook", "run", rb.name]
    if rb.kind == "maintenance":
        words += ([] if rb.inventory else ["-i", "INVENTORY"]) + ["-l", "HOST"]
    words += [f"-p {p.name}={p.name.upper()}" for p in rb.parameters if p.required and not p.secret]
    secrets = [f"{p.env}=..." for p in rb.parameters if p.secret and p.required and p.env]
    return " ".join(secrets + words)


def html_body(markdown_text: str) -> str:
    return to_html(markdown_text, list_ids())


def write_manual(ws: Workspace, runbooks: list[Runbook], fmt: str, target: Path,
                 store: Store | None = None) -> list[Path]:
    """index + one page per runbook in `target`; returns the files written."""
    from runner.reports.reports import render_html

    target.mkdir(parents=True, exist_ok=True)
    written = []
    suffix = "md" if fmt == "md" else "html"
    for rb in runbooks:
        text = markdown_page(ws, rb, past_runs(store, rb.name))
        if fmt == "html":
            text = render_html("page.html.j2", title=localized(rb, language()).title, body=html_body(text), home="index.html")
        path = target / f"{rb.name}.{suffix}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    index = [f"# {manual_title()}", "", "| runbook | version | kind | title | owner |", "|---|---|---|---|---|"]
    index += [f"| [{escape(rb.name)}]({rb.name}.{suffix}) | {escape(rb.version)} | {rb.kind} | {escape(localized(rb, language()).title)} | "
              f"{escape(rb.owner or '-')} |" for rb in runbooks]
    text = "\n".join(index) + "\n"
    path = target / f"index.{suffix}"
    html = render_html("page.html.j2", title=manual_title(), body=to_html(text), home="index.html")
    path.write_text(html if fmt == "html" else text, encoding="utf-8")
    return [path] + written
