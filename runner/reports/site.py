"""The static site: `runbook site -o DIR` writes index.html (the catalog, recent runs and the periodic
summary), runbooks/NAME.html (the manual page, its own history, a duration chart) and runs/ID.html
(each run's report). Relative links only, no script, no CDN: any web server (or a CI artifact) serves it."""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.definition.model import Runbook
from runner.definition.workspace import Workspace
from runner.reports.procedures import html_body, markdown_page, past_runs
from runner.reports.periodic import summarize, summary_html
from runner.reports.reports import render_html

if TYPE_CHECKING:
    from runner.store.base import HistoryRow, Store

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")  # a run id as a file name, never a path


@dataclass(frozen=True)
class SiteOptions:
    since: float = 30 * 86400  # the summary's window, seconds
    recent: int = 50  # runs listed on the index
    runs: int = 1000  # newest runs given a page of their own


def write_site(ws: Workspace, runbooks: list[Runbook], store: Store | None, target: Path,
               options: SiteOptions = SiteOptions()) -> list[Path]:
    """Every page of the site under `target`; returns the files written, index first."""
    (target / "runbooks").mkdir(parents=True, exist_ok=True)
    (target / "runs").mkdir(parents=True, exist_ok=True)
    names = {rb.name for rb in runbooks}
    history, pages = _run_pages(target, store.history(limit=options.runs) if store else [], store, names)
    written = [_index(target, runbooks, history, store, options)]
    for rb in runbooks:
        own = [r for r in history if r.runbook == rb.name]
        written.append(_runbook_page(ws, target, rb, own, store))
    return written + pages


def _run_pages(target: Path, rows: list[HistoryRow], store: Store | None,
               names: set[str]) -> tuple[list[HistoryRow], list[Path]]:
    """A page per run; a damaged one (its row, or its record when read) is listed as damaged, unlinked."""
    from runner.store.base import DamagedError

    listed, pages = [], []
    for row in rows:
        if store is not None and row.status != "damaged" and _SAFE_ID.match(row.id):
            try:
                pages.append(_run_page(target, row.id, store, row.runbook in names))
            except DamagedError as exc:
                row = dataclasses.replace(row, status="damaged", message=str(exc))
        listed.append(row)
    return listed, pages


def _index(target: Path, runbooks: list[Runbook], history: list[HistoryRow], store: Store | None,
           options: SiteOptions) -> Path:
    summary = ""
    if store is not None:
        until = time.time()
        summary = summary_html(summarize(store, until - options.since, until, kinds(runbooks)))
    last = {r.runbook: r for r in reversed(history)}  # newest first, so the newest wins
    recent = history[:options.recent]
    path = target / "index.html"
    path.write_text(render_html("site_index.html.j2", runbooks=runbooks, recent=recent, last=last,
                                summary=summary), encoding="utf-8")
    return path


def _runbook_page(ws: Workspace, target: Path, rb: Runbook, runs: list[HistoryRow], store: Store | None) -> Path:
    body = html_body(markdown_page(ws, rb, past_runs(store, rb.name)))
    path = target / "runbooks" / f"{rb.name}.html"
    path.write_text(render_html("site_runbook.html.j2", rb=rb, manual=body, runs=runs,
                                chart=duration_chart_svg(rb.name, runs)), encoding="utf-8")
    return path


def _run_page(target: Path, run_id: str, store: Store, known_runbook: bool) -> Path:
    from runner.reports.junit import task_results

    record = store.load(run_id)
    run_dir = store.run_dir(run_id)
    tasks = {s.index: list(task_results(s.folder(run_dir))) for s in record.steps}
    nav = [("Index", "../index.html")]
    nav += [(f"Runbook {record.runbook}", f"../runbooks/{record.runbook}.html")] if known_runbook else []
    path = target / "runs" / f"{run_id}.html"
    path.write_text(render_html("run.html.j2", run=record, tasks=tasks, nav=nav), encoding="utf-8")
    return path


def duration_chart_svg(name: str, runs: list[HistoryRow]) -> str:
    """An inline SVG of this runbook's run durations over time, or "" without finished runs (the page then
    shows its history table only). The SVG is put in the page as is: it comes from the chart code (pygal,
    which escapes the runbook's name), never from a run's text."""
    if not any(r.ended_at is not None and not r.check_mode for r in runs):
        return ""
    from runner.reports.charts import duration_chart

    return duration_chart([r for r in runs if r.runbook == name])


def kinds(runbooks: list[Runbook]) -> dict[str, tuple[str, str]]:
    """Each runbook's kind and maintenance class, as the summary breaks work down."""
    return {rb.name: (rb.kind, rb.maintenance_type or "") for rb in runbooks}
