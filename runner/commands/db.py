"""`runbook db upgrade|import|sync|verify|rebuild`: the store's schema, moving a local history into the
team's database, uploading runs kept locally while it was away, the tamper-evident chain, and the index
rebuilt from run folders."""
from __future__ import annotations

import sys
from pathlib import Path

from runner.definition.workspace import Workspace
from runner.errors import RunbookError, UsageError
from runner.store.backends import open_store


def upgrade(ws: Workspace) -> int:
    store = open_store(ws)
    before, after = store.upgrade()
    verb = "already at" if before == after else f"upgraded from version {before} to"
    print(f"{store.describe()}: schema {verb} version {after}", file=sys.stderr)
    return 0


def import_history(ws: Workspace, state_dir: str | None) -> int:
    store = open_store(ws)
    if store.backend != "postgresql":
        raise UsageError("db import copies a local history into the team's database: set RUNBOOK_DATABASE_URL "
                         "or [store] url to its postgresql:// URL first")
    source = Path(state_dir).expanduser().resolve() if state_dir else ws.state_dir
    if not (source / "runs").is_dir():
        raise UsageError(f"{source} holds no run folders (runs/): nothing to import")
    from runner.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    copied, known, damaged = store.import_state(source)
    print(f"imported {copied} run(s) from {source} into {store.describe()}"
          + (f"; {known} were already there" if known else "")
          + (f"; {damaged} with a damaged run.json were skipped" if damaged else ""), file=sys.stderr)
    store.close()
    return 0


def sync(ws: Workspace) -> int:
    store = open_store(ws)
    from runner.store.postgres import PostgresStore

    if not isinstance(store, PostgresStore):
        print("the store is the local SQLite history: there is nothing to upload", file=sys.stderr)
        return 0
    count = store.sync_pending()
    print(f"uploaded {count} run(s) kept locally to {store.describe()}", file=sys.stderr)
    store.close()
    return 0


def verify(ws: Workspace) -> int:
    store = open_store(ws)
    checked, bad, why = store.verify()
    if bad is not None:
        raise RunbookError(f"chain broken at run {bad}: {why} ({checked} link(s) in the chain)")
    print(f"{store.describe()}: the chain of {checked} finished run(s) is intact", file=sys.stderr)
    return 0


def rebuild(ws: Workspace) -> int:
    store = open_store(ws)
    count, damaged = store.rebuild()
    print(f"re-indexed {count} run folder(s) from their run.json into {store.describe()}"
          + (f"; {damaged} damaged, shown as damaged" if damaged else ""), file=sys.stderr)
    store.close()
    return 0
