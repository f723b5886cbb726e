"""Documents: one run (md, html, json, junit), the periodic summary over many runs (md, html), and
the procedure manual generated from the runbooks (md, html). HTML is rendered with autoescaping."""
from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.definition.durations import format_duration
from runner.reports.values import human, human_block, human_time
from runner.store.records import RunRecord, iso
from runner.store.base import Store

_TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def _html_env() -> Any:
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True,  # every template here is HTML
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["duration"] = lambda s: format_duration(s or 0)
    env.filters["iso"] = iso
    env.filters["human"] = human
    env.filters["when"] = human_time
    env.filters["human_block"] = human_block
    return env


def render_html(template: str, **context: Any) -> str:
    return str(_html_env().get_template(template).render(**context))


# -- one run ---------------------------------------------------------------------------------------
def run_document(record: RunRecord, run_dir: Path, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(record.to_dict(), indent=2, default=str) + "\n"
    if fmt == "junit":
        from runner.reports.junit import junit_xml

        return junit_xml(record, run_dir)
    if fmt == "md":
        from runner.reports.summary import markdown

        return markdown(record)
    from runner.reports.junit import task_results

    tasks = {s.index: list(task_results(s.folder(run_dir))) for s in record.steps}
    return render_html("run.html.j2", run=record, tasks=tasks)


# -- the periodic summary ----------------------------------------------------------------------------
@dataclass
class RunbookFigures:
    name: str
    runs: int = 0
    succeeded: int = 0
    durations: list[float] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return 100.0 * self.succeeded / self.runs if self.runs else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.durations) if self.durations else 0.0

    @property
    def p95(self) -> float:
        ordered = sorted(self.durations)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


@dataclass
class Summary:
    since: float
    until: float
    by_status: dict[str, int]
    runbooks: list[RunbookFigures]
    failing_hosts: list[tuple[str, int, int, str]]  # host, failed runs, unreachable runs, last runbook
    failures: list[tuple[str, str, str, float]]  # run id, runbook, status, started

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def success_rate(self) -> float:
        finished = sum(v for k, v in self.by_status.items() if k not in ("running", "waiting"))
        return 100.0 * self.by_status.get("succeeded", 0) / finished if finished else 0.0


def summarize(store: Store, since: float, until: float) -> Summary:
    """Counts, success rate, durations and failures by host over runs started in [since, until)."""
    window = (since, until)
    by_status = dict(store.query(
        "SELECT status, COUNT(*) FROM runs WHERE started_at >= ? AND started_at < ? GROUP BY status", window))
    figures: dict[str, RunbookFigures] = {}
    for name, status, started, ended in store.query(
            "SELECT runbook, status, started_at, ended_at FROM runs WHERE started_at >= ? AND started_at < ?", window):
        item = figures.setdefault(name, RunbookFigures(name))
        item.runs += 1
        item.succeeded += status == "succeeded"
        if ended is not None:
            item.durations.append(ended - started)
    hosts = store.query(
        "SELECT h.host, COUNT(DISTINCT CASE WHEN h.failed > 0 THEN h.run_id END),"
        " COUNT(DISTINCT CASE WHEN h.unreachable > 0 THEN h.run_id END), MAX(r.runbook)"
        " FROM host_results h JOIN runs r ON r.id = h.run_id"
        " WHERE r.started_at >= ? AND r.started_at < ? AND (h.failed > 0 OR h.unreachable > 0)"
        " GROUP BY h.host ORDER BY 2 DESC, 3 DESC, 1", window)
    failures = store.query(
        "SELECT id, runbook, status, started_at FROM runs WHERE started_at >= ? AND started_at < ?"
        " AND status IN ('failed', 'timed_out', 'aborted') ORDER BY started_at DESC LIMIT 50", window)
    return Summary(since, until, by_status, sorted(figures.values(), key=lambda f: f.name),
                   [tuple(h) for h in hosts], [tuple(f) for f in failures])


def summary_html(summary: Summary) -> Any:
    """The summary as a piece of a page: the `body` block of summary.html.j2, whatever it holds (the
    charts of runner/reports/charts.py once they are in). The site's index embeds it."""
    from markupsafe import Markup

    template = _html_env().get_template("summary.html.j2")
    context = template.new_context({"s": summary})
    return Markup("".join(template.blocks["body"](context)))


def summary_document(summary: Summary, fmt: str) -> str:
    if fmt == "html":
        return render_html("summary.html.j2", s=summary)
    lines = [f"# Runbook summary: {iso(summary.since)} to {iso(summary.until)}", "",
             f"{summary.total} runs, success rate {summary.success_rate:.1f}% "
             f"({', '.join(f'{k} {v}' for k, v in sorted(summary.by_status.items())) or 'none'})", "",
             "| runbook | runs | success | median | p95 |", "|---|---|---|---|---|"]
    lines += [f"| {f.name} | {f.runs} | {f.success_rate:.0f}% | {format_duration(f.median)} | {format_duration(f.p95)} |"
              for f in summary.runbooks]
    if summary.failing_hosts:
        lines += ["", "## Failures by host", "", "| host | failed runs | unreachable runs |", "|---|---|---|"]
        lines += [f"| {h} | {f} | {u} |" for h, f, u, _ in summary.failing_hosts]
    if summary.failures:
        lines += ["", "## Failed runs", ""] + [f"- `{i}` {n}: {s} at {iso(t)}" for i, n, s, t in summary.failures]
    return "\n".join(lines) + "\n"
