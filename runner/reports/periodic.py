"""The periodic summary (`runbook report --since DUR`): what ran in a window, how it went, why what failed
failed, operations apart from maintenance by class, and which hosts failed. Check-mode runs change
nothing: they are counted apart and never weigh on a success rate."""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from runner.definition.durations import format_duration
from runner.errors import RunbookError
from runner.times import human_time
from runner.store.base import HistoryRow, Store, history_row

if TYPE_CHECKING:
    from runner.reports.capacity import Forecast

MAINTENANCE_CLASSES = ("corrective", "adaptive", "perfective", "preventive", "emergency")
_UNFINISHED = ("running", "waiting")
_FAILED = ("failed", "timed_out", "aborted")
_ROW_COLUMNS = ("id, runbook, version, status, exit_code, operator, trigger, inventory, limit_pattern, check_mode,"
                " started_at, ended_at, hosts_failed, message")


@dataclass
class Figures:
    """Counts, success and time of a group of (non-check) runs."""

    name: str
    runs: int = 0
    finished: int = 0
    succeeded: int = 0
    durations: list[float] = field(default_factory=list)

    def add(self, row: HistoryRow) -> None:
        self.runs += 1
        if row.status not in _UNFINISHED:
            self.finished += 1
            self.succeeded += row.status == "succeeded"
        if row.ended_at is not None:
            self.durations.append(row.ended_at - row.started_at)

    @property
    def success_rate(self) -> float | None:
        """Succeeded / finished runs in percent; None when nothing finished (not 0%: nothing failed)."""
        return 100.0 * self.succeeded / self.finished if self.finished else None

    @property
    def time_spent(self) -> float:
        return sum(self.durations)

    @property
    def median(self) -> float:
        return statistics.median(self.durations) if self.durations else 0.0

    @property
    def p95(self) -> float:
        ordered = sorted(self.durations)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


@dataclass
class RunbookFigures(Figures):
    check_runs: int = 0


@dataclass(frozen=True)
class FailedRun:
    """A failed run and its reason: the first failing step, the host and its message."""

    id: str
    runbook: str
    status: str
    started_at: float
    step: str = ""
    host: str = ""
    message: str = ""

    @property
    def reason(self) -> str:
        where = " ".join(p for p in (f"step {self.step!r}" if self.step else "", f"on {self.host}" if self.host else "") if p)
        return f"{where}: {self.message}" if where and self.message else where or self.message or "no reason recorded"


@dataclass
class HostFailures:
    """Runs (not in check mode) in which a host itself failed a task or was unreachable."""

    host: str
    failed_runs: int = 0
    unreachable_runs: int = 0
    last_run: str = ""
    last_runbook: str = ""
    last_message: str = ""


@dataclass
class Summary:
    since: float
    until: float
    runs: list[HistoryRow]  # every run started in the window, check mode included, oldest first
    runbooks: list[RunbookFigures]
    work: list[Figures]  # "operation", then "maintenance: <class>" for every class
    failing_hosts: list[HostFailures]
    failures: list[FailedRun]  # newest first, at most 50

    @property
    def by_status(self) -> dict[str, int]:
        return _count(r.status for r in self.runs if not r.check_mode)

    @property
    def check_by_status(self) -> dict[str, int]:
        return _count(r.status for r in self.runs if r.check_mode)

    @property
    def total(self) -> int:
        return sum(1 for r in self.runs if not r.check_mode)

    @property
    def check_total(self) -> int:
        return sum(1 for r in self.runs if r.check_mode)

    @property
    def overall(self) -> Figures:
        figures = Figures("all")
        for row in self.runs:
            if not row.check_mode:
                figures.add(row)
        return figures

    @property
    def success_rate(self) -> float:
        return self.overall.success_rate or 0.0


def summarize(store: Store, since: float, until: float,
              kinds: Mapping[str, tuple[str, str]] | None = None) -> Summary:
    """The runs started in [since, until). `kinds` maps a runbook name to (kind, maintenance_type), as the
    workspace's runbooks say today; runs of runbooks no longer there count as "unknown"."""
    rows = [history_row(r) for r in store.query(
        f"SELECT {_ROW_COLUMNS} FROM runs WHERE started_at >= ? AND started_at < ? ORDER BY started_at, id",
        (since, until))]
    return Summary(since, until, rows, _by_runbook(rows), _by_work(rows, kinds or {}),
                   _failing_hosts(store, since, until), _failures(store, rows))


def _by_runbook(rows: list[HistoryRow]) -> list[RunbookFigures]:
    figures: dict[str, RunbookFigures] = {}
    for row in rows:
        item = figures.setdefault(row.runbook, RunbookFigures(row.runbook))
        if row.check_mode:
            item.check_runs += 1
        else:
            item.add(row)
    return sorted(figures.values(), key=lambda f: f.name)


def _by_work(rows: list[HistoryRow], kinds: Mapping[str, tuple[str, str]]) -> list[Figures]:
    groups = {name: Figures(name) for name in ("operation", *(f"maintenance: {c}" for c in MAINTENANCE_CLASSES))}
    for row in rows:
        if row.check_mode:
            continue
        kind, klass = kinds.get(row.runbook, ("unknown", ""))
        name = kind if kind != "maintenance" else f"maintenance: {klass or 'unknown'}"
        groups.setdefault(name, Figures(name)).add(row)
    return list(groups.values())


