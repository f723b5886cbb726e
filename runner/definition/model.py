"""A validated runbook as frozen dataclasses: nothing past the loader sees raw YAML."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

PARAMETER_TYPES = ("string", "integer", "number", "boolean", "choice", "list", "secret")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    required: bool = False
    default: Any = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] = ()
    env: str | None = None
    description: str = ""
    line: int | None = None

    @property
    def secret(self) -> bool:
        return self.type == "secret"


@dataclass(frozen=True)
class Approval:
    message: str
    approvers: int = 1
    from_groups: tuple[str, ...] = ()  # `from:` [team] groups the approvers must belong to (any of them)


@dataclass(frozen=True)
class Step:
    name: str
    type: str  # playbook | manual | approval
    playbook: str | None = None
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    manual: str | None = None
    checklist: tuple[str, ...] = ()
    approval: Approval | None = None
    timeout: int | None = None
    retries: int = 0
    when: str | None = None
    on_failure: str = "abort"
    description: str = ""
    line: int | None = None
    worker: str | None = None  # a [workers.NAME] of runbook.toml; None: the runbook's, else local


@dataclass(frozen=True)
class Rollout:
    serial: Any = None
    max_fail_percentage: float | None = None


@dataclass(frozen=True)
class Schedule:
    """One `schedule:` entry. `cron` is when cron fires it: the entry's own expression, or for a monthly
    business-day entry the daily `at` time (the run then checks its calendar); `business_day` counts from
    the start of the month (1 first) or its end (-1 last). Checked at install by runner/schedule/checks.py."""

    cron: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    inventory: str | None = None
    limit: str | None = None
    calendar: str | None = None
    on_holiday: str = "skip"
    business_day: int | None = None
    at: str | None = None
    waits: bool = False  # the runbook has manual or approval steps and each scheduled run may wait at them

    @property
    def timing(self) -> str:
        """When it is due, as `schedule list` shows it."""
        if self.business_day is not None:
            which = {1: "first", -1: "last"}.get(self.business_day, str(self.business_day))
            return f"{which} business day {self.at}"
        return self.cron


@dataclass(frozen=True)
class Trigger:
    """One `triggers:` entry: alerts of [hooks.HOOK] whose labels match start the runbook. `limit` is the
    alert field naming the host (labels.instance without its port when unset)."""

    hook: str
    match: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    from_alert: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    limit: str | None = None
    max_runs_per_hour: int = 10
    line: int | None = None


@dataclass(frozen=True)
class Runbook:
    path: Path
    sha256: str
    name: str
    title: str
    version: str
    kind: str
    steps: tuple[Step, ...]
    maintenance_type: str | None = None
    owner: str = ""
    contact: str = ""  # whom to escalate to; `escalation` falls back on the owner
    tags: tuple[str, ...] = ()
    description: str = ""
    targets: str = "all"
    inventory: str | None = None
    max_hosts: int | None = None  # refuse, before anything runs, a run that targets more hosts
    concurrency: str = "exclusive"
    lock: str | None = None
    timeout: int | None = None
    rollout: Rollout = Rollout()
    parameters: tuple[Parameter, ...] = ()
    on_failure: tuple[Step, ...] = ()
    schedule: tuple[Schedule, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    worker: str | None = None  # where its playbook steps run by default (None: on this machine)
    accelerate: bool = True  # false: this runbook's playbooks run on Ansible's own strategy
    # `translations:` as validated: {"ja": {"title": ..., "steps": {NAME: {"manual": ...}}}} (translations.py)
    translations: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}), compare=False)
    # The line of every key path ("steps[0].playbook": 9), for problems found after loading.
    lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), compare=False, repr=False)

    @property
    def escalation(self) -> str:
        return self.contact or self.owner

    @property
    def lock_name(self) -> str:
        return self.lock or self.name

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def playbooks(self) -> tuple[str, ...]:
        names = [s.playbook for s in self.steps + self.on_failure if s.playbook]
        return tuple(dict.fromkeys(names))
