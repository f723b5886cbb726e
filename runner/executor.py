"""Executes a runbook: its steps in order, each playbook through ansible_runner.run in a private data dir
under the run's folder, recording everything in run.json and the history as it goes."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable

from runner import ansiblecfg
from runner.ansiblebin import ansible_bin
from runner.errors import ExitCode, InvalidError
from runner.locks import RunLock
from runner.model import Runbook, Step
from runner.params import ResolvedParams
from runner.processes import MARKER, sweep
from runner.progress import Progress
from runner.records import HostResult, RunRecord, StepRecord, now
from runner.redact import Scrubber
from runner.store import Store, make_private_dir, process_start_time, write_private
from runner.workspace import Workspace


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


@dataclass
class _StepOutcome:
    status: str = "succeeded"
    rc: int | None = None
    message: str = ""
    hosts: dict[str, HostResult] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


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
    if record.status == "canceled" or "canceled" in statuses:
        return ExitCode.CANCELED
    if record.status == "timed_out" or "timed_out" in statuses:
        return ExitCode.TIMED_OUT
    failed = [s for s in record.steps if s.status == "failed"]
    if not failed:
        return ExitCode.OK
    task_failure = any(s.failed_hosts() or not s.unreachable_hosts() for s in failed)
    return ExitCode.FAILED if task_failure else ExitCode.UNREACHABLE


class Execution:
    """One run of one runbook. `start()` returns the finished (or paused) record."""

    def __init__(self, ws: Workspace, runbook: Runbook, request: RunRequest, progress: Progress) -> None:
        self.ws = ws
        self.runbook = runbook
        self.request = request
        self.progress = progress
        self.store = Store(ws.state_dir)
        self.scrub = Scrubber(request.params.secret_values)
        self.canceled = False
        self.deadline: float | None = None
        self.inventory = ws.inventory_path(request.inventory or runbook.inventory)
        self.playbooks = {name: ws.playbook_path(name) for name in runbook.playbooks}
        missing = [n for n, p in self.playbooks.items() if not p.is_file()]
        if missing:
            raise InvalidError(f"{ws.display(runbook.path)}: playbook not found in "
                               f"{ws.display(ws.playbooks_dir)}/: {', '.join(missing)}")
        self.limit = compute_limit(runbook.targets, request.limit)
        unsupported = [s.name for s in runbook.steps + runbook.on_failure if s.type != "playbook"]
        if unsupported or runbook.on_failure or any(s.retries for s in runbook.steps):
            raise InvalidError(f"{runbook.name}: manual and approval steps, retries and on_failure handlers "
                               "are not supported by this version of runbook yet: nothing was run")

    # -- the run ---------------------------------------------------------------------------------
    def start(self) -> RunRecord:
        lock = None
        if self.runbook.concurrency == "exclusive":
            lock = RunLock(self.store.locks_dir, self.runbook.lock_name)
        run_id = self.store.new_run_id(self.runbook.name)
        try:
            if lock:
                lock.acquire(run_id, self.request.wait_lock)
        except BaseException:
            shutil.rmtree(self.store.run_dir(run_id), ignore_errors=True)
            raise
        try:
            record = self._new_record(run_id)
            self.store.save(record)
            return self._execute(record)
        finally:
            if lock:
                lock.release()
            self.store.close()

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
            hostname=socket.gethostname(),
        )
        record.steps = [StepRecord(i, s.name, s.type) for i, s in enumerate(self.runbook.steps)]
        return record

    def _forks(self) -> int:
        return self.request.forks or self.ws.config.forks or ansiblecfg.DEFAULT_FORKS

    def _execute(self, record: RunRecord) -> RunRecord:
        if self.runbook.timeout:
            self.deadline = time.monotonic() + self.runbook.timeout
        run_dir = self.store.run_dir(record.id)
        cfg = ansiblecfg.settings(self.ws.root, self._forks(), self.ws.config.ansible_cfg)
        write_private(run_dir / "ansible.cfg", ansiblecfg.render(cfg).encode())
        self.progress.run_started(record, len(self.runbook.steps))
        previous = _install_signal_handlers(self._on_signal)
        try:
            for step, step_record in zip(self.runbook.steps, record.steps):
                if not self._run_step(record, step, step_record):
                    break
        except Exception as exc:
            # Nothing lost on failure: the record says what broke before the error reaches the user.
            record.message = f"internal error: {exc.__class__.__name__}: {exc}"
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
        self.canceled = True

    def _run_step(self, record: RunRecord, step: Step, step_record: StepRecord) -> bool:
        """Runs one step; False when the run must stop after it."""
        total = len(self.runbook.steps)
        if self.canceled:
            step_record.status = "canceled"
            return False
        if step.when:
            from runner.templating import evaluate

            if not evaluate(step.when, self.request.params.values):
                step_record.status = "skipped"
                step_record.message = f"when: {step.when} is false"
                self.progress.step_skipped(step_record, total, step_record.message)
                self.store.save(record)
                return True
        step_record.status, step_record.started_at = "running", now()
        self.store.save(record)
        self.progress.step_started(step_record, total, f"playbook {step.playbook}")
        outcome = self._playbook(record, step, step_record)
        step_record.status, step_record.rc = outcome.status, outcome.rc
        step_record.message, step_record.hosts = outcome.message, outcome.hosts
        step_record.data = outcome.data
        step_record.ended_at = now()
        step_record.attempts += 1
        self.store.save(record)
        self.progress.step_finished(step_record)
        if outcome.status == "failed" and step.on_failure == "continue":
            return True
        return outcome.status == "succeeded"

    def _finish(self, record: RunRecord) -> RunRecord:
        code = exit_code_of(record)
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
        return record

    # -- a playbook step -------------------------------------------------------------------------
    def _extravars(self, record: RunRecord, step: Step) -> tuple[dict[str, Any], dict[str, Any]]:
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
        if step.vars:
            from runner.templating import render

            values.update(render(dict(step.vars), params.values))
        kept, secret = {}, {}
        for key, value in values.items():
            text = json.dumps(value, default=str)
            if key in params.secret_names or (self.scrub and self.scrub.text(text) != text):
                secret[key] = value
            else:
                kept[key] = value
        return kept, secret

    def _playbook(self, record: RunRecord, step: Step, step_record: StepRecord) -> _StepOutcome:
        import ansible_runner  # the heavy import happens only when something runs

        _no_pause_on_pty_close()

        folder = make_private_dir(self.store.run_dir(record.id) / "steps" / f"{step_record.index + 1:02d}-{step.name}")
        kept, secret = self._extravars(record, step)
        write_private(folder / "extravars.json", json.dumps(kept, indent=2, default=str).encode())
        cmdline = [f"-e @{folder / 'extravars.json'}"]
        secret_dir = Path(tempfile.mkdtemp(prefix="runbook-", dir=_memory_tmp()))
        try:
            if secret:
                secret_file = secret_dir / "secrets.json"
                write_private(secret_file, json.dumps(secret, default=str).encode())
                cmdline.append(f"-e @{secret_file}")
            if self.request.check:
                cmdline.append("--check")
            if self.request.diff:
                cmdline.append("--diff")
            timeout = self._timeout(step)
            if timeout is not None and timeout <= 0:
                return _StepOutcome("timed_out", message="the run's timeout expired before this step")
            events = _EventSink(folder, self.scrub, self.progress)
            private = make_private_dir(folder / ".private")
            try:
                result = ansible_runner.run(
                    private_data_dir=str(private),
                    project_dir=str(self.ws.playbooks_dir),
                    playbook=str(self.playbooks[step.playbook or ""].relative_to(self.ws.playbooks_dir.resolve())),
                    inventory=str(self.inventory),
                    limit=self.limit,
                    cmdline=" ".join(cmdline),
                    forks=self._forks(),
                    envvars={
                        "ANSIBLE_CONFIG": str(self.store.run_dir(record.id) / "ansible.cfg"),
                        "ANSIBLE_NOCOLOR": "1",
                        "PATH": _path_with_ansible(),
                        MARKER: record.id,
                    },
                    ident="ansible",
                    quiet=True,
                    suppress_output_file=True,
                    fact_cache_type="memory",
                    rotate_artifacts=0,
                    timeout=int(timeout) if timeout is not None else None,
                    settings={"pexpect_timeout": 0.25, "suppress_ansible_output": True},
                    event_handler=events.handle,
                    cancel_callback=lambda: self.canceled,
                )
            finally:
                events.close()
                self._keep_command(private, folder)
                shutil.rmtree(private, ignore_errors=True)
        finally:
            shutil.rmtree(secret_dir, ignore_errors=True)
        if result.status in ("canceled", "timeout"):
            sweep(record.id)
        outcome = events.outcome(result.status, result.rc, self.limit)
        outcome.data = events.data
        write_private(folder / "rc", f"{result.rc}\n".encode())
        write_private(folder / "status", f"{outcome.status}\n".encode())
        return outcome

    def _timeout(self, step: Step) -> float | None:
        limits = [float(step.timeout)] if step.timeout else []
        if self.deadline is not None:
            limits.append(self.deadline - time.monotonic())
        return min(limits) if limits else None

    def _keep_command(self, private: Path, folder: Path) -> None:
        """Keep the ansible-playbook command line (scrubbed), never the environment ansible-runner records."""
        path = private / "artifacts" / "ansible" / "command"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        kept = {"command": data.get("command"), "cwd": data.get("cwd")}
        write_private(folder / "command.json", self.scrub.text(json.dumps(kept, indent=2)).encode())


def _no_pause_on_pty_close() -> None:
    """ansible-runner closes ansible-playbook's pty only once the process has exited, so ptyprocess's
    0.1 s pause after close (meant for children still running) is pure wait: 7% of a short playbook."""
    import ptyprocess

    cls: Any = ptyprocess.PtyProcess
    if getattr(cls, "_runbook_no_pause", False):
        return
    original = cls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.delayafterclose = 0.0

    cls.__init__ = init
    cls._runbook_no_pause = True


def _path_with_ansible() -> str:
    """PATH with the folder of our ansible-playbook first (a virtualenv's bin is often not on PATH)."""
    folder = str(Path(ansible_bin("ansible-playbook")).parent)
    return os.pathsep.join([folder] + [p for p in os.environ.get("PATH", "").split(os.pathsep) if p != folder])


def _memory_tmp() -> str | None:
    """A memory-backed temp folder (secrets never reach a disk) where there is one."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class _EventSink:
    """Receives ansible-runner events: progress, a scrubbed stdout log and one compressed events file."""

    def __init__(self, folder: Path, scrub: Scrubber, progress: Progress) -> None:
        self.scrub = scrub
        self.progress = progress
        self.stdout = _open_private(folder / "stdout", "a")
        self.events = gzip.open(_open_private(folder / "events.jsonl.gz", "ab"), "at", encoding="utf-8")
        self.stats: dict[str, dict[str, int]] | None = None
        self.data: dict[str, Any] = {}
        self.messages: dict[str, str] = {}
        self.hosts_seen: set[str] = set()
        self.tail: list[str] = []

    def handle(self, event: dict[str, Any]) -> bool:
        text = self.scrub.text(event.get("stdout") or "")
        if text:
            self.stdout.write(text + "\n")
            self.stdout.flush()
            self.tail = (self.tail + text.splitlines())[-20:]
            self.progress.ansible_output(text)
        self.events.write(self.scrub.text(json.dumps(event, default=str)) + "\n")
        self._track(event.get("event", ""), event.get("event_data") or {})
        return False  # already kept: ansible-runner must not write one file per event

    def _track(self, kind: str, data: dict[str, Any]) -> None:
        host = data.get("host")
        if kind == "playbook_on_task_start":
            self.progress.task_started(str(data.get("task", "")))
        elif kind == "runner_on_start" and host:
            self.progress.host_started(host)
        elif kind in ("runner_on_ok", "runner_on_skipped") and host:
            self.hosts_seen.add(host)
            outcome = "skipped" if kind == "runner_on_skipped" else ("changed" if (data.get("res") or {}).get("changed") else "ok")
            self.progress.host_result(host, outcome)
        elif kind in ("runner_on_failed", "runner_on_unreachable") and host:
            self.hosts_seen.add(host)
            res = data.get("res") or {}
            message = self.scrub.text(str(res.get("msg") or res.get("stderr") or res.get("reason") or "").strip())
            task = data.get("task", "")
            ignored = kind == "runner_on_failed" and data.get("ignore_errors")
            if not ignored:
                self.messages[host] = f"{task}: {message}"[:1000] if task else message[:1000]
            outcome = "unreachable" if kind == "runner_on_unreachable" else ("ok" if ignored else "failed")
            self.progress.host_result(host, outcome, "" if ignored else message.splitlines()[0][:300] if message else "")
        elif kind == "playbook_on_stats":
            self.stats = {k: dict(v or {}) for k, v in data.items() if isinstance(v, dict) and k != "artifact_data"}
            self.data = json.loads(self.scrub.text(json.dumps(data.get("artifact_data") or {}, default=str)))

    def outcome(self, status: str, rc: int | None, limit: str) -> _StepOutcome:
        hosts: dict[str, HostResult] = {}
        stats = self.stats or {}
        for name in sorted({h for counts in stats.values() for h in counts} | self.hosts_seen):
            hosts[name] = HostResult(
                ok=stats.get("ok", {}).get(name, 0), changed=stats.get("changed", {}).get(name, 0),
                failed=stats.get("failures", {}).get(name, 0), unreachable=stats.get("dark", {}).get(name, 0),
                skipped=stats.get("skipped", {}).get(name, 0), message=self.messages.get(name, ""),
            )
        if status == "canceled":
            return _StepOutcome("canceled", rc, "canceled", hosts)
        if status == "timeout":
            return _StepOutcome("timed_out", rc, "timed out", hosts)
        if any(h.failed or h.unreachable for h in hosts.values()):
            bad = sorted(h for h, r in hosts.items() if r.failed or r.unreachable)
            return _StepOutcome("failed", rc, f"failed on {', '.join(bad)}", hosts)
        if rc != 0:
            return _StepOutcome("failed", rc, self._error_summary(rc, limit), hosts)
        if not hosts:
            parse = [line.strip() for line in self.tail if "Unable to parse" in line]
            hint = f" ({parse[0].removeprefix('[WARNING]: ')})" if parse else ""
            return _StepOutcome("failed", rc, f"no hosts matched {limit!r} in the inventory{hint}", hosts)
        return _StepOutcome("succeeded", rc, "", hosts)

    def _error_summary(self, rc: int | None, limit: str) -> str:
        """Ansible's own error line when it stopped before any host (bad inventory, syntax, no hosts)."""
        lines = [line.strip() for line in self.tail if line.strip()]
        errors = [line for line in lines if line.startswith(("[ERROR]", "ERROR!"))]
        detail = (errors[0] if errors else (lines[-1] if lines else "")).removeprefix("[ERROR]: ").removeprefix("ERROR! ")
        if "no hosts to target" in detail:
            return f"no hosts matched {limit!r} in the inventory"
        return f"ansible-playbook exited {rc}: {detail[:500]}"

    def close(self) -> None:
        self.events.close()
        self.stdout.close()


def _open_private(path: Path, mode: str) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, mode)


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
