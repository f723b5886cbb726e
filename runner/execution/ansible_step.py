"""One playbook step through ansible_runner.run: a private data dir, extra vars split so secrets travel
only in a memory-backed 0600 file, events kept as one compressed file, output scrubbed."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from runner.execution.accelerate import is_noise
from runner.execution.ansiblebin import ansible_bin
from runner.execution.processes import MARKER
from runner.execution.progress import Progress
from runner.store.records import HostResult
from runner.store.redact import Scrubber
from runner.store.files import make_private_dir, open_private, write_private


@dataclass
class StepOutcome:
    status: str = "succeeded"
    rc: int | None = None
    message: str = ""
    hosts: dict[str, HostResult] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlaybookRun:
    """Everything one ansible-playbook invocation needs."""

    run_id: str
    folder: Path  # the step's folder in the run dir
    project_dir: Path
    playbook: str  # relative to project_dir
    inventory: Path
    limit: str
    forks: int
    ansible_cfg: Path
    kept_vars: dict[str, Any]
    secret_vars: dict[str, Any]
    check: bool = False
    diff: bool = False
    timeout: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # the strategy's settings (accelerate.Strategy.env)


def run_playbook(job: PlaybookRun, scrub: Scrubber, progress: Progress, canceled: Callable[[], bool]) -> StepOutcome:
    import ansible_runner  # the heavy import happens only when something runs

    _no_pause_on_pty_close()
    folder = make_private_dir(job.folder)
    write_private(folder / "extravars.json", json.dumps(job.kept_vars, indent=2, default=str).encode())
    cmdline = [f"-e @{folder / 'extravars.json'}"]
    secret_dir = Path(tempfile.mkdtemp(prefix="runbook-", dir=_memory_tmp()))
    try:
        if job.secret_vars:
            secret_file = secret_dir / "secrets.json"
            write_private(secret_file, json.dumps(job.secret_vars, default=str).encode())
            cmdline.append(f"-e @{secret_file}")
        if job.check:
            cmdline.append("--check")
        if job.diff:
            cmdline.append("--diff")
        events = _EventSink(folder, scrub, progress)
        private = make_private_dir(folder / ".private")
        try:
            result = ansible_runner.run(
                private_data_dir=str(private),
                project_dir=str(job.project_dir),
                playbook=job.playbook,
                inventory=str(job.inventory),
                limit=job.limit,
                cmdline=" ".join(cmdline),
                forks=job.forks,
                envvars={
                    "ANSIBLE_CONFIG": str(job.ansible_cfg),
                    "ANSIBLE_NOCOLOR": "1",
                    "PATH": _path_with_ansible(),
                    MARKER: job.run_id,
                    **job.env,
                },
                ident="ansible",
                quiet=True,
                suppress_output_file=True,
                fact_cache_type="memory",
                rotate_artifacts=0,
                timeout=max(1, int(job.timeout)) if job.timeout is not None else None,
                settings={"pexpect_timeout": 0.25, "suppress_ansible_output": True},
                event_handler=events.handle,
                cancel_callback=canceled,
            )
        finally:
            events.close()
            _keep_command(private, folder, scrub)
            shutil.rmtree(private, ignore_errors=True)
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)
    outcome = events.outcome(result.status, result.rc, job.limit)
    outcome.data = events.data
    write_private(folder / "rc", f"{result.rc}\n".encode())
    write_private(folder / "status", f"{outcome.status}\n".encode())
    return outcome


def _keep_command(private: Path, folder: Path, scrub: Scrubber) -> None:
    """Keep the ansible-playbook command line (scrubbed), never the environment ansible-runner records."""
    path = private / "artifacts" / "ansible" / "command"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    kept = {"command": data.get("command"), "cwd": data.get("cwd")}
    write_private(folder / "command.json", scrub.text(json.dumps(kept, indent=2)).encode())


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
        self.stdout = open_private(folder / "stdout", "a")
        self.events = gzip.open(open_private(folder / "events.jsonl.gz", "ab"), "at", encoding="utf-8")
        self.stats: dict[str, dict[str, int]] | None = None
        self.data: dict[str, Any] = {}
        self.messages: dict[str, str] = {}
        self.hosts_seen: set[str] = set()
        self.tail: list[str] = []

    def handle(self, event: dict[str, Any]) -> bool:
        if is_noise(event.get("stdout") or ""):
            return False
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

    def outcome(self, status: str, rc: int | None, limit: str) -> StepOutcome:
        hosts: dict[str, HostResult] = {}
        stats = self.stats or {}
        for name in sorted({h for counts in stats.values() for h in counts} | self.hosts_seen):
            hosts[name] = HostResult(
                ok=stats.get("ok", {}).get(name, 0), changed=stats.get("changed", {}).get(name, 0),
                failed=stats.get("failures", {}).get(name, 0), unreachable=stats.get("dark", {}).get(name, 0),
                skipped=stats.get("skipped", {}).get(name, 0), message=self.messages.get(name, ""),
            )
        if status == "canceled":
            return StepOutcome("canceled", rc, "canceled", hosts)
        if status == "timeout":
            return StepOutcome("timed_out", rc, "timed out", hosts)
        if any(h.failed or h.unreachable for h in hosts.values()):
            bad = sorted(h for h, r in hosts.items() if r.failed or r.unreachable)
            return StepOutcome("failed", rc, f"failed on {', '.join(bad)}", hosts)
        if rc != 0:
            return StepOutcome("failed", rc, self._error_summary(rc, limit), hosts)
        if not hosts:
            parse = [line.strip() for line in self.tail if "Unable to parse" in line]
            hint = f" ({parse[0].removeprefix('[WARNING]: ')})" if parse else ""
            return StepOutcome("failed", rc, f"no hosts matched {limit!r} in the inventory{hint}", hosts)
        return StepOutcome("succeeded", rc, "", hosts)

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
