"""A run as Markdown: the CI job summary (GITHUB_STEP_SUMMARY) and the `report --format md` document."""
from __future__ import annotations

from runner.definition.durations import format_duration
from runner.execution.signoffs import identity_note
from runner.reports.markup import escape, fenced
from runner.reports.values import human, human_block
from runner.times import human_time
from runner.store.records import RunRecord

_ICONS = {"succeeded": "✅", "failed": "❌", "skipped": "⏭", "waiting": "⏸", "pending": "·",
          "timed_out": "⏱", "canceled": "🛑", "aborted": "💥"}
_DATA_LINES = 200  # per step: a CI job summary stays readable; the whole data is in `log --data`


def markdown(record: RunRecord) -> str:
    lines = [
        f"### {_ICONS.get(record.status, '')} runbook `{record.runbook}` {record.version}: {record.status}",
        "",
        f"Run `{record.id}` by {_cell(record.operator)} ({record.trigger}), exit {human(record.exit_code)}, "
        f"{format_duration(record.duration or 0)}, inventory `{record.inventory}`, hosts `{record.limit}`"
        + (", check mode" if record.check else "") + ".",
    ]
    if record.message and record.status != "succeeded":
        lines += ["", f"> {record.message}"]
    lines += ["", "| step | status | ok | changed | failed | unreachable | skipped | note |",
              "|---|---|---|---|---|---|---|---|"]
    for step in record.steps:
        c = step.counts()
        note = step.message or "; ".join(dict.fromkeys(f"{s.decision} by {s.who}" for s in step.signoffs))
        name = step.name + (" (on_failure)" if step.handler else "") + (f" (worker {step.worker})" if step.worker else "")
        lines.append(f"| {name} | {_ICONS.get(step.status, '')} {step.status} | {c['ok']} | {c['changed']} | "
                     f"{c['failed']} | {c['unreachable']} | {c['skipped']} | {_cell(note)} |")
    failures = [(s.name, h, r.message) for s in record.steps for h, r in sorted(s.hosts.items()) if r.failed or r.unreachable]
    if failures:
        lines += ["", "| step | host | problem |", "|---|---|---|"]
        lines += [f"| {s} | {h} | {_cell(m) or 'unreachable'} |" for s, h, m in failures]
    results = [(s.name, h, line) for s in record.steps for h, r in sorted(s.hosts.items()) for line in r.summary.splitlines()]
    if results:
        lines += ["", "**Results**", "", "| step | host | result |", "|---|---|---|"]
        lines += [f"| {_cell(s)} | {_cell(h)} | {_cell(line)} |" for s, h, line in results]
    if record.params:
        lines += ["", "| parameter | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(human(v))} |" for k, v in record.params.items()]
    signoffs = [(step, s) for step in record.steps for s in step.signoffs]
    if signoffs:
        lines += ["", "**Sign-offs**", "", "| step | item | decision | who | when | note |", "|---|---|---|---|---|---|"]
        lines += [f"| {_cell(step.name)} | {_cell(s.item) or '-'} | {s.decision} | {_cell(s.who)} | {human_time(s.at)} | "
                  f"{_cell(s.note) or '-'} |" for step, s in signoffs]
    for step in (s for s in record.steps if s.data):
        block = human_block(step.data).splitlines()
        more = f"\n# ... {len(block) - _DATA_LINES} more lines: runbook log {record.id} --step {step.index + 1} --data"
        text = "\n".join(block[:_DATA_LINES]) + (more if len(block) > _DATA_LINES else "")
        lines += ["", f"**Step data: {escape(step.name)}**", ""] + fenced(text, "yaml")
    lines += ["", identity_note(record)]
    lines += ["", f"Started {human_time(record.started_at)}" + (f", job {record.ci_job_url}" if record.ci_job_url else "") + "."]
    lines += [f"Resumed by {_cell(r.who)} at {human_time(r.at)}" + (f" on {_cell(r.host)}" if r.host else "")
              + (f": {_cell(r.note)}" if r.note else "") + "." for r in record.resumes]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Table cell text, shown literally (a note may hold `|`, `*` or `<`); long notes are kept whole."""
    return escape(str(text))
