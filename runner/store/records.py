"""The run record: what run.json holds and what the history rows index."""
from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.store.untrusted import inside

COUNTS = ("ok", "changed", "failed", "unreachable", "skipped")
# What a record, a log or any output shows in place of a secret value.
REDACTED = "***"


def now() -> float:
    return dt.datetime.now(dt.timezone.utc).timestamp()


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()


@dataclass
class HostResult:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    message: str = ""
    summary: str = ""  # what the playbook said of this host for people (runbook_summary), lines joined by \n

    @property
    def outcome(self) -> str:
        if self.failed:
            return "failed"
        if self.unreachable:
            return "unreachable"
        return "changed" if self.changed else "ok"


@dataclass
class Signoff:
    """A confirmation of a manual step or an approval: who, when, what."""

    who: str
    at: float
    note: str = ""
    item: str = ""
    decision: str = "confirmed"
    host: str = field(default_factory=socket.gethostname)  # where it was given (approve/resume from anywhere)
    # With [team] on: the canonical JSON statement and its `ssh-keygen -Y sign` signature; `who` is then
    # the principal its key proves. Empty without [team]: `who` is an unverified label.
    statement: str = ""
    signature: str = ""


@dataclass
class StepRecord:
    index: int
    name: str
    type: str
    status: str = "pending"  # pending running succeeded failed skipped waiting canceled timed_out
    started_at: float | None = None
    ended_at: float | None = None
    rc: int | None = None
    attempts: int = 0
    hosts: dict[str, HostResult] = field(default_factory=dict)
    signoffs: list[Signoff] = field(default_factory=list)
    message: str = ""
    handler: bool = False
    # The Ansible strategy the playbook ran on (mitogen_linear: accelerated; linear: Ansible's own) and why not accelerated.
    strategy: str = ""
    strategy_reason: str = ""
    # What the playbook handed back with ansible's set_stats (e.g. capacity figures), kept for reports.
    data: dict[str, Any] = field(default_factory=dict)
    worker: str = ""  # the [workers.NAME] that ran this playbook step; "" when it ran on the controller

    @property
    def folder_name(self) -> str:
        """The step's folder under steps/: one safe path component even for a name in Japanese."""
        from runner.store.step_folders import step_folder_name

        return step_folder_name(self.index, self.name)

    def folder(self, run_dir: Path) -> Path:
        """Where this step's output, events, rc and status live in the run's folder (DamagedError for a
        name that is not a single safe folder name: see store/untrusted.py)."""
        return inside(run_dir, "steps", self.folder_name)

    def counts(self) -> dict[str, int]:
        return {c: sum(getattr(h, c) for h in self.hosts.values()) for c in COUNTS}

    def failed_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.failed)

    def unreachable_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.unreachable and not r.failed)


@dataclass
class RunRecord:
    id: str
    runbook: str
    version: str
    runbook_sha256: str
    workspace: str
    inventory: str
    limit: str
    started_at: float
    operator: str
    trigger: str
    params: dict[str, Any] = field(default_factory=dict)
    playbooks: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None
    check: bool = False
    diff: bool = False
    forks: int | None = None
    ci_job_url: str | None = None
    ended_at: float | None = None
    status: str = "running"
    exit_code: int | None = None
    message: str = ""
    pid: int | None = None
    pid_start: int | None = None
    hostname: str = ""
    lock: str = ""
    worker: str = ""  # `run --worker NAME`: every playbook step ran there (kept so resume does the same)
    schedule_entry: int | None = None  # the runbook's schedule[N] whose crontab line started this cron run
    # trigger alert: hook, fingerprint, status, labels, annotations, startsAt, generatorURL of the alert
    alert: dict[str, Any] | None = None
    steps: list[StepRecord] = field(default_factory=list)
    # Who continued the run, when and from which host (resume works from any machine on the team's store).
    resumes: list[Signoff] = field(default_factory=list)
    # Signed statements about the whole run with [team] on: who started it, who canceled it.
    signed: list[Signoff] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at

    def hosts(self) -> list[str]:
        return sorted({h for s in self.steps for h in s.hosts})

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["started_at"], data["ended_at"] = iso(self.started_at), iso(self.ended_at)
        data["duration"] = None if self.duration is None else round(self.duration, 3)
        for step, raw in zip(self.steps, data["steps"]):
            raw["started_at"], raw["ended_at"] = iso(step.started_at), iso(step.ended_at)
            raw["counts"] = step.counts()
            for signoff, raw_signoff in zip(step.signoffs, raw["signoffs"]):
                raw_signoff["at"] = iso(signoff.at)
        for signoff, raw_signoff in zip(self.resumes + self.signed, data["resumes"] + data["signed"]):
            raw_signoff["at"] = iso(signoff.at)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        data.pop("duration", None)
        data["started_at"] = from_iso(data["started_at"])
        data["ended_at"] = from_iso(data.get("ended_at"))
        data["steps"] = [_step_from_dict(s) for s in data.get("steps", [])]
        data["resumes"] = [_signoff_from_dict(s) for s in data.get("resumes", [])]
        data["signed"] = [_signoff_from_dict(s) for s in data.get("signed", [])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _step_from_dict(data: dict[str, Any]) -> StepRecord:
    data = dict(data)
    data.pop("counts", None)
    data["started_at"] = from_iso(data.get("started_at"))
    data["ended_at"] = from_iso(data.get("ended_at"))
    data["hosts"] = {h: HostResult(**r) for h, r in data.get("hosts", {}).items()}
    data["signoffs"] = [_signoff_from_dict(s) for s in data.get("signoffs", [])]
    names = {f.name for f in dataclasses.fields(StepRecord)}
    return StepRecord(**{k: v for k, v in data.items() if k in names})


def _signoff_from_dict(data: dict[str, Any]) -> Signoff:
    return Signoff(**{"host": "", **data, "at": from_iso(data["at"])})
