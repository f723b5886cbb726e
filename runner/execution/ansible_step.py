"""One playbook step through ansible-runner: extra vars marked unsafe, secrets through a named pipe that
ansible-playbook reads once, events received through another pipe (or in-band on the pty) and scrubbed
before anything is kept. Nothing unscrubbed and no environment ever reaches a file, even while the step
runs."""
from __future__ import annotations

import gzip
import json
import os
import shlex
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from runner.execution import fifos
from runner.execution.accelerate import is_noise
from runner.execution.ansiblebin import ansible_bin
from runner.execution.extravars import unsafe_yaml
from runner.store.ids import MARKER
from runner.execution.progress import Progress
from runner.execution.scratch import scratch_dir
from runner.execution.summaries import summary_of
from runner.store.records import HostResult
from runner.store.redact import Scrubber
from runner.output import shorten
from runner.store.files import make_private_dir, open_private, write_private

if TYPE_CHECKING:
    from ansible_runner.config.runner import RunnerConfig
    from ansible_runner.runner import Runner

# Our stdout callback (awx_display with events sent to us, never to files), the folder ansible-playbook
# finds it in, and the variable that names the pipe it sends them through (read there, not imported).
_CALLBACK = "runbook_events"
_CALLBACK_DIR = Path(__file__).resolve().parent / "callback_plugins"
_EVENTS_PIPE = "RUNBOOK_EVENTS_PIPE"
_VARS_DIR = Path(__file__).resolve().parent / "vars_plugins"
REMOTE_TMP_PLUGIN = _VARS_DIR / "runbook_tmp.py"
_REMOTE_TMP = "RUNBOOK_REMOTE_TMP"  # read by vars_plugins/runbook_tmp.py
_IDENT = "ansible"  # ansible-runner's name for the invocation: its artifacts folder, the events' runner_ident


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
    folder = make_private_dir(job.folder)
    var_files = [write_extravars(folder, job.kept_vars)]
    with scratch_dir(job.run_id) as scratch, secrets_channel(scratch, job.secret_vars) as secret_file:
        if secret_file is not None:
            var_files.append(secret_file)
        events = _EventSink(folder, scrub, progress)
        try:
            with fifos.receiving(scratch / "events", events.receive) as pipe:
                # Output that cannot be kept (a full disk) stops the playbook: no run goes on unrecorded.
                status, rc = _run_ansible(job, scratch, cmdline(job, var_files), scrub, events.handle,
                                          lambda: canceled() or events.failed is not None, pipe)
        finally:
            events.close()
    if events.failed is not None:
        raise events.failed
    outcome = events.outcome(status, rc, job.limit)
    outcome.data = events.data
    write_private(folder / "rc", f"{rc}\n".encode())
    write_private(folder / "status", f"{outcome.status}\n".encode())
    return outcome


def write_extravars(folder: Path, values: Mapping[str, Any]) -> Path:
    """The step's vars without secrets, kept in its folder as ansible-playbook read them."""
    path = folder / "extravars.yml"
    write_private(path, unsafe_yaml(values))
    return path


@contextmanager
def secrets_channel(folder: Path, values: Mapping[str, Any]) -> Iterator[Path | None]:
    """The vars holding a secret, readable once through a named pipe in `folder` (None if there are none):
    they never rest in a file, on a disk or in memory-backed tmpfs."""
    if not values:
        yield None
        return
    with fifos.feeding(folder / "secrets.yml", unsafe_yaml(values)) as path:
        yield path


def cmdline(job: PlaybookRun, var_files: list[Path]) -> list[str]:
    """ansible-playbook's options besides inventory, limit and forks (ansible-runner adds those)."""
    args: list[str] = []
    for path in var_files:
        args += ["-e", f"@{path}"]
    return args + ["--check"] * job.check + ["--diff"] * job.diff


