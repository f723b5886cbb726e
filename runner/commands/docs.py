from __future__ import annotations

import sys
from pathlib import Path

from runner.definition.loader import load_runbook
from runner.definition.workspace import Workspace
from runner.reports.procedures import write_manual
from runner.store.sqlite import Store


def docs(ws: Workspace, names: list[str], fmt: str, output: str) -> int:
    """The procedure manual: an index and one page per runbook, with durations from the history."""
    paths = [ws.runbook_path(n) for n in names] if names else ws.runbook_files()
    runbooks = [load_runbook(p, ws.display(p)) for p in paths]
    store = Store(ws.state_dir) if (ws.state_dir / "history.db").exists() else None
    written = write_manual(ws, runbooks, fmt, Path(output), store)
    print(f"wrote {len(written)} pages to {output} (start at {written[0]})", file=sys.stderr)
    return 0
