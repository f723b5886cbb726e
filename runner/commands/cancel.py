from __future__ import annotations

import os
import signal
import socket
import sys
import time

from runner import identity
from runner.errors import UsageError
from runner.execution.processes import sweep
from runner.execution.signoffs import CANCEL_FILE, Signer, cancel_request
from runner.store.records import RunRecord, Signoff, now
from runner.store.backends import open_store
from runner.store.base import Store, process_start_time
from runner.store.files import write_private
from runner.definition.workspace import Workspace


def cancel(ws: Workspace, ref: str, wait: float = 15.0) -> int:
    """Stop a run as SIGTERM would; a run waiting for people is ended at once."""
    store = open_store(ws)
    record = store.load(store.resolve(ref))
    signer = Signer.for_workspace(ws, identity.operator())
    if record.status == "waiting":
        with store.updating(record.id) as record:  # an approval given meanwhile is kept, and ended with it
            if record.status != "waiting":
                raise UsageError(f"run {record.id} is {record.status} now: nothing was changed")
            _end_waiting(record, signer.signoff(record, "", "canceled"))
        print(f"run {record.id}: canceled", file=sys.stderr)
        return 0
    if record.status == "queued":
        return _cancel_queued(store, record, signer.signoff(record, "", "canceled"))
    if record.status != "running":
        raise UsageError(f"run {record.id} already ended: {record.status}")
    if record.hostname and record.hostname != socket.gethostname():
        raise UsageError(f"run {record.id} runs on host {record.hostname}: cancel it there (a waiting run can be "
                         "canceled from anywhere)")
    if record.pid and process_start_time(record.pid) == record.pid_start:
        if signer.signed:  # signed before the signal (exit 3 if it cannot be); the run records it as it ends
            write_private(store.run_dir(record.id) / CANCEL_FILE, cancel_request(signer.signoff(record, "", "canceled")))
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        store.reap_dead_runs()
        record = store.load(record.id)
        if record.status != "running":
            break
        time.sleep(0.2)
    sweep(record.id)
    print(f"run {record.id}: {record.status}" + (f" ({record.message})" if signer.signed else ""), file=sys.stderr)
    return 0 if record.status != "running" else 1


def _end_waiting(record: RunRecord, signoff: Signoff) -> None:
    for step in record.steps:
        if step.status == "waiting":
            step.status, step.ended_at = "canceled", now()
    record.status, record.exit_code, record.ended_at = "canceled", 130, now()
    record.message = f"canceled by {signoff.who} while waiting"
    if signoff.signature:
        record.signed.append(signoff)


def _cancel_queued(store: Store, record: RunRecord, signoff: Signoff) -> int:
    """A run `runbook serve` queued and no worker has started: it never starts."""
    if not store.set_queue_state(record.id, "canceled", only_from="queued"):
        raise UsageError(f"run {record.id} is being started by runbook serve: cancel it again in a moment")
    with store.updating(record.id) as record:
        record.status, record.exit_code, record.ended_at = "canceled", 130, now()
        record.message = f"canceled by {signoff.who} before it started"
        if signoff.signature:
            record.signed.append(signoff)
    print(f"run {record.id}: canceled", file=sys.stderr)
    return 0
