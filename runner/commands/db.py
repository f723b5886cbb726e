"""`runbook db upgrade|import|sync|verify|rebuild|checkpoint`: the store's schema, moving a local history
into the team's database, uploading runs kept locally while it was away, the tamper-evident chain and its
checkpoints, and the index rebuilt from run folders."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from runner.definition.workspace import Workspace
from runner.errors import RunbookError, UsageError
from runner.store.backends import open_store
from runner.store.chain import PRUNE_NAMESPACE, Finding, Walk, prune_payload


class RefusedError(RunbookError):
    """Finished runs a command was asked to write with content other than the chain sealed."""


def _refused(refused: list[str], what: str) -> None:
    if refused:
        for why in refused:
            print(f"runbook: {why}", file=sys.stderr)
        raise RefusedError(f"{what}: {len(refused)} finished run(s) refused (named above); `runbook db verify` "
                           "checks what the store holds")


def upgrade(ws: Workspace, grant: str | None = None) -> int:
    store = open_store(ws)
    before, after = store.upgrade()
    verb = "already at" if before == after else f"upgraded from version {before} to"
    print(f"{store.describe()}: schema {verb} version {after}", file=sys.stderr)
    sealed, refused = store.reseal()
    if sealed:
        print(f"sealed {sealed} finished run(s) with the full digest (linked before schema 4, or never)",
              file=sys.stderr)
    if grant:
        from runner.store.postgres import PostgresStore

        if not isinstance(store, PostgresStore):
            raise UsageError("--grant is for the team's PostgreSQL database")
        store.grant(grant)
        print(f"granted role {grant} what runbook needs (no UPDATE or DELETE of finished runs)", file=sys.stderr)
    store.close()
    _refused([f"run {r}: its rows no longer match its link from before schema 4: not sealed" for r in refused],
             "db upgrade")
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
    copied, known, damaged, refused = store.import_state(source)
    print(f"imported {copied} run(s) from {source} into {store.describe()}"
          + (f"; {known} were already there" if known else "")
          + (f"; {damaged} with a damaged run.json were skipped" if damaged else ""), file=sys.stderr)
    store.close()
    _refused(refused, "db import")
    return 0


def sync(ws: Workspace) -> int:
    store = open_store(ws)
    from runner.store.postgres import PostgresStore

    if not isinstance(store, PostgresStore):
        print("the store is the local SQLite history: there is nothing to upload", file=sys.stderr)
        return 0
    count, refused = store.sync_pending()
    print(f"uploaded {count} run(s) kept locally to {store.describe()}", file=sys.stderr)
    store.close()
    _refused(refused, "db sync")
    return 0


def rebuild(ws: Workspace) -> int:
    store = open_store(ws)
    count, damaged, refused = store.rebuild()
    print(f"re-indexed {count} run folder(s) from their run.json into {store.describe()}"
          + (f"; {damaged} damaged, shown as damaged" if damaged else ""), file=sys.stderr)
    store.close()
    _refused(refused, "db rebuild")
    return 0


def verify(ws: Workspace, checkpoints: str | None = None, key: str | None = None) -> int:
    """The chain, every run against its link, prune records' signatures and, with --checkpoints, that the
    chain still extends every checkpoint; exit 1 naming the first run that no longer matches."""
    store = open_store(ws)
    found, findings = store.verify()
    signers = ws.allowed_signers
    findings += _prune_findings(found, signers)
    problems = [f"chain broken at run {f.run_id}: {f.why}" for f in sorted(findings, key=lambda f: f.position)]
    if checkpoints:
        from runner.commands.checkpoint import check_file

        first_bad = next((f.run_id for f in sorted(findings, key=lambda f: f.position)), None)
        problems += check_file(Path(checkpoints), found, first_bad, signers, key)
    _show_prunes(found)
    if problems:
        for line in problems[1:10]:
            print(f"runbook: also: {line}", file=sys.stderr)
        raise RunbookError(f"{problems[0]} ({found.length} link(s) in the chain)")
    print(f"{store.describe()}: the chain of {found.length} link(s) is intact"
          + (f" and extends every checkpoint in {checkpoints}" if checkpoints else ""), file=sys.stderr)
    return 0


def _prune_findings(found: Walk, signers: Path | None) -> list[Finding]:
    from runner.store.signing import SignatureError, verify as verify_signature

    findings = []
    for position, entry in found.prunes:
        label = f"(prune record {position + 1}, by {entry.get('by')} at {entry.get('at')})"
        signature = str(entry.get("signature") or "")
        if not signature:
            if signers is not None:
                findings.append(Finding(position, label, "not signed, and [team] requires signed prune records"))
            continue
        try:
            signer = verify_signature(PRUNE_NAMESPACE, prune_payload(entry), signature, signers)
        except SignatureError as exc:
            findings.append(Finding(position, label, f"its signature does not verify ({exc})"))
            continue
        if signer.fingerprint != entry.get("signer"):
            findings.append(Finding(position, label, "signed by another key than the one it names"))
    return findings


def _show_prunes(found: Walk) -> None:
    for position, entry in found.prunes:
        removed = entry.get("removed") or []
        signed = f"signed by key {entry.get('signer')}" if entry.get("signature") else "unsigned"
        print(f"runbook: prune record {position + 1}: {len(removed)} run(s) removed by {entry.get('by')} on "
              f"{entry.get('host')} at {entry.get('at')} ({signed})", file=sys.stderr)


def checkpoint(ws: Workspace, key: str | None, output: str | None) -> int:
    from runner.commands.checkpoint import make_line

    store = open_store(ws)
    found, findings = store.verify()
    if findings:
        first = findings[0]
        raise RunbookError(f"chain broken at run {first.run_id}: {first.why}: no checkpoint written "
                           "(a checkpoint pins an intact chain)")
    line = make_line(found, time.time(), key, ws.allowed_signers)
    if output:
        path = Path(output).expanduser()
        with path.open("a", encoding="utf-8") as out:
            out.write(line)
        print(f"checkpoint of {found.length} link(s) appended to {path}", file=sys.stderr)
    else:
        sys.stdout.write(line)
    store.close()
    return 0
