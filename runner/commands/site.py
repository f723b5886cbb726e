from __future__ import annotations

import sys
from pathlib import Path

from runner.definition.durations import parse_duration
from runner.definition.loader import load_runbook
from runner.definition.workspace import Workspace
from runner.errors import UsageError
from runner.reports.site import SiteOptions, write_site
from runner.store.sqlite import Store


def site(ws: Workspace, output: str, since: str, recent: int) -> int:
    """The static site: catalog, recent runs, summary; a page per runbook and per run."""
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    runbooks = [load_runbook(p, ws.display(p)) for p in ws.runbook_files()]
    store = Store(ws.state_dir) if (ws.state_dir / "history.db").exists() else None
    if store is not None:
        store.reap_dead_runs()
    written = write_site(ws, runbooks, store, Path(output), SiteOptions(since=window, recent=recent))
    print(f"wrote {len(written)} pages to {output} (start at {written[0]})", file=sys.stderr)
    return 0
