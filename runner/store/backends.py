"""Which store a workspace uses: PostgreSQL when RUNBOOK_DATABASE_URL (else `[store] url` in
runbook.toml) holds a postgresql:// URL, else SQLite in the state dir. psycopg is imported only then."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from runner.errors import UsageError
from runner.store.base import Store

if TYPE_CHECKING:
    from runner.definition.workspace import Workspace

URL_SCHEMES = ("postgresql://", "postgres://")


def database_url(ws: Workspace) -> str | None:
    url = os.environ.get("RUNBOOK_DATABASE_URL") or _url_from_file() or ws.config.store_url
    if not url:
        return None
    if not url.startswith(URL_SCHEMES):
        raise UsageError("RUNBOOK_DATABASE_URL / [store] url must be a postgresql:// URL "
                         f"(got one starting {url.split(':', 1)[0]!r})")
    return url


def _url_from_file() -> str | None:
    """RUNBOOK_DATABASE_URL_FILE: a file of ours, readable by us only, holding the URL (how a crontab line
    reaches the team's store without a password in the crontab)."""
    path = os.environ.get("RUNBOOK_DATABASE_URL_FILE")
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UsageError(f"RUNBOOK_DATABASE_URL_FILE {path}: {exc.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise UsageError(f"RUNBOOK_DATABASE_URL_FILE {path}: must be yours and private (chmod 600)")
        return handle.read(4096).strip() or None


def open_store(ws: Workspace) -> Store:
    url = database_url(ws)
    if url is None:
        from runner.store.sqlite import SqliteStore

        return SqliteStore(ws.state_dir)
    from runner.store.postgres import PostgresStore

    return PostgresStore(ws.state_dir, url)


def open_history(ws: Workspace) -> Store | None:
    """The store when it holds a history (for documents that show past runs), else None; a database that
    cannot be reached leaves the past runs out with a warning rather than failing the document."""
    import sys

    from runner.store.base import StoreUnavailableError

    store = open_store(ws)
    try:
        return store if store.has_history() else None
    except StoreUnavailableError as exc:
        print(f"runbook: warning: past runs left out: {exc}", file=sys.stderr)
        return None
