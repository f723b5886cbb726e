"""`runbook db checkpoint` and `db verify --checkpoints`: making and checking checkpoint lines
(runner/store/checkpoints.py), signed with ssh-keygen -Y (runner/store/signing.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from runner.errors import InvalidError
from runner.store import checkpoints
from runner.store.chain import Walk
from runner.store.signing import SignatureError, fingerprint_of, key_fingerprint, sign, verify


def make_line(found: Walk, at: float, key: str | None, team: Path | None) -> str:
    """A checkpoint line: signed with --key or the agent; unsigned only without [team] and without
    either (it still pins the chain, for whoever keeps the file where the database's users cannot write)."""
    if key is None and not os.environ.get("SSH_AUTH_SOCK"):
        if team is not None:
            raise InvalidError("db checkpoint: [team] is on: sign the checkpoint with --key FILE or ssh-agent")
        print("runbook: warning: the checkpoint is unsigned (give --key FILE or start ssh-agent to sign it)",
              file=sys.stderr)
        return checkpoints.line_of(checkpoints.entry_of(found, at, ""), "")
    entry = checkpoints.entry_of(found, at, key_fingerprint(key))
    payload = checkpoints.Checkpoint("", entry).payload
    return checkpoints.line_of(entry, sign(checkpoints.NAMESPACE, payload, key))


def check_file(path: Path, found: Walk, first_bad: str | None, signers: Path | None, key: str | None) -> list[str]:
    """What is wrong with the checkpoints in `path`: a signature that does not verify, then each
    checkpoint the chain no longer extends (in the file's order)."""
    pinned = fingerprint_of(Path(key).expanduser()) if key else None
    problems = []
    for point in checkpoints.read(path):
        why = _signature_problem(point, signers, pinned)
        if why:
            problems.append(f"{point.label}: {why}")
            continue
        broken = checkpoints.unextended(point, found, first_bad)
        if broken:
            problems.append(f"chain broken: {broken}")
    return problems


def _signature_problem(point: checkpoints.Checkpoint, signers: Path | None, pinned: str | None) -> str:
    if not point.signature:
        if signers is not None or pinned is not None:
            return "unsigned, and a signed checkpoint is required ([team] or --key)"
        return ""
    try:
        signer = verify(checkpoints.NAMESPACE, point.payload, point.signature, signers)
    except SignatureError as exc:
        return f"its signature does not verify ({exc}): the line was changed or forged"
    if signer.fingerprint != point.entry.get("signer"):
        return "signed by another key than the one it names"
    if pinned is not None and signer.fingerprint != pinned:
        return f"signed by key {signer.fingerprint}, not by --key ({pinned})"
    return ""
