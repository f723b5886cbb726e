"""The catalog for `runbook list`: a light read of each runbook's header, without schema validation,
so listing hundreds of runbooks stays fast."""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InvalidError
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
    description: str = ""  # searched by `list --search`, not listed

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "description"}
        data["tags"] = list(self.tags)
        if not self.error:
            data.pop("error")
        return data

    def matches(self, words: list[str]) -> bool:
        """Every word is in the name, title, tags or description (case and width ignored: `ＤＩＳＫ` is `disk`)."""
        text = _folded(" ".join([self.name, self.title, *self.tags, self.description]))
        return all(_folded(word) in text for word in words)


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def read_entry(path: Path, display: str | None = None) -> Entry:
    """The header of the runbook at `path`; a file that cannot be read as YAML gives an entry whose
    `error` is a `file:line: message` problem, as `runbook validate` would word it."""
    import yaml  # only for files the cache does not know: a cached listing needs no parser

    from runner.definition.yamlfile import load_document, read_limited, refusal

    filename = display or str(path)
    try:
        text = read_limited(path).decode("utf-8")
    except OSError as exc:
        return _broken(path, f"{filename}: cannot read: {exc.strerror}")
    except UnicodeDecodeError:
        return _broken(path, f"{filename}: not UTF-8 text")
    refused = refusal(text, filename)
    if refused is not None:
        return _broken(path, str(refused))
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception:  # noqa: BLE001 - YAMLError, or a value PyYAML cannot construct: the full loader says where
        _, problems = load_document(text, filename)
        return _broken(path, str(problems[0]) if problems else f"{filename}: invalid YAML")
    if not isinstance(data, dict):
        return _broken(path, f"{filename}: not a runbook (a mapping of keys: apiVersion, name, steps...)")
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
        description="\n".join([str(data.get("description") or ""), *_translated(data.get("translations"))]),
    )


def _translated(translations: object) -> list[str]:
    """The translated titles and descriptions, searched like the originals (`list --search ディスク`)."""
    if not isinstance(translations, dict):
        return []
    found = [t for t in translations.values() if isinstance(t, dict)]
    return [str(t.get(key) or "") for t in found for key in ("title", "description")]


def _broken(path: Path, error: str) -> Entry:
    return Entry(path.stem, "?", "?", "", "", (), "", error=error)


def entries(ws: Workspace, tag: str | None = None, kind: str | None = None) -> list[Entry]:
    return entries_matching(_cached_entries(ws), tag, kind)


def entries_matching(found: list[Entry], tag: str | None = None, kind: str | None = None,
                     search: str | None = None) -> list[Entry]:
    words = (search or "").split()
    return [e for e in found if (tag is None or tag in e.tags) and (kind is None or e.kind == kind)
            and e.matches(words)]


def _cached_entries(ws: Workspace) -> list[Entry]:
    """Each file's entry, re-read only when its size or mtime changed since the last listing."""
    cache_file = ws.state_dir / "cache" / "catalog.v2.json"  # v2: descriptions hold the translations too
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    fresh: dict[str, list[object]] = {}
    found = []
    for path in ws.runbook_files():
        try:
            stat = path.stat()
        except OSError as exc:  # a dangling link
            found.append(_broken(path, f"{ws.display(path)}: cannot read: {exc.strerror}"))
            continue
        key, stamp = str(path), [stat.st_mtime_ns, stat.st_size]
        cached = cache.get(key) if isinstance(cache, dict) else None
        try:
            current = cached is not None and cached[0] == stamp and "description" in cached[1]  # older caches: none
            entry = Entry(**{**cached[1], "tags": tuple(cached[1]["tags"])}) if cached is not None and current else None
        except (TypeError, KeyError, IndexError):
            entry = None  # a damaged cache only costs a re-read
        entry = entry or read_entry(path, ws.display(path))
        fresh[key] = [stamp, entry.to_dict() | {"error": entry.error, "description": entry.description}]
        found.append(entry)
    if fresh != cache:
        from runner.store.files import make_private_dir, write_private

        try:
            make_private_dir(cache_file.parent)
            write_private(cache_file, json.dumps(fresh).encode())
        except (OSError, InvalidError):
            pass  # a read-only (or refused: not ours, writable by others) state dir only costs speed
    return found
