"""The catalog for `runbook list`: a light read of each runbook's header, without schema validation,
so listing hundreds of runbooks stays fast."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.workspace import Workspace

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    try:
        data = yaml.load(path.read_bytes(), Loader=_Loader)
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
    found = [read_entry(p) for p in ws.runbook_files()]
    return [e for e in found if (tag is None or tag in e.tags) and (kind is None or e.kind == kind)]
