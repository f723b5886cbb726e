from __future__ import annotations

import sys
from pathlib import Path

from runner.definition.durations import parse_duration
from runner.commands.docs import report_left_out
from runner.definition.loader import load_valid
from runner.definition.workspace import Workspace
from runner.errors import UsageError
from runner.reports.site import SiteOptions, write_site
from runner.store.backends import open_history


def site(ws: Workspace, output: str, since: str, recent: int) -> int:
    """The static site: catalog, recent runs, summary; a page per runbook and per run."""
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    runbooks, problems = load_valid(ws.runbook_files(), ws.display)
    store = open_history(ws)
    if store is not None:
        store.reap_dead_runs()
    written = write_site(ws, runbooks, store, Path(output), SiteOptions(since=window, recent=recent))
    print(f"wrote {len(written)} pages to {output} (start at {written[0]})", file=sys.stderr)
    return report_left_out(problems, "the site")
