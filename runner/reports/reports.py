"""Documents: one run (md, html, json, junit), the periodic summary over many runs (md, html; in
periodic.py), and the procedure manual generated from the runbooks (md, html). HTML is rendered with autoescaping."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from runner.definition.durations import format_duration
from runner.reports.values import human, human_block
from runner.times import human_time
from runner.store.records import RunRecord, iso

_TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def html_env() -> Any:
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True,  # every template here is HTML
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["duration"] = lambda s: format_duration(s or 0)
    env.filters["iso"] = iso
    env.filters["human"] = human
    env.filters["when"] = human_time
    env.filters["human_block"] = human_block
    from runner.execution.signoffs import identity_note

    env.globals["identity_note"] = identity_note
    from runner.language import language

    from runner.reports.headings import manual_title

    env.globals["page_lang"] = language  # <html lang>: read at each render, the reader's language
    env.globals["manual_title"] = manual_title
    return env


def render_html(template: str, **context: Any) -> str:
    return str(html_env().get_template(template).render(**context))


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


# -- the periodic summary lives in runner/reports/periodic.py (its charts in charts.py) -------------------
from runner.reports.periodic import RunbookFigures, Summary, summarize, summary_document  # noqa: E402,F401
