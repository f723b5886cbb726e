"""One queued run, executed in its own process (`python -m runner.serve.execute RUN_ID`, started by a
worker of `runbook serve`): the executor owns its signals there, so SIGTERM cancels the run as
`runbook cancel` would. Its values are checked again, as `runbook run` checks -p."""
from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable
from types import FrameType

from runner.definition.workspace import Workspace
from runner.errors import RunbookError
from runner.store.base import Store
from runner.store.records import RunRecord, now

LOCK_WAIT = 24 * 3600.0  # seconds an exclusive run waits for its lock, queued, before it fails


class _Stopped(Exception):
    """SIGTERM before the run started (waiting for its lock): it goes back to the queue."""


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stopped()


def execute(run_id: str) -> int:
    from runner.definition.workspace import open_workspace
    from runner.store.backends import open_store

    signal.signal(signal.SIGTERM, _stop)  # the executor installs its own (cancel) once the run has started
    ws = open_workspace()
    store = open_store(ws)
    hold = starting_lock(store, run_id)  # held until this process ends: a restarted serve leaves the run to it
    if hold is None:
        return 0  # another process has it
    try:
        return _execute(ws, store, run_id)
    finally:
        (store.locks_dir / f"starting-{run_id}.lock").unlink(missing_ok=True)
        os.close(hold)


def _execute(ws: Workspace, store: Store, run_id: str) -> int:
    queued = store.load(run_id)
    try:
        record = _start(ws, store, queued)
    except _Stopped:
        store.save(queued)  # as it was: queued, and run later by this or another instance
        store.set_queue_state(run_id, "queued")
        print(f"runbook serve: run {run_id} not started (stopping): back in the queue", file=sys.stderr)
        return 130
    except RunbookError as exc:
        queued.status, queued.exit_code, queued.ended_at = "failed", int(exc.exit_code), now()
        queued.message = f"not started: {exc}"[:2000]
        store.save(queued)
        store.set_queue_state(run_id, "done")
        print(f"runbook serve: run {run_id} not started: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    store.set_queue_state(run_id, "done")
    return int(record.exit_code or 0)


def _start(ws: Workspace, store: Store, queued: RunRecord) -> RunRecord:
    """The queued run started under its own id; an exclusive runbook whose lock is held waits for it
    (the run shows queued meanwhile) instead of failing."""
    from runner.definition.loader import load_runbook
    from runner.definition.params import resolve
    from runner.execution.executor import Execution, RunRequest
    from runner.execution.progress import Progress

    payload = store.queued_payload(queued.id)
    if queued.status != "queued" or payload is None:
        raise RunbookError(f"run {queued.id} is {queued.status}, not queued: not started")
    runbook = load_runbook(ws.runbook_path(queued.runbook), cache=ws.state_dir / "cache" / "validated")
    params = resolve(runbook, payload["assignments"], payload["params"], os.environ, display=ws.display(runbook.path))
    request = RunRequest(params=params, operator=queued.operator, trigger="alert", limit=payload["limit"] or None,
                         interactive=False, run_id=queued.id, alert=payload["alert"], wait_lock=LOCK_WAIT)
    execution = Execution(ws, runbook, request, Progress(quiet=True))
    shutil.rmtree(store.run_dir(queued.id))  # the queued record gives way to the run's own, same id
    return execution.start()


def starting_lock(store: Store, run_id: str) -> int | None:
    """An exclusive flock on locks/starting-RUN.lock, or None when another live process holds it."""
    import fcntl

    fd = os.open(store.locks_dir / f"starting-{run_id}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def abandoned(store: Store, instance_alive: Callable[[str], bool]) -> list[str]:
    """Runs claimed but never started whose instance is gone and no process of this machine is starting."""
    gone = []
    for run_id, claimant in store.claimed_not_started():
        if instance_alive(claimant):
            continue
        fd = starting_lock(store, run_id)
        if fd is not None:
            os.close(fd)
            (store.locks_dir / f"starting-{run_id}.lock").unlink(missing_ok=True)
            gone.append(run_id)
    return gone


if __name__ == "__main__":
    sys.exit(execute(sys.argv[1]))
