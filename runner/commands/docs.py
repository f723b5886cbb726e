from __future__ import annotations

import sys
from pathlib import Path

from runner.definition.loader import load_runbook
from runner.output import cannot_write
from runner.reports.procedures import write_manual
from runner.definition.workspace import Workspace


def docs(ws: Workspace, names: list[str], fmt: str, output: str) -> int:
    """The procedure manual: an index and one page per runbook."""
    paths = [ws.runbook_path(n) for n in names] if names else ws.runbook_files()
    runbooks = [load_runbook(p, ws.display(p)) for p in paths]
    try:
        written = write_manual(ws, runbooks, fmt, Path(output))
    except OSError as exc:
        raise cannot_write(Path(output), "-o", exc) from None
    print(f"wrote {len(written)} pages to {output} (start at {written[0]})", file=sys.stderr)
    return 0
