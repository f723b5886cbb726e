"""What a signed approval costs: `runbook approve` as an approver runs it (a fresh process), on a run
waiting at an approval, without [team] (a label) and with [team] (the key's principal found, the run's
start statement verified, the approval signed with ssh-keygen -Y), and what signing adds measured in one
process (fresh processes vary by more than that). The goal: signing adds under 100 ms.

    python bench/approve.py [--repeat 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNBOOK = """apiVersion: runbook/v1
name: gate
title: One approval
version: 1.0.0
kind: operation
steps:
  - name: change-approval
    approval: {message: Go ahead}
"""


def make_workspace(ws: Path, signed: bool) -> dict[str, str]:
    """A workspace with the one-approval runbook; with `signed`, keys for alice and bob and [team] on.
    Returns the keys' paths by name."""
    (ws / "runbooks").mkdir(parents=True)
    (ws / "inventories").mkdir()
    (ws / "inventories" / "local.ini").write_text("localhost ansible_connection=local\n")
    (ws / "runbooks" / "gate.yml").write_text(RUNBOOK)
    if not signed:
        return {}
    keys, lines = {}, []
    for name in ("alice", "bob"):
        key = ws.parent / f"{ws.name}-{name}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
        keys[name] = str(key)
        lines.append(f"{name} {' '.join(Path(f'{key}.pub').read_text().split()[:2])}")
    (ws / "allowed_signers").write_text("\n".join(lines) + "\n")
    (ws / "runbook.toml").write_text('[team]\nallowed_signers = "allowed_signers"\n')
    return keys


def approve_once(ws: Path, keys: dict[str, str]) -> float:
    """Wall seconds of `runbook approve` on a new waiting run (started, and resumed, outside the timing)."""
    runbook = [sys.executable, "-m", "runner"]
    env = dict(os.environ, RUNBOOK_STATE_DIR=str(ws / ".state"))
    env.pop("RUNBOOK_DATABASE_URL", None)
    as_alice = dict(env, RUNBOOK_USER="alice", RUNBOOK_SIGNING_KEY=keys.get("alice", ""))
    begun = subprocess.run([*runbook, "run", "gate"], cwd=ws, env=as_alice, capture_output=True)
    if begun.returncode != 5:
        raise SystemExit(begun.stderr.decode())
    as_bob = dict(env, RUNBOOK_USER="bob", RUNBOOK_SIGNING_KEY=keys.get("bob", ""))
    started = time.perf_counter()
    done = subprocess.run([*runbook, "approve", "last"], cwd=ws, env=as_bob, capture_output=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode())
    subprocess.run([*runbook, "resume", "last"], cwd=ws, env=as_alice, capture_output=True)
    return took


def signing_cost(ws: Path, keys: dict[str, str], repeat: int) -> float:
    """Median seconds, in one process, of what [team] adds to an approval: finding the key's principal,
    verifying the run's start statement, signing the approval."""
    from runner.execution.signoffs import Signer
    from runner.store.records import RunRecord

    record = RunRecord(id="bench-run", runbook="gate", version="1", runbook_sha256="0" * 64, workspace=str(ws),
                       inventory="", limit="all", started_at=time.time(), operator="alice", trigger="cli")
    os.environ["RUNBOOK_SIGNING_KEY"] = keys["alice"]
    record.signed.append(Signer("alice", ws / "allowed_signers").signoff(record, "", "started"))
    os.environ["RUNBOOK_SIGNING_KEY"] = keys["bob"]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        signer = Signer("bob", ws / "allowed_signers")
        signer.verify(record)
        signer.signoff(record, "change-approval", "approved", "lgtm")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spaces = {signed: Path(tmp) / ("signed" if signed else "plain") for signed in (False, True)}
        keys = {signed: make_workspace(ws, signed) for signed, ws in spaces.items()}
        results: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeat):  # alternating, so that a busy machine slows both alike
            for signed, ws in spaces.items():
                results[signed].append(approve_once(ws, keys[signed]))
        in_process = signing_cost(spaces[True], keys[True], args.repeat * 3) * 1000
    # The fastest of each: on a shared machine the other processes only ever add time. Process start-up
    # varies by more than signing costs, so the in-process figure is the one held to the goal.
    plain, signed_time = min(results[False]), min(results[True])
    print(f"runbook approve, fastest of {args.repeat} fresh processes: unsigned {plain * 1000:.0f} ms, "
          f"signed {signed_time * 1000:.0f} ms ({signed_time / plain:.2f}x)")
    added = in_process
    print(f"what signing adds (principal found, start statement verified, approval signed and proven), "
          f"median in one process: {added:.0f} ms; goal under 100 ms: {'ok' if added < 100 else 'OVER'}")
    return 0 if added < 100 else 1


if __name__ == "__main__":
    raise SystemExit(main())
