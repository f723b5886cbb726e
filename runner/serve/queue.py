"""The workers of one `runbook serve`: each claims the oldest queued run from the store and executes it
in a process of its own (runner/serve/execute.py). Stopping: no more claims, running runs may finish up
to the stop timeout, then they are sent SIGTERM, which cancels them as `runbook cancel` would."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable

from runner.definition.workspace import Workspace
from runner.serve.log import log
from runner.store.base import Store

_CANCEL_GRACE = 60.0  # seconds a canceled run has to record itself before it is killed


class Workers:
    def __init__(self, ws: Workspace, count: int, instance: str, open_store: Callable[[], Store],
                 hidden_env: Iterable[str]) -> None:
        self.ws, self.count, self.instance, self.open_store = ws, count, instance, open_store
        self.hidden_env = set(hidden_env)  # the hooks' tokens: never in a run's environment
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for number in range(self.count):
            thread = threading.Thread(target=self._loop, name=f"worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        store = self.open_store()
        while not self.stopping.is_set():
            try:
                run_id = store.claim_queued(self.instance)
            except Exception as exc:  # the store away: try again, the queue is in it
                log("claim-failed", error=exc.__class__.__name__)
                run_id = None
            if run_id is None:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            self._execute(run_id, store)

    def _execute(self, run_id: str, store: Store) -> None:
        env = {k: v for k, v in os.environ.items() if k not in self.hidden_env}
        env["RUNBOOK_WORKSPACE"] = str(self.ws.root)
        log("run-started", run=run_id)
        with self._lock:
            if self.stopping.is_set():  # claimed just as the service stopped: back to the queue
                store.set_queue_state(run_id, "queued", only_from="claimed")
                return
            child = subprocess.Popen([sys.executable, "-m", "runner.serve.execute", run_id], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
            self.children[run_id] = child
        code = child.wait()
        with self._lock:
            self.children.pop(run_id, None)
        try:
            status = store.load(run_id).status
        except Exception:
            status = "unknown"
        log("run-finished", run=run_id, status=status, exit=code)

    def stop(self, timeout: float) -> None:
        """Stops claiming; waits up to `timeout` for the running runs, then cancels them."""
        self.stopping.set()
        self.wake.set()
        deadline = time.monotonic() + timeout
        self._join(deadline)
        with self._lock:
            left = dict(self.children)
        for run_id, child in left.items():
            log("run-canceling", run=run_id, why="stop_timeout reached")
            child.send_signal(signal.SIGTERM)
        self._join(time.monotonic() + _CANCEL_GRACE)
        for child in left.values():
            if child.poll() is None:
                child.kill()

    def _join(self, deadline: float) -> None:
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