def _run_ansible(job: PlaybookRun, scratch: Path, args: list[str], scrub: Scrubber,
                 handle: Callable[[dict[str, Any]], bool], canceled: Callable[[], bool],
                 events_pipe: Path) -> tuple[str, int | None]:
    """ansible-playbook under ansible-runner; returns ansible-runner's status and the exit code."""
    Runner, RunnerConfig = _ansible_runner()
    private = scratch / "runner"

    # ansible-runner reads its settings from env/settings only (a `settings=` argument is dropped when
    # that file is missing): without suppress_output_file it writes the unscrubbed stdout to disk.
    settings = {"pexpect_timeout": 0.25, "suppress_ansible_output": True, "suppress_output_file": True}
    write_private(make_private_dir(private / "env") / "settings", json.dumps(settings).encode())
    config = RunnerConfig(
        private_data_dir=str(private),
        project_dir=str(job.project_dir),
        playbook=job.playbook,
        inventory=str(job.inventory),
        limit=job.limit,
        cmdline=shlex.join(args),  # ansible-runner splits it again with shlex: paths may hold spaces
        forks=job.forks,
        envvars={"ANSIBLE_CONFIG": str(job.ansible_cfg), "ANSIBLE_NOCOLOR": "1",
                 "PATH": _path_with_ansible(), MARKER: job.run_id, _EVENTS_PIPE: str(events_pipe),
                 **temp_folders(scratch, job.ansible_cfg), **job.env},
        ident=_IDENT,
        quiet=True,
        fact_cache_type="memory",
        rotate_artifacts=0,
        timeout=max(1, int(job.timeout)) if job.timeout is not None else None,
    )
    config.prepare()
    config.env = child_env(config.env, scrub, protected=config.envvars)
    _keep_command(config.command, config.cwd, job.folder, scrub)
    with fifos.discarding(Path(config.artifact_dir) / "command"):
        runner = Runner(config, event_handler=handle, cancel_callback=canceled)
        runner.run()
    return str(runner.status), runner.rc


def _ansible_runner() -> tuple[type[Runner], type[RunnerConfig]]:
    """ansible-runner's Runner and RunnerConfig, imported when something runs (see enter_ansible_runner)."""
    enter_ansible_runner()
    from ansible_runner.config.runner import RunnerConfig
    from ansible_runner.runner import Runner

    _tune_pexpect()
    return Runner, RunnerConfig


def enter_ansible_runner() -> None:
    """Make the ansible_runner package importable without running its __init__. That one imports the
    whole public interface and then scans every installed distribution for `ansible_runner.plugins`
    entry points: 40 ms before every playbook step, to load plugins that would each be handed every
    event and the step's environment before runbook scrubs them. runbook loads none: the package is
    entered as a bare folder, and its plugin table is empty."""
    import importlib.util

    if "ansible_runner" in sys.modules:
        return
    spec = importlib.util.find_spec("ansible_runner")
    if spec is None:
        raise ImportError("ansible-runner is not installed")
    package = importlib.util.module_from_spec(spec)  # __path__ and __spec__ set, __init__ not run
    sys.modules["ansible_runner"] = package
    import ansible_runner.plugins  # noqa: F401  the plugins folder: bound on the package now, replaced below

    package.plugins = {}  # type: ignore[attr-defined]  # what __init__ fills from the entry points


def temp_folders(scratch: Path, ansible_cfg: Path) -> dict[str, str]:
    """Ansible's temp folders on this machine inside the step's private scratch folder, so that what a
    task leaves there (its module and arguments, a secret among them) goes with the folder, even after
    kill -9: the local temp, and the remote temp of hosts on the local connection (vars_plugins/)."""
    return {"ANSIBLE_LOCAL_TEMP": str(scratch / "local"), _REMOTE_TMP: str(scratch / "remote"),
            "ANSIBLE_VARS_PLUGINS": os.pathsep.join([str(_VARS_DIR), _vars_plugins(ansible_cfg)])}


