"""The catalog for `runbook list`: a light read of each runbook's header, without schema validation,
so listing hundreds of runbooks stays fast."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InvalidError
from runner.store.files import make_private_dir, write_private
from runner.definition.workspace import Workspace

@dataclass(frozen=True)
class Entry:
    name: str
    version: str
    kind: str
    title: str
    owner: str
    tags: tuple[str, ...]
    maintenance_type: str
    error: str = ""

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["tags"] = list(self.tags)
        if not self.error:
            data.pop("error")
        return data


def read_entry(path: Path) -> Entry:
    import yaml  # only for files the cache does not know: a cached listing needs no parser

    try:
        data = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as exc:
        return Entry(path.stem, "?", "?", "", "", (), "", error=f"unreadable: {exc.__class__.__name__}")
    if not isinstance(data, dict):
        return Entry(path.stem, "?", "?", "", "", (), "", error="not a runbook mapping")
    raw_tags = data.get("tags")
    tags = raw_tags if isinstance(raw_tags, list) else []
    return Entry(
        name=str(data.get("name", path.stem)),
        version=str(data.get("version", "?")),
        kind=str(data.get("kind", "?")),
        title=str(data.get("title", "")),
        owner=str(data.get("owner", "")),
        tags=tuple(str(t) for t in tags),
        maintenance_type=str(data.get("maintenance_type") or ""),
    )


def entries(ws: Workspace, tag: str | None = None, kind: str | None = None) -> list[Entry]:
    found = _cached_entries(ws)
    return [e for e in found if (tag is None or tag in e.tags) and (kind is None or e.kind == kind)]


def _cached_entries(ws: Workspace) -> list[Entry]:
    """Each file's entry, re-read only when its size or mtime changed since the last listing."""
    cache_file = ws.state_dir / "cache" / "catalog.json"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    fresh: dict[str, list[object]] = {}
    found = []
    for path in ws.runbook_files():
        stat = path.stat()
        key, stamp = str(path), [stat.st_mtime_ns, stat.st_size]
        cached = cache.get(key)
        entry = Entry(**{**cached[1], "tags": tuple(cached[1]["tags"])}) if cached and cached[0] == stamp else read_entry(path)
        fresh[key] = [stamp, entry.to_dict() | {"error": entry.error}]
        found.append(entry)
    if fresh != cache:
        try:
            make_private_dir(cache_file.parent)
            write_private(cache_file, json.dumps(fresh).encode())
        except (OSError, InvalidError):
            pass  # a read-only (or refused: not ours, writable by others) state dir only costs speed
    return found
