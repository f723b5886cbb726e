from __future__ import annotations

import sys
import time
from pathlib import Path

from runner.definition.durations import parse_duration
from runner.errors import UsageError
from runner.output import check_writable, write_file
from runner.reports.reports import run_document
from runner.store.backends import open_store
from runner.store.base import Store
from runner.definition.workspace import Workspace


def report(ws: Workspace, ref: str | None, since: str | None, fmt: str, output: str | None) -> int:
    """One run as a document (RUN), or the periodic summary (--since)."""
    store = open_store(ws)
    if (ref is None) == (since is None):
        raise UsageError("give either RUN (one run) or --since DUR (the periodic summary)")
    target = Path(output) if output not in (None, "-") else None
    if target is not None:
        check_writable(target, "-o")
    if ref is not None:
        run_id = store.resolve(ref)
        text = run_document(store.load(run_id), store.run_dir(run_id), fmt)
    else:
        if fmt not in ("md", "html"):
            raise UsageError("the periodic summary comes as --format md or html")
        try:
            window = parse_duration(since or "")
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
        store.reap_dead_runs()
        until = time.time()
        text = periodic_summary(ws, store, until - window, until, fmt)
    if target is None:
        sys.stdout.write(text)
        return 0
    write_file(target, text, "-o")
    print(f"wrote {target}", file=sys.stderr)
    return 0


def periodic_summary(ws: Workspace, store: Store, since: float, until: float, fmt: str) -> str:
    """The summary of [since, until) with each runbook's kind and class as the workspace says today; in
    HTML, with the capacity trends of the same window."""
    from runner.definition.catalog import entries
    from runner.reports.periodic import summarize, summary_document

    kinds = {e.name: (e.kind, e.maintenance_type) for e in entries(ws)}
    capacity = None
    if fmt == "html":
        from runner.reports.capacity import forecast

        capacity = forecast(store, since, until)
    return summary_document(summarize(store, since, until, kinds), fmt, capacity)
