from __future__ import annotations

import sys
from pathlib import Path

from runner.definition.loader import check_runbook
from runner.definition.model import Runbook
from runner.errors import ExitCode, Problem
from runner.output import cannot_write
from runner.definition.workspace import Workspace
from runner.reports.procedures import write_manual
from runner.store.sqlite import Store


def docs(ws: Workspace, names: list[str], fmt: str, output: str) -> int:
    """The procedure manual: an index and one page per valid runbook; each invalid one on stderr (exit 3)."""
    paths = [ws.runbook_path(n) for n in names] if names else ws.runbook_files()
    runbooks: list[Runbook] = []
    problems: list[Problem] = []
    for path in paths:
        runbook, found = check_runbook(path, ws.display(path))
        problems += found
        if runbook is not None:
            runbooks.append(runbook)
    store = Store(ws.state_dir) if (ws.state_dir / "history.db").exists() else None
    try:
        written = write_manual(ws, runbooks, fmt, Path(output), store)
    except OSError as exc:
        raise cannot_write(Path(output), "-o", exc) from None
    print(f"wrote {len(written)} pages to {output} (start at {written[0]})", file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        bad = len({p.file for p in problems})
        print(f"runbook: {bad} invalid runbook(s) left out of the manual (see: runbook validate)", file=sys.stderr)
        return int(ExitCode.INVALID)
    return 0
