"""One queued run, executed in its own process (`python -m runner.serve.execute RUN_ID`, started by a
worker of `runbook serve`): the executor owns its signals there, so SIGTERM cancels the run as
`runbook cancel` would. Its values are checked again, as `runbook run` checks -p."""
from __future__ import annotations

import os
import shutil
import sys

from runner.errors import RunbookError
from runner.store.records import now


def execute(run_id: str) -> int:
    from runner import identity
    from runner.definition.loader import load_runbook
    from runner.definition.params import resolve
    from runner.definition.workspace import open_workspace
    from runner.execution.executor import Execution, RunRequest
    from runner.execution.progress import Progress
    from runner.store.backends import open_store

    ws = open_workspace()
    store = open_store(ws)
    queued = store.load(run_id)
    payload = store.queued_payload(run_id)
    try:
        if queued.status != "queued" or payload is None:
            raise RunbookError(f"run {run_id} is {queued.status}, not queued: not started")
        runbook = load_runbook(ws.runbook_path(queued.runbook), cache=ws.state_dir / "cache" / "validated")
        params = resolve(runbook, payload["assignments"], payload["params"], os.environ, display=ws.display(runbook.path))
        request = RunRequest(params=params, operator=queued.operator, trigger="alert", limit=payload["limit"] or None,
                             interactive=False, run_id=run_id, alert=payload["alert"])
        execution = Execution(ws, runbook, request, Progress(quiet=True))
        shutil.rmtree(store.run_dir(run_id))  # the queued record gives way to the run's own, same id
        record = execution.start()
    except RunbookError as exc:
        queued.status, queued.exit_code, queued.ended_at = "failed", int(exc.exit_code), now()
        queued.message = f"not started: {exc}"[:2000]
        store.save(queued)
        print(f"runbook serve: run {run_id} not started: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    finally:
        store.set_queue_state(run_id, "done")
    return int(record.exit_code or 0)


if __name__ == "__main__":
    sys.exit(execute(sys.argv[1]))
