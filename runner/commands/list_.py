from __future__ import annotations

import sys

from runner.definition import catalog
from runner.output import emit, emit_json, table
from runner.definition.workspace import Workspace


def list_runbooks(ws: Workspace, tag: str | None, kind: str | None, as_json: bool) -> int:
    found = catalog.entries(ws, tag, kind)
    if as_json:
        emit_json([e.to_dict() for e in found])
        return 0
    if not found:
        print("no runbooks" + (" match" if tag or kind else f" in {ws.runbooks_dir}"), file=sys.stderr)
        return 0
    rows = [(e.name, e.version, e.kind, e.title or e.error, e.owner) for e in found]
    emit(table(("NAME", "VERSION", "KIND", "TITLE", "OWNER"), rows))
    broken = [e.name for e in found if e.error]
    if broken:
        print(f"unreadable: {', '.join(broken)} (see: runbook validate)", file=sys.stderr)
    return 0
