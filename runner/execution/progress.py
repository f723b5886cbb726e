"""Live progress on stderr: a status line that rewrites itself on a terminal, plain lines elsewhere."""
from __future__ import annotations

import os
import sys
from typing import TextIO

from runner.definition.durations import format_duration
from runner.output import printable, raw
from runner.store.records import RunRecord, StepRecord

_COLORS = {"ok": "32", "succeeded": "32", "changed": "33", "skipped": "36", "waiting": "36",
           "failed": "31", "unreachable": "35", "timed_out": "31", "canceled": "33", "aborted": "31"}


def use_color(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, status: str, color: bool) -> str:
    code = _COLORS.get(status)
    return f"\033[{code}m{text}\033[0m" if color and code else text


def step_label(step: StepRecord, total: int, handlers: int = 0) -> str:
    """`[2/5 restart]`; an on_failure handler counts apart, `[on_failure 1/1 rollback]` (index past the
    steps: handlers are appended to the record after them)."""
    if step.handler:
        return f"[on_failure {step.index - total + 1}/{max(handlers, step.index - total + 1)} {step.name}]"
    return f"[{step.index + 1}/{total} {step.name}]"


class Progress:
    """What a run shows while it works. quiet: only errors and the final line (for cron)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, verbose: bool = False) -> None:
        # Its own escapes (colours, the rewritten status line) pass; every text in them is made printable.
        self.stream = raw(stream or sys.stderr)
        self.tty = self.stream.isatty()
        self.color = use_color(self.stream)
        self.quiet = quiet
        self.verbose = verbose
        self._label = ""
        self._task = ""
        self._started: set[str] = set()
        self._done: set[str] = set()
        self._status_shown = False

    def _line(self, text: str, always: bool = False, status: str = "") -> None:
        if self.quiet and not always:
            return
        if self._status_shown:
            self.stream.write("\r\033[K")
            self._status_shown = False
        self.stream.write(paint(printable(text), status, self.color) + "\n")
        self.stream.flush()

    def _status(self) -> None:
        if not self.tty or self.quiet or self.verbose:
            return
        hosts = f"{len(self._done)}/{len(self._started)} hosts" if self._started else ""
        text = f"{self._label} {self._task}  {hosts}".rstrip()
        width = os.get_terminal_size(self.stream.fileno()).columns if self.tty else 120
        self.stream.write("\r\033[K" + printable(text)[: max(width - 1, 20)])
        self.stream.flush()
        self._status_shown = True

    def run_started(self, record: RunRecord, steps: int) -> None:
        self._line(f"run {record.id}: {record.runbook} {record.version} on {record.inventory}"
                   + (f" (limit {record.limit})" if record.limit else "") + (" [check mode]" if record.check else ""))

    def step_started(self, step: StepRecord, total: int, detail: str = "", handlers: int = 0) -> None:
        self._label = step_label(step, total, handlers)
        self._task = ""
        self._line(f"{self._label} {detail}".rstrip())

    def step_skipped(self, step: StepRecord, total: int, reason: str, handlers: int = 0) -> None:
        self._line(f"{step_label(step, total, handlers)} skipped: {reason}")

    def task_started(self, name: str) -> None:
        self._task = name
        self._started.clear()
        self._done.clear()
        if not self.tty and not self.verbose:
            self._line(f"{self._label} task: {name}")
        self._status()

    def host_started(self, host: str) -> None:
        self._started.add(host)
        self._status()

    def host_result(self, host: str, outcome: str, message: str = "") -> None:
        self._started.add(host)
        self._done.add(host)
        if outcome in ("failed", "unreachable") and not self.verbose:
            message = message.removeprefix(f"{host}: ")  # playbooks often name the host themselves
            text = f"  {outcome.upper()}: {host}" + (f": {message}" if message else "")
            self._line(text, always=True, status=outcome)
        self._status()

    def ansible_output(self, text: str) -> None:
        if self.verbose and text:
            self._line(text)

    def step_finished(self, step: StepRecord) -> None:
        counts = step.counts()
        summary = " ".join(f"{k}={v}" for k, v in counts.items() if v)
        took = format_duration((step.ended_at or 0) - (step.started_at or 0)) if step.started_at else ""
        text = f"{self._label} {step.status}" + (f" ({summary})" if summary else "") + (f" in {took}" if took else "")
        if step.message and not step.hosts:
            text += f": {step.message}"
        self._line(text, always=step.status not in ("succeeded", "skipped"), status=step.status)
        for host, result in sorted(step.hosts.items()):
            for line in result.summary.splitlines():
                self._line(f"  {host}: {line}")

    def note(self, text: str) -> None:
        self._line(text, always=True)

    def run_finished(self, record: RunRecord) -> None:
        took = format_duration(record.duration or 0)
        failed = sorted({h for s in record.steps for h in s.failed_hosts()})
        unreachable = sorted({h for s in record.steps for h in s.unreachable_hosts()} - set(failed))
        text = f"run {record.id}: {record.status} in {took} (exit {record.exit_code})"
        if failed:
            text += f"; failed: {', '.join(failed)}"
        if unreachable:
            text += f"; unreachable: {', '.join(unreachable)}"
        if record.message and record.status != "succeeded":
            text += f"; {record.message}"
        self._line(text, always=True, status=record.status)
