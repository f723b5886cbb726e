from __future__ import annotations

import sys
from pathlib import Path

from runner.definition.loader import load_valid
from runner.errors import ExitCode, Problem
from runner.output import cannot_write
from runner.definition.workspace import Workspace
from runner.reports.procedures import write_manual
from runner.store.backends import open_history


def docs(ws: Workspace, names: list[str], fmt: str, output: str) -> int:
    """The procedure manual: an index and one page per valid runbook; each invalid one on stderr (exit 3)."""
    paths = [ws.runbook_path(n) for n in names] if names else ws.runbook_files()
    runbooks, problems = load_valid(paths, ws.display)
    try:
        written = write_manual(ws, runbooks, fmt, Path(output), open_history(ws))
    except OSError as exc:
        raise cannot_write(Path(output), "-o", exc) from None
    print(f"wrote {len(written)} pages to {output} (start at {written[0]})", file=sys.stderr)
    return report_left_out(problems, "the manual")


def report_left_out(problems: list[Problem], what: str) -> int:
    """Each invalid runbook's problems on stderr, and exit 3 when there were any; else 0."""
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        return 0
    bad = len({p.file for p in problems})
    print(f"runbook: {bad} invalid runbook(s) left out of {what} (see: runbook validate)", file=sys.stderr)
    return int(ExitCode.INVALID)
