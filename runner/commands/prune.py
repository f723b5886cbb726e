from __future__ import annotations

import shutil
import socket
import sys
import time
from typing import Any

from runner.definition.durations import parse_duration
from runner.errors import UsageError
from runner.store.backends import open_store
from runner.times import human_time
from runner.definition.workspace import Workspace

_LIVE = ("queued", "running", "waiting")


def prune(ws: Workspace, older_than: str, keep: int | None, dry_run: bool = False, key: str | None = None) -> int:
    """Delete finished runs started before now - OLDER_THAN, their folders and history rows together,
    keeping the newest KEEP runs of each runbook whatever their age. Orphans (a folder without a row,
    a row without a folder) left by an interrupted prune are removed too. What goes is written into the
    chain first (a prune record: ids, by whom, when), signed when [team] is on or --key is given."""
    try:
        cutoff = time.time() - parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    store = open_store(ws)
    if not store.has_history():
        print("no runs recorded", file=sys.stderr)
        return 0
    store.reap_dead_runs()
    rows = store.newest_per_runbook()
    seen: dict[str, int] = {}
    doomed = []
    for run_id, runbook, started_at, status in rows:
        seen[runbook] = seen.get(runbook, 0) + 1
        if keep is not None and seen[runbook] <= keep:
            continue
        if started_at < cutoff and status not in _LIVE:
            doomed.append(run_id)
    known = {r[0] for r in rows} | set(store.pending_ids())
    orphans = [p for p in store.runs_dir.iterdir() if p.is_dir() and p.name not in known
               and p.stat().st_mtime < cutoff] if store.runs_dir.is_dir() else []
    verb = "would delete" if dry_run else "deleted"
    if not dry_run:
        removed = doomed + [r for r in store.rows_without_folder(cutoff) if r not in doomed]
        store.prune_runs(removed, prune_entry(ws, removed, key))
        for folder in orphans:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{verb} {len(doomed)} run(s) started before {human_time(cutoff)}"
          + (f" and {len(orphans)} orphan folder(s)" if orphans else ""), file=sys.stderr)
    for run_id in doomed:
        print(run_id)
    return 0


def prune_entry(ws: Workspace, removed: list[str], key: str | None) -> dict[str, Any]:
    """The prune record: what was removed, by whom, from where, when; signed with --key or, with
    [team] on, with the agent's key (refused, nothing removed, when it cannot be signed)."""
    from runner.identity import operator
    from runner.store.chain import PRUNE_NAMESPACE, prune_payload
    from runner.store.records import iso, now
    from runner.store.signing import key_fingerprint, sign

    entry: dict[str, Any] = {"removed": sorted(removed), "by": operator(), "host": socket.gethostname(),
                             "at": iso(now()), "signer": ""}
    if key is None and ws.allowed_signers is None:
        return entry
    if removed:
        entry["signer"] = key_fingerprint(key)
        entry["signature"] = sign(PRUNE_NAMESPACE, prune_payload(entry), key)
    return entry
