"""A run as Markdown: the CI job summary (GITHUB_STEP_SUMMARY) and the `report --format md` document."""
from __future__ import annotations

from runner.definition.durations import format_duration
from runner.store.records import RunRecord, iso

_ICONS = {"succeeded": "✅", "failed": "❌", "skipped": "⏭", "waiting": "⏸", "pending": "·",
          "timed_out": "⏱", "canceled": "🛑", "aborted": "💥"}


def markdown(record: RunRecord) -> str:
    lines = [
        f"### {_ICONS.get(record.status, '')} runbook `{record.runbook}` {record.version}: {record.status}",
        "",
        f"Run `{record.id}` by {record.operator} ({record.trigger}), exit {record.exit_code}, "
        f"{format_duration(record.duration or 0)}, inventory `{record.inventory}`, hosts `{record.limit}`"
        + (", check mode" if record.check else "") + ".",
    ]
    if record.message and record.status != "succeeded":
        lines += ["", f"> {record.message}"]
    lines += ["", "| step | status | ok | changed | failed | unreachable | skipped | note |",
              "|---|---|---|---|---|---|---|---|"]
    for step in record.steps:
        c = step.counts()
        note = step.message or "; ".join(f"{s.decision} by {s.who}" for s in step.signoffs)
        name = step.name + (" (on_failure)" if step.handler else "") + (f" (worker {step.worker})" if step.worker else "")
        lines.append(f"| {name} | {_ICONS.get(step.status, '')} {step.status} | {c['ok']} | {c['changed']} | "
                     f"{c['failed']} | {c['unreachable']} | {c['skipped']} | {_cell(note)} |")
    failures = [(s.name, h, r.message) for s in record.steps for h, r in sorted(s.hosts.items()) if r.failed or r.unreachable]
    if failures:
        lines += ["", "| step | host | problem |", "|---|---|---|"]
        lines += [f"| {s} | {h} | {_cell(m) or 'unreachable'} |" for s, h, m in failures]
    lines += ["", f"Started {iso(record.started_at)}" + (f", job {record.ci_job_url}" if record.ci_job_url else "") + "."]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]
