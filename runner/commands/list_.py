from __future__ import annotations

import sys

from runner.definition import catalog
from runner.errors import ExitCode
from runner.output import emit, emit_json, table
from runner.definition.workspace import Workspace


def list_runbooks(ws: Workspace, tag: str | None, kind: str | None, as_json: bool, search: str | None = None) -> int:
    """The readable runbooks on stdout; each unreadable one on stderr, and then exit 3."""
    everything = catalog.entries(ws)  # unfiltered: a broken file may be the one asked for
    broken = [e for e in everything if e.error]
    found = [e for e in catalog.entries_matching(everything, tag, kind, search) if not e.error]
    if as_json:
        emit_json([e.to_dict() for e in found])
    elif found:
        emit(table(("NAME", "VERSION", "KIND", "TITLE", "OWNER"), [(e.name, e.version, e.kind, e.title, e.owner)
                                                                   for e in found]))
    elif not broken:
        print("no runbooks" + (" match" if tag or kind or search else f" in {ws.runbooks_dir}"), file=sys.stderr)
    for entry in broken:
        print(entry.error, file=sys.stderr)
    if broken:
        print(f"runbook: {len(broken)} runbook file(s) cannot be read (see: runbook validate)", file=sys.stderr)
        return int(ExitCode.INVALID)
    return 0