def _failing_hosts(store: Store, since: float, until: float) -> list[HostFailures]:
    """Per host, the runs in which that host failed (or was unreachable): a failed run counts against the
    hosts that failed in it, never against the others it ran on."""
    rows = store.query(
        "SELECT h.host, h.run_id, r.runbook, MAX(h.failed), MAX(h.unreachable), MAX(h.message)"
        " FROM host_results h JOIN runs r ON r.id = h.run_id"
        " WHERE r.started_at >= ? AND r.started_at < ? AND r.check_mode = 0 AND (h.failed > 0 OR h.unreachable > 0)"
        " GROUP BY h.host, h.run_id, r.runbook, r.started_at ORDER BY r.started_at, h.run_id", (since, until))
    hosts: dict[str, HostFailures] = {}
    for host, run_id, runbook, failed, unreachable, message in rows:
        item = hosts.setdefault(host, HostFailures(host))
        item.failed_runs += failed > 0
        item.unreachable_runs += unreachable > 0 and not failed
        item.last_run, item.last_runbook, item.last_message = run_id, runbook, message or "unreachable"
    return sorted(hosts.values(), key=lambda h: (-h.failed_runs, -h.unreachable_runs, h.host))


def _failures(store: Store, rows: list[HistoryRow]) -> list[FailedRun]:
    failed = [r for r in reversed(rows) if r.status in _FAILED and not r.check_mode][:50]
    return [_reason(store, row) for row in failed]


def _reason(store: Store, row: HistoryRow) -> FailedRun:
    """The first step that did not succeed, its first failing host and that host's message."""
    try:
        record = store.load(row.id)
    except RunbookError:
        return FailedRun(row.id, row.runbook, row.status, row.started_at, message=row.message)
    broken = ("failed", "timed_out", "canceled", "aborted")
    step = next((s for s in record.steps if s.status in broken and not s.handler), None)
    if step is None:
        return FailedRun(row.id, row.runbook, row.status, row.started_at, message=record.message or row.message)
    bad = step.failed_hosts() or step.unreachable_hosts()
    host = bad[0] if bad else ""
    message = (step.hosts[host].message or "unreachable") if host else (step.message or record.message)
    return FailedRun(row.id, row.runbook, row.status, row.started_at, step.name, host, message)


def _count(values: Iterable[str]) -> dict[str, int]:
    return dict(Counter(values))


# -- documents -------------------------------------------------------------------------------------------
def summary_document(summary: Summary, fmt: str, capacity: Forecast | None = None) -> str:
    """The summary as Markdown, or as one HTML page with its charts inline (SVG)."""
    if fmt == "html":
        from runner.reports.reports import render_html

        return render_html("summary.html.j2", **_html_context(summary, capacity))
    return _markdown(summary)


def summary_html(summary: Summary, capacity: Forecast | None = None) -> Any:
    """The summary as a piece of a page, charts inline (the `body` block of summary.html.j2): the site's
    index embeds it."""
    from markupsafe import Markup

    from runner.reports.reports import html_env

    template = html_env().get_template("summary.html.j2")
    context = template.new_context(_html_context(summary, capacity))
    return Markup("".join(template.blocks["body"](context)))


def _html_context(summary: Summary, capacity: Forecast | None) -> dict[str, Any]:
    from runner.reports.charts import capacity_charts, summary_charts

    trends = capacity_charts(capacity) if capacity is not None else []
    return {"s": summary, "charts": summary_charts(summary), "capacity": capacity, "trends": trends,
            "percent": _percent}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _markdown(s: Summary) -> str:
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(s.by_status.items())) or "none"
    lines = [f"# Runbook summary: {human_time(s.since)} to {human_time(s.until)}", "",
             f"{s.total} runs, success rate {s.success_rate:.1f}% ({statuses})."]
    if s.check_total:
        checks = ", ".join(f"{k} {v}" for k, v in sorted(s.check_by_status.items()))
        lines.append(f"Check-mode runs, counted apart (they change nothing): {s.check_total} ({checks}).")
    lines += ["", "## Operations (運用) and maintenance (保守)", "",
              "| work | runs | success | time spent |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {f.runs} | {_percent(f.success_rate)} | {format_duration(f.time_spent)} |" for f in s.work]
    lines += ["", "## By runbook", "", "| runbook | runs | success | median | p95 | check runs |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {f.name} | {f.runs} | {_percent(f.success_rate)} | {format_duration(f.median)} | "
              f"{format_duration(f.p95)} | {f.check_runs} |" for f in s.runbooks]
    if s.failing_hosts:
        lines += ["", "## Failures by host", "", "| host | failed runs | unreachable runs | last failure |",
                  "|---|---|---|---|"]
        lines += [f"| {h.host} | {h.failed_runs} | {h.unreachable_runs} | {_cell(h.last_runbook)} `{h.last_run}`: "
                  f"{_cell(h.last_message)} |" for h in s.failing_hosts]
    if s.failures:
        lines += ["", "## Failed runs", ""]
        lines += [f"- `{f.id}` {f.runbook}: {f.status} at {human_time(f.started_at)}: {_cell(f.reason)}" for f in s.failures]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")[:300]
