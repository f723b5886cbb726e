"""Executes a runbook: its steps in order, each playbook through ansible_runner.run in a private data dir
under the run's folder, recording everything in run.json and the history as it goes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

from runner.execution import accelerate, ahead, ansiblecfg
from runner.execution.ansiblebin import ansible_bin
from runner.execution.ansible_step import PlaybookRun, StepOutcome, run_playbook
from runner.errors import ExitCode, InvalidError, LockedError, NoSpaceError
from runner.execution.manual import (Prompter, TerminalLost, confirm_all, confirmed_items, detach_from_terminal,
                                     rehearsal, rehearsal_notice, rehearsed, walk, waiting_message)
from runner.execution.signoffs import Signer, counted_approvers, unknown_groups
from runner.definition.model import Runbook, Step
from runner.definition.params import ResolvedParams
from runner.execution.processes import sweep
from runner.execution.progress import Progress
from runner.store.records import RunRecord, Signoff, StepRecord, now
from runner.store.redact import Scrubber
from runner.store.files import is_disk_full, write_private
from runner.store.backends import open_store
from runner.store.base import process_start_time
from runner.definition.workspace import WorkerConfig, Workspace


@dataclass(frozen=True)
class RunRequest:
    params: ResolvedParams
    operator: str
    trigger: str = "cli"
    inventory: str | None = None
    limit: str | None = None
    check: bool = False
    diff: bool = False
    forks: int | None = None
    ci_job_url: str | None = None
    interactive: bool = False
    wait_lock: float | None = None
    schedule_entry: int | None = None  # the schedule[N] whose crontab line started the run
    worker: str | None = None  # --worker: every playbook step runs there
    run_id: str | None = None  # the id given ahead, with an interpreter for the first step (ahead.py)
    alert: dict[str, Any] | None = None  # trigger alert: the alert that started the run (runner/serve)


@dataclass(frozen=True)
class ResumeAction:
    """What `resume` or `approve --reject` brings to the waiting step."""

    who: str
    confirm: bool = False
    note: str = ""
    reject: bool = False


def compute_limit(targets: str, limit: str | None) -> str:
    """The --limit for `targets` narrowed by the operator's LIMIT ('web:&LIMIT' for single patterns)."""
    if not limit:
        return targets
    if targets.strip() in ("all", "*"):
        return limit
    t_union, t_rest = _split_pattern(targets)
    l_union, l_rest = _split_pattern(limit)
    # Ansible unions the plain patterns, then applies every &intersection and !exclusion.
    if len(l_union) <= 1:
        return ":".join(t_union + [f"&{p}" for p in l_union] + t_rest + l_rest)
    if len(t_union) <= 1:
        return ":".join(l_union + [f"&{p}" for p in t_union] + t_rest + l_rest)
    raise InvalidError(f"--limit {limit!r} and targets {targets!r} both list several patterns: "
                       "Ansible cannot intersect two unions; narrow one of them to a single group")


def _split_pattern(pattern: str) -> tuple[list[str], list[str]]:
    parts, depth, current = [], 0, ""
    for char in pattern:
        depth += char == "["
        depth -= char == "]"
        if char in ",:" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    parts = [p.strip() for p in parts if p.strip()]
    return [p for p in parts if p[0] not in "&!"], [p for p in parts if p[0] in "&!"]


def _git_state(root: Path) -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def exit_code_of(record: RunRecord) -> ExitCode:
    statuses = {s.status for s in record.steps}
    if "waiting" in statuses:
        return ExitCode.WAITING
    if record.status == "canceled" or "canceled" in statuses:
        return ExitCode.CANCELED
    if record.status == "timed_out" or "timed_out" in statuses:
        return ExitCode.TIMED_OUT
    failed = [s for s in record.steps if s.status == "failed"]
    if not failed:
        return ExitCode.OK
    # rc 4 without failed hosts: the hosts, or the worker meant to reach them, could not be reached.
    task_failure = any(s.failed_hosts() or not (s.unreachable_hosts() or s.rc == 4) for s in failed)
    return ExitCode.FAILED if task_failure else ExitCode.UNREACHABLE


_NEXT, _STOP, _WAIT = "next", "stop", "wait"


