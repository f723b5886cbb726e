"""Checkpoints: signed lines, kept outside the database (a git repository, a log host), each pinning the
chain's length and head hash at one time. The chain must still extend every one: a removed newest run, a
truncated table or a rewritten link leaves a checkpoint it no longer extends."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InvalidError
from runner.store.chain import Walk, canonical
from runner.store.records import iso

NAMESPACE = "runbook-checkpoint"
FIELDS = ("chain_length", "head", "head_run", "at", "signer")


@dataclass(frozen=True)
class Checkpoint:
    where: str  # FILE:LINE
    entry: dict[str, Any]

    @property
    def signature(self) -> str:
        return str(self.entry.get("signature") or "")

    @property
    def payload(self) -> bytes:
        """What the signature covers: every field but the signature."""
        return canonical({k: v for k, v in self.entry.items() if k != "signature"})

    @property
    def label(self) -> str:
        return f"the checkpoint of {self.entry.get('at')} ({self.where})"


def entry_of(found: Walk, at: float, signer: str) -> dict[str, Any]:
    return {"chain_length": found.length, "head": found.head, "head_run": found.run_ids[-1] if found.run_ids else "",
            "at": iso(at), "signer": signer}


def line_of(entry: dict[str, Any], signature: str) -> str:
    return canonical({**entry, **({"signature": signature} if signature else {})}).decode() + "\n"


def read(path: Path) -> list[Checkpoint]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidError(f"--checkpoints {path}: cannot read it ({exc.strerror})") from None
    found = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or any(k not in entry for k in FIELDS) \
                or not isinstance(entry["chain_length"], int):
            raise InvalidError(f"{path}:{number}: not a checkpoint line (runbook db checkpoint writes them)")
        found.append(Checkpoint(f"{path}:{number}", entry))
    return found


def unextended(checkpoint: Checkpoint, found: Walk, first_bad: str | None) -> str:
    """Why the chain no longer extends `checkpoint` ("" when it does); `first_bad`: the first run the
    chain itself found changed, named when it lies under the checkpoint."""
    length, head = int(checkpoint.entry["chain_length"]), str(checkpoint.entry["head"])
    if length == 0:
        return ""
    if found.length < length:
        return (f"{checkpoint.label} saw {length} link(s) and the chain now has {found.length}: the newest "
                f"{length - found.length} are gone (truncated or deleted; the newest run it saw: "
                f"{checkpoint.entry['head_run']})")
    if found.hashes[length - 1] != head:
        run = first_bad or found.run_ids[length - 1] or f"(prune record {length})"
        return f"{checkpoint.label} is no longer extended by the chain: run {run} or a link before it was changed"
    return ""