def _vars_plugins(ansible_cfg: Path) -> str:
    """Where Ansible would look for vars plugins without ours: the variable, the run's ansible.cfg, or
    Ansible's default (the variable replaces the other two)."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ansible_cfg, encoding="utf-8")
    default = os.environ.get("ANSIBLE_HOME", "~/.ansible") + "/plugins/vars:/usr/share/ansible/plugins/vars"
    return os.environ.get("ANSIBLE_VARS_PLUGINS") or str(parser.get("defaults", "vars_plugins", fallback=default))


def child_env(env: Mapping[str, str], scrub: Scrubber, protected: Mapping[str, str] | None = None) -> dict[str, str]:
    """ansible-playbook's environment, with events sent by our stdout callback instead of through a file
    per event (no AWX_ISOLATED_DATA_DIR to write them to). An inherited variable whose whole value is a
    secret is dropped (the secret reaches the playbook as a var, never as a copy in the environment); one
    that merely contains a secret is kept whole, and so is every variable runbook set (`protected`)."""
    protected = protected or {}
    kept = {k: v for k, v in env.items() if k != "AWX_ISOLATED_DATA_DIR" and (k in protected or v not in scrub.values)}
    callbacks = [str(_CALLBACK_DIR), kept.get("ANSIBLE_CALLBACK_PLUGINS", "")]
    kept["ANSIBLE_CALLBACK_PLUGINS"] = os.pathsep.join(p for p in callbacks if p)
    kept["ANSIBLE_STDOUT_CALLBACK"] = _CALLBACK
    return kept


def _keep_command(command: list[str], cwd: str, folder: Path, scrub: Scrubber) -> None:
    """Keep the ansible-playbook command line (scrubbed), never the environment."""
    kept = {"command": command, "cwd": cwd}
    write_private(folder / "command.json", scrub.json(kept, indent=2).encode())


def _tune_pexpect() -> None:
    """ansible-runner's pexpect, with our spawn (spawn.py); only ansible_runner.runner sees the change
    (its `pexpect` name), not other users of pexpect."""
    import ansible_runner.runner as runner_module
    import pexpect

    from runner.execution import spawn

    if runner_module.pexpect is pexpect:
        runner_module.pexpect = spawn.tuned_pexpect()


def _path_with_ansible() -> str:
    """PATH with the folder of our ansible-playbook first (a virtualenv's bin is often not on PATH)."""
    folder = str(Path(ansible_bin("ansible-playbook")).parent)
    return os.pathsep.join([folder] + [p for p in os.environ.get("PATH", "").split(os.pathsep) if p != folder])


class _EventSink:
    """Receives a step's events: progress, a scrubbed stdout log and one compressed events file. They come
    from two threads: the callback's own (`receive`, one JSON line each) and ansible-runner's (`handle`: text
    on the pty outside any event, and every event when the callback found no pipe). Each is kept whole,
    numbered in the order kept, as ansible-runner numbers its events (counter, start_line, end_line)."""

    def __init__(self, folder: Path, scrub: Scrubber, progress: Progress) -> None:
        self.lock = threading.Lock()
        self.counter = 0
        self.line = 0
        self.scrub = scrub
        self.progress = progress
        self.stdout = open_private(folder / "stdout", "a")
        self.events = gzip.open(open_private(folder / "events.jsonl.gz", "ab"), "at", encoding="utf-8")
        self.stats: dict[str, dict[str, int]] | None = None
        self.data: dict[str, Any] = {}
        self.messages: dict[str, str] = {}
        self.summaries: dict[str, str] = {}
        self.hosts_seen: set[str] = set()
        self.tail: list[str] = []
        self.failed: Exception | None = None  # the first event that could not be kept (a full disk): no more are

    def handle(self, event: dict[str, Any]) -> bool:
        """ansible-runner's event handler: an event it decoded from the pty, its stdout already stripped."""
        self._accept(event, int(event.get("end_line") or 0) - int(event.get("start_line") or 0))
        return False  # already kept: ansible-runner must not write one file per event

    def receive(self, line: bytes) -> None:
        """One event from the callback's pipe, with the whole text displayed for it."""
        try:
            event = json.loads(line)
        except ValueError:  # not from our callback: kept as the text it is
            event = {"event": "verbose", "stdout": line.decode("utf-8", "replace")}
        if not isinstance(event, dict):
            event = {"event": "verbose", "stdout": str(event)}
        text = str(event.get("stdout") or "")
        event["stdout"] = text.rstrip("\r\n")
        event["runner_ident"] = _IDENT
        try:
            self._accept(event, text.count("\n"))
        except Exception as exc:  # a bug here must not stop the reading: it stops the playbook instead
            self.failed = self.failed or exc

    def _accept(self, event: dict[str, Any], lines: int) -> None:
        with self.lock:
            self.counter += 1
            event.update(counter=self.counter, start_line=self.line, end_line=self.line + lines)
            self.line += lines
            self._keep_event(event)

    def _keep_event(self, event: dict[str, Any]) -> None:
        if is_noise(event.get("stdout") or ""):
            return
        text = self.scrub.text(event.get("stdout") or "")
        if text:
            self._keep(self.stdout, text + "\n")
            self.tail = (self.tail + text.splitlines())[-20:]
            self.progress.ansible_output(text)
        self._keep(self.events, self.scrub.json(event) + "\n")
        self._track(event.get("event", ""), event.get("event_data") or {})

    def _keep(self, handle: Any, text: str) -> None:
        if self.failed is not None:
            return
        try:
            handle.write(text)
            if handle is self.stdout:
                handle.flush()  # `log --follow` reads it live; the events file is flushed at the end
        except OSError as exc:
            self.failed = exc

    def _track(self, kind: str, data: dict[str, Any]) -> None:
        host = data.get("host")
        if kind == "playbook_on_task_start":
            self.progress.task_started(str(data.get("task", "")))
        elif kind == "runner_on_start" and host:
            self.progress.host_started(host)
        elif kind in ("runner_on_ok", "runner_on_skipped") and host:
            self.hosts_seen.add(host)
            summary = summary_of(data.get("res"), self.scrub.text) if kind == "runner_on_ok" else None
            if summary is not None:
                self.summaries[host] = summary
            outcome = "skipped" if kind == "runner_on_skipped" else ("changed" if (data.get("res") or {}).get("changed") else "ok")
            self.progress.host_result(host, outcome)
        elif kind in ("runner_on_failed", "runner_on_unreachable") and host:
            self.hosts_seen.add(host)
            res = data.get("res") or {}
            message = self.scrub.text(str(res.get("msg") or res.get("stderr") or res.get("reason") or "").strip())
            task = data.get("task", "")
            ignored = kind == "runner_on_failed" and data.get("ignore_errors")
            if not ignored:
                self.messages[host] = shorten(f"{task}: {message}" if task else message, 1000)
            outcome = "unreachable" if kind == "runner_on_unreachable" else ("ok" if ignored else "failed")
            self.progress.host_result(host, outcome, "" if ignored else shorten(message.splitlines()[0], 300) if message else "")
        elif kind == "playbook_on_stats":
            self.stats = {k: dict(v or {}) for k, v in data.items() if isinstance(v, dict) and k != "artifact_data"}
            self.data = json.loads(json.dumps(self.scrub.data(data.get("artifact_data") or {}), default=str))

    def outcome(self, status: str, rc: int | None, limit: str) -> StepOutcome:
        hosts: dict[str, HostResult] = {}
        stats = self.stats or {}
        for name in sorted({h for counts in stats.values() for h in counts} | self.hosts_seen):
            hosts[name] = HostResult(
                ok=stats.get("ok", {}).get(name, 0), changed=stats.get("changed", {}).get(name, 0),
                failed=stats.get("failures", {}).get(name, 0), unreachable=stats.get("dark", {}).get(name, 0),
                skipped=stats.get("skipped", {}).get(name, 0), message=self.messages.get(name, ""),
                summary=self.summaries.get(name, ""),
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
        for handle in (self.events, self.stdout):
            try:
                handle.close()
            except OSError as exc:
                self.failed = self.failed or exc
