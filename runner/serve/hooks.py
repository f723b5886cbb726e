"""One alert in -> one outcome, stored before the answer: which trigger it matches, its fields checked as
the parameters they fill (like -p), at most one run per alert (the store's key), the storm guard."""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

from runner.definition.model import Runbook, Trigger
from runner.definition.params import compile_pattern, resolve
from runner.definition.triggers import DEFAULT_LIMIT
from runner.definition.workspace import Workspace
from runner.errors import InvalidError
from runner.serve.formats import Alert
from runner.store.alerts import AlertKey, AlertRow
from runner.store.base import Store
from runner.store.files import write_private
from runner.store.records import RunRecord, now

HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")  # a limit from an alert names one host, no pattern


@dataclass(frozen=True)
class Outcome:
    fingerprint: str
    outcome: str  # queued | duplicate | resolved | no-match | rejected | suppressed
    run: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"fingerprint": self.fingerprint, "outcome": self.outcome}
        if self.run:
            shown["run"] = self.run
        if self.reason:
            shown["reason"] = self.reason
        return shown


class Intake:
    def __init__(self, ws: Workspace, store: Store, runbooks: list[Runbook], operator: str) -> None:
        self.ws, self.store, self.operator = ws, store, operator
        self.runbooks = sorted(runbooks, key=lambda r: r.name)

    def admit(self, hook: str, alert: Alert) -> Outcome:
        outcome = self._decide(hook, alert)
        self.store.record_alert(AlertRow(hook, alert.fingerprint, alert.status, alert.starts_at, dict(alert.labels),
                                         dict(alert.annotations), alert.generator_url, now(), outcome.outcome,
                                         outcome.run or "", outcome.reason or ""))
        return outcome

    def _decide(self, hook: str, alert: Alert) -> Outcome:
        key = AlertKey(hook, alert.fingerprint, alert.starts_at)
        if alert.status == "resolved":
            return Outcome(alert.fingerprint, "resolved", self._cancel_queued(key))
        existing = self.store.run_of_alert(key)
        if existing:
            return Outcome(alert.fingerprint, "duplicate", existing)
        found = self.match(hook, alert)
        if found is None:
            return Outcome(alert.fingerprint, "no-match")
        runbook, index, trigger = found
        try:
            payload = _payload(runbook, trigger, alert, hook, index)
        except InvalidError as exc:
            reasons = "; ".join(f"{p.path}: {p.message}" for p in exc.problems) or str(exc)
            return Outcome(alert.fingerprint, "rejected", reason=reasons)
        if self.store.runs_started_since(runbook.name, index, now() - 3600) >= trigger.max_runs_per_hour:
            return Outcome(alert.fingerprint, "suppressed",
                           reason=f"{runbook.name} triggers[{index}]: max_runs_per_hour {trigger.max_runs_per_hour} reached")
        return self._queue(key, runbook, index, payload)

    def match(self, hook: str, alert: Alert) -> tuple[Runbook, int, Trigger] | None:
        """The first trigger (runbooks by name, triggers in order) of `hook` whose labels the alert has."""
        for runbook in self.runbooks:
            for index, trigger in enumerate(runbook.triggers):
                if trigger.hook == hook and all(_matches(alert.labels.get(k), v) for k, v in trigger.match.items()):
                    return runbook, index, trigger
        return None

    def _queue(self, key: AlertKey, runbook: Runbook, index: int, payload: dict[str, Any]) -> Outcome:
        run_id = self.store.new_run_id(runbook.name)
        record = RunRecord(id=run_id, runbook=runbook.name, version=runbook.version, runbook_sha256=runbook.sha256,
                           workspace=str(self.ws.root), inventory="", limit=payload["limit"], started_at=now(),
                           operator=self.operator, trigger="alert", params=payload["shown"], status="queued",
                           lock=runbook.lock_name, alert=payload["alert"],
                           message=f"queued by alert {key.fingerprint} ({key.hook})")
        write_private(self.store.run_dir(run_id) / "run.json", json.dumps(record.to_dict(), indent=2).encode())
        got = self.store.enqueue(key, run_id, runbook.name, index, payload)
        if got != run_id:  # another request (or instance) queued this alert meanwhile
            shutil.rmtree(self.store.run_dir(run_id), ignore_errors=True)
            return Outcome(key.fingerprint, "duplicate", got)
        self.store.save(record)
        return Outcome(key.fingerprint, "queued", run_id)

    def _cancel_queued(self, key: AlertKey) -> str | None:
        """The alert's run, canceled if it had not started yet."""
        run_id = self.store.run_of_alert(key)
        if run_id and self.store.set_queue_state(run_id, "canceled", only_from="queued"):
            with self.store.updating(run_id) as record:
                record.status, record.exit_code, record.ended_at = "canceled", 130, now()
                record.message = "canceled before it started: the alert was resolved"
        return run_id


def _matches(value: str | None, wanted: str) -> bool:
    if value is None:
        return False
    if wanted.startswith("~"):
        return bool(compile_pattern(wanted[1:]).fullmatch(value))
    return value == wanted


def _payload(runbook: Runbook, trigger: Trigger, alert: Alert, hook: str, index: int) -> dict[str, Any]:
    """What the run is started with, each value checked now as the run will check it (InvalidError: rejected)."""
    from runner.errors import Problem

    file = str(runbook.path.name)
    assignments: dict[str, str] = {}
    problems = []
    for name, ref in trigger.from_alert.items():
        value = alert.field(ref)
        if value is None:
            problems.append(Problem(file, trigger.line, f"parameters.{name}", f"the alert has no {ref}"))
        else:
            assignments[name] = value
    limit = _limit(alert, trigger, problems, file)
    if problems:
        raise InvalidError("rejected", tuple(problems))
    params = resolve(runbook, assignments, dict(trigger.params), dict(os.environ), display=file)
    return {"hook": hook, "trigger": index, "assignments": assignments, "params": dict(trigger.params),
            "limit": limit, "alert": alert.to_dict(hook), "shown": params.redacted()}


def _limit(alert: Alert, trigger: Trigger, problems: list[Any], file: str) -> str:
    from runner.errors import Problem

    ref = trigger.limit or DEFAULT_LIMIT
    value = alert.field(ref)
    if value is not None and trigger.limit is None and re.fullmatch(r".+:\d+", value):
        value = value.rsplit(":", 1)[0]  # instance="web1:9100": the host, without the exporter's port
    if value is None or not HOST.match(value):
        shown = "missing" if value is None else f"{value[:60]!r} is not a host name"
        problems.append(Problem(file, trigger.line, "limit", f"{ref} {shown}: the run needs the one host to work on"))
        return ""
    return value
