"""The tamper-evident chain over finished runs: what a link seals and how the chain is walked.

A run link seals the digest of the whole record (canonical JSON of run.json as stored, so any field added
later is covered without code here) and of each step's log and events (their sha256s, kept in the link's
`body`). A prune link records what `prune` removed, by whom and when, optionally signed. Each link's hash
covers the previous one: removing or changing a link breaks every hash after it, and a checkpoint kept
outside the database (runner/store/checkpoints.py) pins a head that the chain must still extend."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

RUN, PRUNE = "run", "prune"
PRUNE_NAMESPACE = "runbook-prune"


def canonical(doc: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(previous: str, digest: str) -> str:
    return hashlib.sha256(f"{previous}:{digest}".encode()).hexdigest()


def text_sha(data: bytes | None) -> str | None:
    """The sha256 of a log as the stores keep it (text, undecodable bytes replaced), None when absent."""
    if data is None:
        return None
    return hashlib.sha256(data.decode("utf-8", "replace").encode()).hexdigest()


def bytes_sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def run_digest(record_doc: dict[str, Any], logs: list[list[Any]]) -> str:
    """The digest of a finished run: its whole record and its logs' sha256s ([index, stdout, events])."""
    return hashlib.sha256(canonical({"record": record_doc, "logs": sorted(logs)})).hexdigest()


def prune_digest(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({"prune": entry})).hexdigest()


def prune_payload(entry: dict[str, Any]) -> bytes:
    """What a prune record's signature covers: the entry without its signature."""
    return canonical({k: v for k, v in entry.items() if k != "signature"})


@dataclass(frozen=True)
class Link:
    seq: int
    run_id: str
    digest: str
    prev_hash: str
    hash: str
    kind: str
    body: str | None  # run: JSON of its logs' sha256s; prune: the prune entry; None: a link from before v4

    @property
    def logs(self) -> list[list[Any]] | None:
        return None if self.body is None else list(json.loads(self.body))


@dataclass(frozen=True)
class Finding:
    """One run (or link) that no longer matches; `position` orders findings along the chain."""

    position: int
    run_id: str
    why: str


@dataclass
class Walk:
    """What walking the links found: each position's hash and run, the newest link of each run, what
    prune records removed, and the links that were altered."""

    hashes: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    latest: dict[str, tuple[int, Link]] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    prunes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.hashes)

    @property
    def head(self) -> str:
        return self.hashes[-1] if self.hashes else ""


def walk(links: Iterable[tuple[Any, ...]]) -> Walk:
    """Check every link's hash against the one before it (rows: seq, run_id, digest, prev_hash, hash,
    kind, body, in seq order), streaming."""
    found = Walk()
    previous = ""
    for row in links:
        link = Link(int(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5] or RUN), row[6])
        position = found.length
        if link.prev_hash != previous or link.hash != chain_hash(previous, link.digest):
            found.findings.append(Finding(position, link.run_id or f"(prune record {position + 1})",
                                          "its link in the chain was altered or removed"))
        previous = link.hash
        found.hashes.append(link.hash)
        found.run_ids.append(link.run_id)
        if link.kind == PRUNE:
            _prune_link(found, position, link)
        else:
            found.latest[link.run_id] = (position, link)
    return found


def _prune_link(found: Walk, position: int, link: Link) -> None:
    try:
        entry = json.loads(link.body or "")
        ok = isinstance(entry, dict) and prune_digest(entry) == link.digest
    except ValueError:
        entry, ok = {}, False
    if not ok:
        found.findings.append(Finding(position, f"(prune record {position + 1})",
                                      "the prune record does not match its link"))
        return
    found.prunes.append((position, entry))
    for run_id in entry.get("removed", []):
        found.removed[str(run_id)] = position


class Groups:
    """Rows ordered by their first column (a run id), handed out group by group as the runs go by in
    the same order; rows of runs that are not asked for are passed over."""

    def __init__(self, rows: Iterator[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._next = next(rows, None)

    def take(self, key: str) -> list[tuple[Any, ...]]:
        while self._next is not None and str(self._next[0]) < key:
            self._next = next(self._rows, None)
        group = []
        while self._next is not None and str(self._next[0]) == key:
            group.append(self._next)
            self._next = next(self._rows, None)
        return group
