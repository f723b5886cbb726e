"""Every process a run starts carries a marker in its environment, so cancel, timeout and the reaper of
dead runs can find and stop all of them, including Ansible workers that setsid() out of the process group.
Sweeping a run also discards the scratch folders its dead runner left behind."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from runner.execution.scratch import discard_orphans
from runner.store.ids import MARKER


def marked(run_id: str) -> list[int]:
    """Pids of live processes (other than this one) whose environment carries the run's marker."""
    needle = f"{MARKER}={run_id}".encode()
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def sweep(run_id: str, grace: float = 3.0, deadline: float = 9.0) -> int:
    """SIGTERM every marked process, SIGKILL what is left after `grace`, then discard the run's scratch
    folders whose runner is gone; returns how many processes were signalled."""
    started = time.monotonic()
    signalled: set[int] = set()
    sig = signal.SIGTERM
    while time.monotonic() - started < deadline:
        pids = marked(run_id)
        if not pids:
            break
        for pid in pids:
            _signal(pid, sig)
            signalled.add(pid)
        time.sleep(0.1)
        if time.monotonic() - started > grace:
            sig = signal.SIGKILL
    discard_orphans(run_id)
    return len(signalled)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
