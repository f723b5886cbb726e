"""Charts for the summary, a runbook's page and capacity trends: static SVG made with pygal, to inline
in HTML. They need no network and no script: pygal's tooltip script is never linked (js=[]) and its
inline config script is dropped, so a page shows the same picture offline, in a mail or in a CI artifact.
pygal is imported only here, and only when a chart is drawn."""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

if TYPE_CHECKING:
    from runner.reports.capacity import Forecast
    from runner.reports.periodic import HostFailures, Summary

Chart = tuple[str, str]  # (title, svg)

# Colours by run status, matching the status badges of the HTML pages.
_STATUS_COLOURS = {"succeeded": "#2da44e", "failed": "#cf222e", "aborted": "#8c1d18", "timed_out": "#e16f24",
                   "canceled": "#bf8700", "waiting": "#6e7fa8", "running": "#54aeff", "check mode": "#a8b1c2"}
_STATUS_ORDER = tuple(_STATUS_COLOURS)
_PALETTE = ("#0969da", "#cf222e", "#2da44e", "#bf8700", "#8250df", "#e16f24", "#1b7c83", "#bf3989",
            "#57606a", "#4d2d00")


class RunLike(Protocol):
    """What a chart reads of a run: a history row (runner.store.sqlite.HistoryRow) fits."""

    @property
    def runbook(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def check_mode(self) -> int: ...


def summary_charts(summary: Summary) -> list[Chart]:
    """The periodic summary's pictures: runs per day by status, duration per runbook, failures by host."""
    return [
        ("Runs per day by status", runs_per_day_chart(summary.runs, summary.since, summary.until)),
        ("Duration per runbook over time", duration_chart(summary.runs)),
        ("Failures by host", failures_by_host_chart(summary.failing_hosts)),
    ]


def runs_per_day_chart(runs: Sequence[RunLike], since: float, until: float) -> str:
    """Stacked columns, one per UTC day of the window; check-mode runs are their own colour."""
    days = _days(since, until)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for run in runs:
        day = _day(run.started_at)
        counts["check mode" if run.check_mode else run.status][day] += 1
    statuses = [s for s in _STATUS_ORDER if s in counts] + sorted(set(counts) - set(_STATUS_ORDER))
    chart = _new("StackedBar", colours=[_STATUS_COLOURS.get(s, "#57606a") for s in statuses],
                 y_title="runs", x_label_rotation=30 if len(days) > 10 else 0,
                 show_minor_x_labels=len(days) <= 16, x_labels_major_every=max(1, len(days) // 12))
    chart.x_labels = [day[5:] for day in days]  # MM-DD: the window's dates are in the page's heading
    if statuses:  # pygal fails on y_labels without any series
        chart.y_labels = _counts_axis(max((sum(counts[s].get(day, 0) for s in statuses) for day in days), default=0))
    for status in statuses:
        chart.add(status, [counts[status].get(day) or None for day in days])
    return _render(chart)


def duration_chart(runs: Sequence[RunLike]) -> str:
    """Minutes per finished run over time, a line per runbook (check-mode runs left out: they change nothing
    and so do not take the time a real run takes)."""
    series: dict[str, list[tuple[dt.datetime, float]]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.started_at):
        if run.ended_at is not None and not run.check_mode:
            series[run.runbook].append((_when(run.started_at), round((run.ended_at - run.started_at) / 60, 2)))
    chart = _new("DateTimeLine", colours=list(_PALETTE), y_title="minutes", x_label_rotation=30,
                 x_value_formatter=lambda d: d.strftime("%m-%d %H:%M"), dots_size=3)
    for name in sorted(series):
        chart.add(name, series[name])
    return _render(chart)


def failures_by_host_chart(hosts: Iterable[HostFailures]) -> str:
    """Horizontal bars: runs in which each host failed, and runs in which it was unreachable."""
    rows = sorted(hosts, key=lambda h: (-(h.failed_runs + h.unreachable_runs), h.host))[:25]
    chart = _new("HorizontalStackedBar", colours=[_STATUS_COLOURS["failed"], _STATUS_COLOURS["timed_out"]],
                 x_title="runs", height=max(160, 100 + 30 * len(rows)), legend_at_bottom=False)
    chart.x_labels = [h.host for h in rows]
    chart.y_labels = _counts_axis(max((h.failed_runs + h.unreachable_runs for h in rows), default=0))
    chart.add("failed", [h.failed_runs or None for h in rows])
    chart.add("unreachable", [h.unreachable_runs or None for h in rows])
    return _render(chart)


def capacity_charts(forecast: Forecast) -> list[Chart]:
    """One chart per host: each filesystem's use (% of its size) over the window."""
    charts = []
    for host in forecast.hosts():
        chart = _new("DateTimeLine", colours=list(_PALETTE), y_title="% used", range=(0, 100),
                     x_label_rotation=30, x_value_formatter=lambda d: d.strftime("%m-%d"), dots_size=3)
        for trend in forecast.of_host(host):
            label = trend.mount + (" (full by " + trend.full_on + ")" if trend.full_on else "")
            chart.add(label, [(_when(t), round(pct, 1)) for t, pct in trend.percent_series()])
        charts.append((f"Disk use on {host}", _render(chart)))
    return charts


# -- pygal ---------------------------------------------------------------------------------------------
def _new(kind: str, colours: list[str], **options: Any) -> Any:
    import pygal
    from pygal.style import Style

    style = Style(background="white", plot_background="white", colors=tuple(colours) or _PALETTE,
                  font_family="system-ui, sans-serif", value_font_size=11, label_font_size=11,
                  major_label_font_size=11, legend_font_size=12, title_font_size=14)
    defaults: dict[str, Any] = {"style": style, "width": 800, "height": 320, "js": [], "disable_xml_declaration": True,
                                "legend_at_bottom": True, "legend_at_bottom_columns": 4, "truncate_legend": 40,
                                "spacing": 16, "margin_bottom": 30,  # without it pygal clips a bar chart's legend
                                "no_data_text": "no runs", "margin": 12, "print_values": False}
    chart = getattr(pygal, kind)(**{**defaults, **options})
    chart.add_xml_filter(_without_scripts)
    return chart


def _without_scripts(root: Any) -> Any:
    """pygal always adds a <script> holding its config for the tooltip library; the picture needs none."""
    for parent in list(root.iter()):
        for child in list(parent):
            if str(child.tag).rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _render(chart: Any) -> str:
    return str(chart.render(is_unicode=True))


def _counts_axis(highest: int) -> list[int]:
    """Whole numbers for an axis of counts (pygal would write 0.2, 0.4... for small ones)."""
    step = max(1, -(-highest // 8))
    return list(range(0, max(highest, 1) + step, step))


def _when(timestamp: float) -> dt.datetime:
    """The moment on the charts' axes: in the zone people read times in (runner/times.py)."""
    from runner.times import local

    return local(timestamp).replace(tzinfo=None)


def _day(timestamp: float) -> str:
    return _when(timestamp).strftime("%Y-%m-%d")


def _days(since: float, until: float) -> list[str]:
    first, last = _when(since).date(), _when(until).date()
    count = min((last - first).days + 1, 400)
    return [(last - dt.timedelta(days=count - 1 - i)).isoformat() for i in range(count)]