class Execution:
    """One run of one runbook: `start()` a new one or `resume()` a waiting one; both return the record,
    finished or paused at a manual step or an approval."""

    def __init__(self, ws: Workspace, runbook: Runbook, request: RunRequest, progress: Progress,
                 prompter: Prompter | None = None, signer: Signer | None = None) -> None:
        self.ws = ws
        self.runbook = runbook
        self.request = request
        self.progress = progress
        self.prompter = prompter or Prompter()
        # Whoever is at this terminal (the operator of a new run, whoever resumes a waiting one).
        self.signer = signer or Signer.for_workspace(ws, request.operator)
        self.store = open_store(ws)
        self.scrub = Scrubber(request.params.secret_values)
        self.canceled = False
        self._prompting = False
        self.deadline: float | None = None
        chosen = ws.chosen_inventory(request.inventory, runbook.inventory)
        if chosen is None and runbook.kind == "maintenance":
            raise InvalidError(
                f"{runbook.name} is a maintenance runbook: it never runs on the built-in local inventory. "
                f"Choose one: runbook run {runbook.name} -i INVENTORY (a name in {ws.display(ws.inventories_dir)}/ "
                "or a path), or set `inventory:` in the runbook, or `inventory = \"NAME\"` in runbook.toml")
        self.inventory = ws.inventory_path(chosen)
        self.playbooks = {name: ws.playbook_path(name) for name in runbook.playbooks}
        missing = [n for n, p in self.playbooks.items() if not p.is_file()]
        if missing:
            raise InvalidError(f"{ws.display(runbook.path)}: playbook not found in "
                               f"{ws.display(ws.playbooks_dir)}/: {', '.join(missing)}")
        self.limit = compute_limit(runbook.targets, request.limit)
        if self.playbooks:
            ansible_bin("ansible-playbook")  # missing: refused here, before any record is written
        self._check_workers()
        self._check_groups()
        if ws.accelerate == "mitogen" and runbook.accelerate:
            _plugins, why_not = accelerate.availability()
            if why_not:
                raise InvalidError(f'accelerate = "mitogen" in runbook.toml, but {why_not}: nothing was run')

    def _check_workers(self) -> None:
        """Every worker named (--worker, the runbook, its steps) exists in runbook.toml: exit 3 before anything runs."""
        named = [("--worker", self.request.worker), (self.ws.display(self.runbook.path), self.runbook.worker)]
        named += [(f"{self.ws.display(self.runbook.path)}:{s.line or 0}: step {s.name!r}", s.worker)
                  for s in self.runbook.steps + self.runbook.on_failure]
        for where, name in named:
            if name and name not in self.ws.config.workers:
                known = ", ".join(sorted(self.ws.config.workers)) or "none"
                raise InvalidError(f"{where}: no worker {name!r} in runbook.toml [workers] (known: {known})")

    def _check_groups(self) -> None:
        """Every `approval.from` group is a [team] group of runbook.toml: exit 3 before anything runs."""
        for step in self.runbook.steps:
            missing = unknown_groups(step.approval, self.ws.config.team.groups)
            if missing:
                raise InvalidError(f"{self.ws.display(self.runbook.path)}:{step.line or 0}: steps.{step.name}.approval.from: "
                                   f"no group {missing[0]!r} in runbook.toml [team] groups")

    def _worker(self, step: Step) -> WorkerConfig | None:
        """Where `step` runs: --worker, else the step's, else the runbook's worker; None: here."""
        name = self.request.worker or step.worker or self.runbook.worker
        return self.ws.config.workers[name] if name else None

    # -- entry points ----------------------------------------------------------------------------
    def start(self) -> RunRecord:
        self._check_max_hosts()
        run_id, started = "", False
        try:
            run_id = self.store.new_run_id(self.runbook.name, prefer=self.request.run_id)
            record = self._new_record(run_id)
            if self.signer.signed:
                record.signed.append(self.signer.signoff(record, "", "started"))
            with self._locked(record):
                self.store.hold_liveness(run_id)
                record.started_at = now()  # after any wait for the lock
                self.store.save(record)
                started = True
                return self._drive(record, 0)
        except BaseException as exc:
            if run_id and not started:  # refused before anything ran (locked, no database, no space): no half-made run folder
                shutil.rmtree(self.store.run_dir(run_id), ignore_errors=True)
            raise self._no_space(exc, run_id if started else "") or exc
        finally:
            self.store.close()

    def resume(self, record: RunRecord, action: ResumeAction) -> RunRecord:
        """Continue `record` from its waiting step, in the same run."""
        try:
            with self._locked(record):
                self.store.hold_liveness(record.id)
                record = self._take_over(record.id, action)
                index = next(s.index for s in record.steps if s.status == "waiting")
                return self._drive(record, index, action)
        except BaseException as exc:
            raise self._no_space(exc, record.id) or exc
        finally:
            self.store.close()

    def _take_over(self, run_id: str, action: ResumeAction) -> RunRecord:
        """The waiting record, read fresh and marked running in one update (an approval given meanwhile
        is kept), after every sign-off in it verified ([team] on)."""
        with self.store.updating(run_id) as record:
            if record.status != "waiting":
                raise LockedError(f"run {run_id} is {record.status} now: someone else continued or ended it")
            self.signer.verify(record)
            record.status, record.pid = "running", os.getpid()
            record.pid_start, record.hostname = process_start_time(os.getpid()), socket.gethostname()
            record.resumes.append(self.signer.signoff(record, "", "resumed", action.note))
        return record

    def _no_space(self, exc: BaseException, run_id: str) -> NoSpaceError | None:
        """A full disk as one clear line: what happened to the run, and what to do."""
        if not is_disk_full(exc):
            return None
        where = f"no space left on the disk holding the state dir {self.store.root}"
        if not run_id:
            return NoSpaceError(f"{where}: nothing was run; free some space and run again", started=False)
        return NoSpaceError(f"{where}: run {run_id} was stopped; what was written before is kept "
                            f"(runbook log {run_id}); free some space, then see: runbook history", started=True)

    def _check_max_hosts(self) -> None:
        """`max_hosts: N`: refuse, before anything runs or is recorded, a run that targets more hosts."""
        limit = self.runbook.max_hosts
        if limit is None:
            return
        from runner.execution.hostcount import targeted_hosts

        cfg = ansiblecfg.render(ansiblecfg.settings(self.ws.root, self._forks(), self.ws.config.ansible_cfg))
        hosts = targeted_hosts(self.inventory, self.limit, cfg)
        if len(hosts) > limit:
            shown = ", ".join(hosts[:10]) + (", ..." if len(hosts) > 10 else "")
            raise InvalidError(f"{self.runbook.name} works on at most {limit} host{'s' if limit > 1 else ''} "
                               f"(max_hosts: {limit}); this run targets {len(hosts)} ({shown}): narrow it with "
                               f"-l HOST; nothing was run")

    @contextmanager
    def _locked(self, record: RunRecord) -> Iterator[None]:
        """The run's lock (a file lock, or an advisory lock on the team's database), and no other run of
        the lock waiting mid-procedure. A rehearsal (--check) takes none: it changes nothing and never waits,
        so it neither blocks a real run nor is blocked by one."""
        if self.runbook.concurrency != "exclusive" or self.request.check:
            yield
            return
        with self.store.lock(self.runbook.lock_name, record, self.request.wait_lock):
            paused = self.store.waiting_runs(self.runbook.lock_name, exclude=record.id)
            if paused:
                raise LockedError(f"lock {self.runbook.lock_name!r} is held by run {paused[0]}, waiting at a "
                                  f"manual step or approval: resume it (runbook resume {paused[0]}) or cancel it")
            yield

    def _new_record(self, run_id: str) -> RunRecord:
        commit, dirty = _git_state(self.ws.root)
        req = self.request
        record = RunRecord(
            id=run_id, runbook=self.runbook.name, version=self.runbook.version,
            runbook_sha256=self.runbook.sha256, workspace=str(self.ws.root), inventory=str(self.inventory),
            limit=self.limit, started_at=now(), operator=req.operator, trigger=req.trigger,
            params=req.params.redacted(), playbooks={n: _sha256(p) for n, p in self.playbooks.items()},
            git_commit=commit, git_dirty=dirty, check=req.check, diff=req.diff, forks=self._forks(),
            ci_job_url=req.ci_job_url, pid=os.getpid(), pid_start=process_start_time(os.getpid()),
            hostname=socket.gethostname(), lock=self.runbook.lock_name, worker=req.worker or "",
            schedule_entry=req.schedule_entry, alert=req.alert,
        )
        record.steps = [StepRecord(i, s.name, s.type) for i, s in enumerate(self.runbook.steps)]
        return record

    def _forks(self) -> int:
        return self.request.forks or self.ws.config.forks or ansiblecfg.DEFAULT_FORKS

    # -- the run ---------------------------------------------------------------------------------
    def _drive(self, record: RunRecord, first: int, action: ResumeAction | None = None) -> RunRecord:
        if self.runbook.timeout:
            # Time spent waiting for people does not count against the run's timeout.
            self.deadline = time.monotonic() + self.runbook.timeout - _active_seconds(record)
        cfg = ansiblecfg.settings(self.ws.root, self._forks(), self.ws.config.ansible_cfg)
        write_private(self.store.run_dir(record.id) / "ansible.cfg", ansiblecfg.render(cfg).encode())
        if action is None:
            self.progress.run_started(record, len(self.runbook.steps))
        previous = _install_signal_handlers(self._on_signal)
        try:
            failed: StepRecord | None = None
            for step, step_record in zip(self.runbook.steps[first:], record.steps[first:]):
                verdict = self._run_step(record, step, step_record, action)
                action = None
                if verdict == _WAIT:
                    return self._pause(record, step)
                if verdict == _STOP:
                    failed = step_record if step_record.status == "failed" else None
                    break
            if failed is not None and self.runbook.on_failure:
                self._run_handlers(record, failed)
        except Exception as exc:
            # Nothing lost on failure: the record says what broke before the error reaches the user.
            record.message = ("stopped: no space left on the disk holding the state dir" if is_disk_full(exc)
                              else self.scrub.text(f"internal error: {exc.__class__.__name__}: {exc}"))
            for step_record in record.steps:
                if step_record.status == "running":
                    step_record.status, step_record.ended_at = "failed", now()
            self._finish(record)
            raise
        finally:
            _restore_signal_handlers(previous)
            sweep(record.id)
        return self._finish(record)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP and self._prompting:
            raise TerminalLost()  # the terminal hung up at a question: the run waits, it is not canceled
        self.canceled = True
        if self._prompting:
            raise KeyboardInterrupt  # a question blocks in readline: interrupt it

    def _run_step(self, record: RunRecord, step: Step, step_record: StepRecord,
                  action: ResumeAction | None, extra: dict[str, Any] | None = None) -> str:
        total = len(self.runbook.steps)
        if self.canceled:
            step_record.status = "canceled"
            return _STOP
        if step.when and action is None:
            from runner.definition.templating import evaluate

            if not evaluate(step.when, self.request.params.values):
                step_record.status = "skipped"
                step_record.message = f"when: {step.when} is false"
                self.progress.step_skipped(step_record, total, step_record.message, len(self.runbook.on_failure))
                self.store.save(record)
                return _NEXT
        if step_record.started_at is None:
            step_record.started_at = now()
        step_record.status = "running"
        self.store.save(record)
        detail = f"playbook {step.playbook}" if step.playbook else step.type
        worker = self._worker(step) if step.type == "playbook" else None
        detail += f" on worker {worker.name}" if worker else ""
        if step.type != "playbook" or worker is not None:
            ahead.discard()  # only a playbook run here takes the interpreter started ahead
        self.progress.step_started(step_record, total, detail + (" (resumed)" if action else ""),
                                   len(self.runbook.on_failure))
        if step.type == "playbook":
            self._playbook_with_retries(record, step, step_record, extra or {})
        elif self.request.check and action is None:
            self._rehearse(step, step_record)
        elif step.type == "manual":
            self._manual(record, step, step_record, action)
        else:
            self._approval(record, step, step_record, action)
        if step_record.status == "waiting":
            self.store.save(record)
            return _WAIT
        step_record.ended_at = now()
        self.store.save(record)
        self.progress.step_finished(step_record)
        going_on = ("succeeded", "skipped")  # skipped: `when:` false, or a manual or approval step rehearsed
        if step_record.status in going_on or (step_record.status == "failed" and step.on_failure == "continue"):
            return _NEXT
        return _STOP

    def _manual(self, record: RunRecord, step: Step, step_record: StepRecord, action: ResumeAction | None) -> None:
        who = self.signer.who
        step = rehearsal(step, self.runbook.name) if self.request.check else step
        done = confirmed_items(step_record)

        def sign(item: str, decision: str, note: str) -> Signoff:
            return self.signer.signoff(record, step.name, decision, note, item)

        if action is not None and action.confirm:
            step_record.signoffs += confirm_all(step, sign, action.note, done)
            step_record.status, step_record.message = "succeeded", ""
        elif self.request.interactive:
            self._prompting = True
            try:
                completed, signoffs = walk(step, self.prompter, sign, done)
            except KeyboardInterrupt:
                self.canceled = True
                step_record.status, step_record.message = "canceled", f"canceled at the checklist by {who}"
                return
            except TerminalLost as lost:
                self._prompting = False  # a second hang-up (SIGHUP after end of input) must not interrupt this
                detach_from_terminal()
                step_record.signoffs += lost.signoffs
                step_record.status = "waiting"
                step_record.message = f"the terminal of {who} was lost at the checklist: resume the run to continue"
                return
            finally:
                self._prompting = False
            step_record.signoffs += signoffs
            step_record.status = "succeeded" if completed else "failed"
            step_record.message = "" if completed else f"aborted by {who}"
        else:
            step_record.status = "waiting"

    def _rehearse(self, step: Step, step_record: StepRecord) -> None:
        """--check at a manual or approval step: show what a real run would ask, record it as rehearsed
        (skipped, nothing confirmed or approved) and go on."""
        self.progress.note(rehearsal_notice(step, self.runbook.name))
        step_record.status, step_record.message = "skipped", rehearsed(step)

    def _approval(self, record: RunRecord, step: Step, step_record: StepRecord, action: ResumeAction | None) -> None:
        assert step.approval is not None
        if action is not None and action.reject:
            signoff = self.signer.signoff(record, step.name, "rejected", action.note)
            step_record.signoffs.append(signoff)
            step_record.status, step_record.message = "failed", f"rejected by {signoff.who}"
        elif len(counted_approvers(step_record, step.approval, record.operator,
                                   self.ws.config.team.groups)) >= step.approval.approvers:
            step_record.status = "succeeded"
        else:
            step_record.status = "waiting"

    def _pause(self, record: RunRecord, step: Step) -> RunRecord:
        record.status, record.exit_code = "waiting", int(ExitCode.WAITING)
        self.store.save(record)
        shown = rehearsal(step, self.runbook.name) if record.check and step.type == "manual" else step
        self.progress.note(waiting_message(record, shown, len(self.runbook.steps), self.ws.config.team.groups))
        self._notify(record)
        return record

    def _run_handlers(self, record: RunRecord, failed: StepRecord) -> None:
        """The runbook's on_failure steps, after a failed step, with its name and hosts available."""
        extra = {"runbook_failed_step": failed.name,
                 "runbook_failed_hosts": sorted(set(failed.failed_hosts() + failed.unreachable_hosts()))}
        self.progress.note(f"step {failed.name!r} failed: running on_failure handlers")
        for step in self.runbook.on_failure:
            handler = StepRecord(len(record.steps), step.name, step.type, handler=True)
            record.steps.append(handler)
            if self._run_step(record, step, handler, None, extra) == _STOP:
                break

    def _finish(self, record: RunRecord) -> RunRecord:
        if self.canceled:
            self.signer.take_cancel(record, self.store.run_dir(record.id))
        code = exit_code_of(record)
        if any(s.handler for s in record.steps) and code == ExitCode.OK:
            code = ExitCode.FAILED  # a handler ran: the run failed, whatever the handlers did
        record.exit_code = int(code)
        record.status = {ExitCode.OK: "succeeded", ExitCode.CANCELED: "canceled",
                         ExitCode.TIMED_OUT: "timed_out"}.get(code, "failed")
        if code == ExitCode.TIMED_OUT and not record.message:
            record.message = "timed out"
        if code == ExitCode.CANCELED and not record.message:
            record.message = "canceled"
        record.ended_at = now()
        self.store.save(record)
        self.progress.run_finished(record)
        self._notify(record)
        return record

    def _notify(self, record: RunRecord) -> None:
        if self.ws.config.notify.webhook:
            from runner.reports.notify import send

            send(self.ws.config.notify, record, self.scrub, self.store.root / "logs")

    # -- playbook steps --------------------------------------------------------------------------
    def _playbook_with_retries(self, record: RunRecord, step: Step, step_record: StepRecord,
                               extra: dict[str, Any]) -> None:
        """Run the playbook; on failure re-run it `retries` times on the hosts that failed only."""
        outcome = self._playbook(record, step, step_record, self.limit, extra)
        step_record.attempts += 1
        hosts = dict(outcome.hosts)
        for attempt in range(1, step.retries + 1):
            again = sorted(h for h, r in hosts.items() if r.failed or r.unreachable)
            if outcome.status != "failed" or not again or self.canceled:
                break
            self.progress.note(f"  retry {attempt}/{step.retries} of {step.name!r} on {', '.join(again)}")
            outcome = self._playbook(record, step, step_record, ":".join(again), extra)
            step_record.attempts += 1
            hosts.update(outcome.hosts)
            if outcome.status in ("succeeded", "failed"):
                bad = sorted(h for h, r in hosts.items() if r.failed or r.unreachable)
                outcome.status = "failed" if bad else "succeeded"
                outcome.message = f"failed on {', '.join(bad)}" if bad else ""
        step_record.status, step_record.rc, step_record.message = outcome.status, outcome.rc, outcome.message
        step_record.hosts, step_record.data = hosts, outcome.data

    def _playbook(self, record: RunRecord, step: Step, step_record: StepRecord, limit: str,
                  extra: dict[str, Any]) -> StepOutcome:
        timeout = self._timeout(step)
        if timeout is not None and timeout <= 0:
            return StepOutcome("timed_out", message="the run's timeout expired before this step")
        kept, secret = self._extravars(record, step, extra)
        worker = self._worker(step)
        strategy = self._strategy(step, step_record, worker)
        job = PlaybookRun(
            run_id=record.id,
            folder=step_record.folder(self.store.run_dir(record.id)),
            project_dir=self.ws.playbooks_dir,
            playbook=str(self.playbooks[step.playbook or ""].relative_to(self.ws.playbooks_dir.resolve())),
            inventory=self.inventory, limit=limit, forks=self._forks(),
            ansible_cfg=self.store.run_dir(record.id) / "ansible.cfg",
            kept_vars=kept, secret_vars=secret, check=self.request.check, diff=self.request.diff, timeout=timeout,
            env=strategy.env,
        )
        step_record.worker = worker.name if worker else ""
        if worker is None:
            outcome = run_playbook(job, self.scrub, self.progress, lambda: self.canceled)
        else:
            from runner.execution.remote import run_remote_playbook

            outcome = run_remote_playbook(job, worker, self.scrub, self.progress, lambda: self.canceled)
        if outcome.status in ("canceled", "timed_out"):
            sweep(record.id)
        return outcome

    def _strategy(self, step: Step, step_record: StepRecord, worker: WorkerConfig | None) -> accelerate.Strategy:
        """The step's strategy, kept in its record; one line says why when `auto` could not accelerate.
        On a worker, Ansible's own: the node needs only ansible-runner and ansible-core."""
        mode = self.ws.accelerate
        if worker is not None:
            strategy = accelerate.Strategy(accelerate.ANSIBLE, f"runs on worker {worker.name!r}")
            step_record.strategy, step_record.strategy_reason = strategy.name, strategy.reason
            return strategy
        strategy = accelerate.choose(mode, self.runbook.accelerate, self.playbooks[step.playbook or ""], self.inventory,
                                     self.ws.roles_dir, "timeout" in self.ws.config.ansible_cfg.get("defaults", {}))
        if step_record.strategy != strategy.name and strategy.notice:
            self.progress.note(f"  {step.name}: on Ansible's own strategy: {strategy.reason}")
        step_record.strategy, step_record.strategy_reason = strategy.name, strategy.reason
        return strategy

    def _timeout(self, step: Step) -> float | None:
        limits = [float(step.timeout)] if step.timeout else []
        if self.deadline is not None:
            limits.append(self.deadline - time.monotonic())
        return min(limits) if limits else None

    def _extravars(self, record: RunRecord, step: Step, extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(kept vars, secret vars): any var whose value holds a secret goes only to the secret file."""
        params = self.request.params
        values: dict[str, Any] = {k: v for k, v in params.values.items() if v is not None}
        rollout = self.runbook.rollout
        values.update({
            "runbook_run_id": record.id,
            "runbook_name": self.runbook.name,
            "runbook_version": self.runbook.version,
            "runbook_check_mode": self.request.check,
            "runbook_serial": rollout.serial if rollout.serial is not None else "100%",
            "runbook_max_fail_percentage": rollout.max_fail_percentage if rollout.max_fail_percentage is not None else 100,
        })
        values.update(extra)
        if step.vars:
            from runner.definition.templating import render

            values.update(render(dict(step.vars), params.values))
        kept, secret = {}, {}
        for key, value in values.items():
            text = json.dumps(value, default=str)
            if key in params.secret_names or (self.scrub and self.scrub.text(text) != text):
                secret[key] = value
            else:
                kept[key] = value
        return kept, secret


def _active_seconds(record: RunRecord) -> float:
    """Time the run has spent in playbook steps so far (resumed runs keep their budget)."""
    return sum((s.ended_at or now()) - s.started_at for s in record.steps
               if s.type == "playbook" and s.started_at is not None)


def _install_signal_handlers(handler: Callable[[int, FrameType | None], None]) -> dict[int, Any]:
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. embedded use): cancel via the callback only
            pass
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
