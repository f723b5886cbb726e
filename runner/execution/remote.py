"""A playbook step on an execution node. The job (playbooks, roles, inventory, ansible.cfg, extra vars) is
sent with ansible-runner's transmit protocol through the worker's `command` (ssh) to `ansible-runner
worker` running in a tmpfs folder on the node, and its events come back through ansible-runner's
`process` side into the same event sink as a local step: progress, scrubbed stdout, events, record.

Secrets travel only inside that stream: the extra vars are a file of the job's zip, built in memory on
this side and unpacked on the node's tmpfs, which the node-side wrapper removes when the job ends.
Nothing of the job is on a command line on either side but the wrapper below, which holds no value
from a caller (only the configured path of ansible-runner, quoted)."""
from __future__ import annotations

import configparser
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path
from typing import IO, Any, Callable

from runner.definition.workspace import WorkerConfig
from runner.execution.ansible_step import (REMOTE_TMP_PLUGIN, PlaybookRun, StepOutcome, _EventSink,
                                           enter_ansible_runner)
from runner.execution.extravars import unsafe_yaml
from runner.store.ids import MARKER
from runner.execution.progress import Progress
from runner.store.files import make_private_dir, write_private
from runner.store.redact import Scrubber

# How long cancel waits for the node to stop the job and remove its folder before cutting the link.
STOP_GRACE = 8.0
# Beyond the step's own timeout (which the node's ansible-runner enforces), when this side gives up.
TIMEOUT_MARGIN = 10.0

# The node side, run by the remote user's shell (ssh passes one command line) or by `sh -c`.
# It makes a private folder on /dev/shm (a tmpfs: the job's secrets never reach a disk), runs
# `ansible-runner worker` there with stdin fed through a FIFO, and watches stdin itself: when the
# controller closes it (end of job, cancel, timeout) or the connection drops, every process of the
# job (found by the RUNBOOK_WORKER_JOB variable in its environment, so Ansible workers that setsid()
# are found too) is stopped and the folder removed. Its messages to stderr start "runbook-worker: ".
_NODE_SCRIPT = r"""
set -u
umask 077
runner=@RUNNER@
say() { printf 'runbook-worker: %s\n' "$*" >&2; }
node=$(uname -n)
case $runner in */*) PATH=${runner%/*}:$PATH; export PATH;; esac
if ! command -v "$runner" >/dev/null 2>&1; then say "missing $runner is not installed on $node (PATH=$PATH)"; exit 127; fi
shm=/dev/shm
if [ "$(stat -f -c %T "$shm" 2>/dev/null)" != tmpfs ]; then say "notmpfs $shm on $node is not a tmpfs"; exit 97; fi
d=$(mktemp -d "$shm/runbook-worker.XXXXXXXXXX") || { say "notmpfs cannot create a folder in $shm on $node"; exit 97; }
# ssh's ControlPersist masters rewrite their environ with their title, which names $d/cp: found by it.
# ([/] keeps grep from finding itself.)
jobpids() {
  { grep -lzxF "RUNBOOK_WORKER_JOB=$d" /proc/[0-9]*/environ; grep -lz "[/]${d#/}/" /proc/[0-9]*/cmdline; } 2>/dev/null |
    sed -e 's,^/proc/,,' -e 's,/.*,,' | sort -u
}
stop() {
  n=0
  while p=$(jobpids) && [ -n "$p" ] && [ $n -lt 70 ]; do
    if [ $n -lt 25 ]; then kill -TERM $p 2>/dev/null; else kill -KILL $p 2>/dev/null; fi
    n=$((n+1)); sleep 0.1
  done
}
cleanup() { trap '' HUP INT TERM PIPE; stop; rm -rf "$d"; }
trap cleanup EXIT
trap 'exit 143' HUP INT TERM
trap 'exit 141' PIPE
mkdir "$d/job" "$d/tmp" && mkfifo "$d/in" "$d/done" || exit 97
say "job $d $node"
exec 3<&0 4<>"$d/done"
{ RUNBOOK_WORKER_JOB=$d TMPDIR=$d/tmp ANSIBLE_LOCAL_TEMP=$d/tmp RUNBOOK_REMOTE_TMP=$d/tmp \
    ANSIBLE_SSH_CONTROL_PATH_DIR=$d/cp "$runner" worker --private-data-dir "$d/job" <"$d/in" 3<&- 4>&-; echo "worker $?" >&4; } &
{ RUNBOOK_WORKER_JOB=$d cat <&3 >"$d/in" 3<&- 4>&-; echo "input 0" >&4; } 2>/dev/null &
[ @CHECK_VERSION@ = 1 ] && { v=$("$runner" --version 2>/dev/null </dev/null); say "version ${v:-unknown}"; } 3<&- 4>&- &
read -r what rc <&4
[ "$what" = worker ] && exit "$rc"
exit 0
"""

_STATUS = {"successful": "successful", "failed": "failed", "timeout": "timeout", "canceled": "canceled"}


# ansible-runner's version on each worker, as its node reported it: asked once per worker and process,
# since asking costs a Python start on the node.
_NODE_VERSIONS: dict[WorkerConfig, str] = {}


def node_command(worker: WorkerConfig, check_version: bool = True) -> list[str]:
    """The worker's `command` with the node-side script appended as one shell command line."""
    script = _NODE_SCRIPT.replace("@RUNNER@", shlex.quote(worker.ansible_runner))
    script = script.replace("@CHECK_VERSION@", "1" if check_version else "0").strip()
    return [*worker.command, f"sh -c {shlex.quote(script)}"]


def run_remote_playbook(job: PlaybookRun, worker: WorkerConfig, scrub: Scrubber, progress: Progress,
                        canceled: Callable[[], bool]) -> StepOutcome:
    folder = make_private_dir(job.folder)
    staging = folder / ".job"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        kwargs = _stage(job, make_private_dir(staging))
        link = _Link(worker, job.run_id)
        try:
            outcome = link.run(job, staging, kwargs, _EventSink(folder, scrub, progress), canceled, progress)
        finally:
            link.close()
            write_private(folder / "worker.log", scrub.text("\n".join(link.log) + "\n").encode())
            write_private(folder / "worker.json", json.dumps(link.describe(), indent=2).encode())
            if link.command:
                write_private(folder / "command.json", scrub.text(json.dumps(link.command, indent=2)).encode())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_private(folder / "rc", f"{outcome.rc}\n".encode())
    write_private(folder / "status", f"{outcome.status}\n".encode())
    return outcome


def _stage(job: PlaybookRun, staging: Path) -> dict[str, Any]:
    """The job's private data dir (no secrets in it): project = playbooks/ with a node-side ansible.cfg,
    roles/, the inventory; returns the kwargs that travel with it."""
    root = job.project_dir.parent
    shutil.copytree(job.project_dir, staging / "project", symlinks=False)
    if (root / "collections").is_dir():  # Ansible looks beside the playbook for collections/
        shutil.copytree(root / "collections", staging / "project" / "collections", dirs_exist_ok=True)
    write_private(staging / "project" / "ansible.cfg", _node_cfg(job.ansible_cfg).encode())
    # Beside the playbook, where Ansible finds it: the node's local-connection hosts keep their remote
    # temp in the job's folder (RUNBOOK_REMOTE_TMP, set by the node script), removed with it.
    make_private_dir(staging / "project" / "vars_plugins")
    shutil.copyfile(REMOTE_TMP_PLUGIN, staging / "project" / "vars_plugins" / REMOTE_TMP_PLUGIN.name)
    if (root / "roles").is_dir():
        shutil.copytree(root / "roles", staging / "roles")
    else:
        (staging / "roles").mkdir()
    inventory = _stage_inventory(job.inventory, make_private_dir(staging / "inventory"))
    flags = [flag for flag, on in (("--check", job.check), ("--diff", job.diff)) if on]
    return {
        "playbook": job.playbook, "inventory": inventory, "limit": job.limit, "forks": job.forks,
        "cmdline": " ".join(flags), "ident": "ansible", "quiet": True, "suppress_output_file": True,
        "fact_cache_type": "memory", "rotate_artifacts": 0,
        # ANSIBLE_ROLES_PATH is joined by the worker onto its own <private dir>/roles. Pipelining on every
        # connection, the node's local one included: module arguments (a secret among them) then reach
        # the module through a pipe instead of a file in the node's ~/.ansible/tmp.
        "envvars": {"ANSIBLE_CONFIG": "ansible.cfg", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_ROLES_PATH": ".",
                    "ANSIBLE_PIPELINING": "True"},
        "timeout": max(1, int(job.timeout)) if job.timeout is not None else None,
        "settings": {"pexpect_timeout": 0.25, "suppress_ansible_output": True},
    }


def _node_cfg(path: Path) -> str:
    """The run's ansible.cfg without the paths that only make sense on this machine."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    if parser.has_section("defaults"):
        for key in ("roles_path", "collections_path", "collections_scan_sys_path"):
            parser.remove_option("defaults", key)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _stage_inventory(inventory: Path, target: Path) -> str:
    """Copy the inventory (a folder whole; a file with its group_vars/ and host_vars/); its path in the job."""
    if inventory.is_dir():
        shutil.copytree(inventory, target / inventory.name)
        return f"inventory/{inventory.name}"
    shutil.copy2(inventory, target / inventory.name)
    for sibling in ("group_vars", "host_vars"):
        if (inventory.parent / sibling).is_dir():
            shutil.copytree(inventory.parent / sibling, target / sibling)
    return f"inventory/{inventory.name}"


def _zip_job(staging: Path, extra: dict[str, bytes]) -> bytes:
    """The private data dir as ansible-runner's transmit zips it, built in memory so the extra vars
    (secrets among them) never touch this machine's disk."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(staging)))
        for name, data in extra.items():
            info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
            info.external_attr = 0o100600 << 16  # a regular file, owner read/write: unpacked with this mode
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def _transmit(output: IO[bytes], kwargs: dict[str, Any], job_zip: bytes) -> None:
    """ansible-runner's transmit stream: the kwargs line, the zipped private data dir, eof."""
    from ansible_runner.utils.base64io import Base64IO

    output.write(json.dumps({"kwargs": kwargs}).encode() + b"\n")
    output.write(json.dumps({"zipfile": len(job_zip)}).encode() + b"\n")
    with Base64IO(output) as encoded:
        encoded.write(job_zip)
    output.write(json.dumps({"eof": True}).encode() + b"\n")
    output.flush()


def controller_runner_version() -> str:
    from importlib.metadata import version

    return version("ansible-runner")


def _same_minor(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]


class _Link:
    """One job on one worker: the transport process, the stream both ways, what the node said."""

    def __init__(self, worker: WorkerConfig, run_id: str) -> None:
        self.worker = worker
        self.run_id = run_id
        self.log: list[str] = []  # the transport's stderr: ssh errors, the node script's lines
        self.info: dict[str, str] = {}  # from "runbook-worker: KEY VALUE" lines
        self.command: dict[str, Any] | None = None
        self.status: dict[str, Any] = {}
        self.rc: int | None = None
        self.got_eof = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.sender: threading.Thread | None = None
        self.reader: threading.Thread | None = None
        self.stopping = ""
        self.mismatch = ""

    def describe(self) -> dict[str, Any]:
        job = self.info.get("job", "").split()
        return {"worker": self.worker.name, "command": list(self.worker.command),
                "node": job[1] if len(job) > 1 else None,
                "node_ansible_runner": self.info.get("version") or _NODE_VERSIONS.get(self.worker),
                "controller_ansible_runner": controller_runner_version()}

    def run(self, job: PlaybookRun, staging: Path, kwargs: dict[str, Any], sink: _EventSink,
            canceled: Callable[[], bool], progress: Progress) -> StepOutcome:
        enter_ansible_runner()  # no installed ansible-runner plugin sees the node's events either
        import ansible_runner.streaming  # noqa: F401  once, here: importing it in two threads at once races

        job_zip = _zip_job(staging, {"env/extravars": unsafe_yaml({**job.kept_vars, **job.secret_vars})})
        if self.worker in _NODE_VERSIONS:
            self._check_version(_NODE_VERSIONS[self.worker], None)
            if self.mismatch:
                sink.close()
                return StepOutcome("failed", 4, self.mismatch)
        env = dict(os.environ, **{MARKER: job.run_id})
        try:
            # Its own session: a ^C on the terminal reaches this process, which then stops the job in order.
            command = node_command(self.worker, check_version=self.worker not in _NODE_VERSIONS)
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            sink.close()
            return StepOutcome("failed", 4, f"worker {self.worker.name!r}: cannot start {self.worker.command[0]!r}: "
                               f"{exc.strerror}")
        self.sender = threading.Thread(target=self._send, args=(kwargs, job_zip), daemon=True)
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        threads = [self.reader, self.sender]
        processor = threading.Thread(target=self._process, args=(sink, staging / "artifacts"), daemon=True)
        for thread in threads + [processor]:
            thread.start()
        try:
            self._wait(processor, job, canceled, progress)
        finally:
            sink.close()
            self.close()  # the node's exit status and last words belong to the verdict
        if "version" in self.info and self.worker not in _NODE_VERSIONS:  # it came after a short job's end
            self._check_version(self.info["version"], progress)
        return self._outcome(sink, job)

    # -- the three streams ------------------------------------------------------------------------
    def _send(self, kwargs: dict[str, Any], job_zip: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            _transmit(self.proc.stdin, kwargs, job_zip)
        except (OSError, ValueError):
            pass  # the link died: the processor side sees it and says so

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        try:
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith("runbook-worker: "):
                    key, _, value = line.removeprefix("runbook-worker: ").partition(" ")
                    self.info[key] = value
                if line == "Terminated":
                    continue  # a shell's note that the node script stopped a process of the job: noise
                self.log.append(line)
                del self.log[:-500]
        except (OSError, ValueError):
            pass  # closed under it: the transport is gone

    def _process(self, sink: _EventSink, artifacts: Path) -> None:
        from ansible_runner.streaming import Processor

        link = self

        class _Processor(Processor):  # type: ignore[misc]
            def artifacts_callback(self, artifacts_data: dict[str, Any]) -> None:
                link._artifacts(self._input, int(artifacts_data["zipfile"]))

        assert self.proc is not None
        processor = _Processor(_input=self.proc.stdout, event_handler=sink.handle, status_handler=self._status,
                               finished_callback=None, private_data_dir=str(artifacts.parent), ident="ansible",
                               quiet=True, settings={})
        try:
            processor.run()
        except Exception as exc:  # a broken stream is the worker's failure, said in one line, not a traceback
            self.status = {"status": "error", "job_explanation": f"unreadable stream: {exc.__class__.__name__}: {exc}"}
            self.got_eof = False

    def _status(self, data: dict[str, Any], runner_config: Any = None) -> None:
        self.status = data

    def _artifacts(self, stream: IO[bytes], size: int) -> None:
        """The node's artifacts (rc, status, command), read in memory: nothing of them lands on disk here."""
        from ansible_runner.utils.base64io import Base64IO

        raw = io.BytesIO()
        with Base64IO(stream) as source:
            while raw.tell() < size:
                chunk = source.read(min(1 << 20, size - raw.tell()))
                if not chunk:
                    break
                raw.write(chunk)
        with zipfile.ZipFile(raw) as archive:
            names = set(archive.namelist())
            if "rc" in names:
                text = archive.read("rc").decode(errors="replace").strip()
                self.rc = int(text) if re.fullmatch(r"-?\d+", text) else None
            if "command" in names:
                try:
                    data = json.loads(archive.read("command"))
                    self.command = {"worker": self.worker.name, "command": data.get("command"), "cwd": data.get("cwd")}
                except ValueError:
                    pass
        self.got_eof = True

    # -- waiting, stopping ------------------------------------------------------------------------
    def _wait(self, processor: threading.Thread, job: PlaybookRun, canceled: Callable[[], bool],
              progress: Progress) -> None:
        assert self.proc is not None
        give_up = time.monotonic() + job.timeout + TIMEOUT_MARGIN if job.timeout is not None else None
        cut_at: float | None = None
        exited_at: float | None = None
        noted = False
        while processor.is_alive():
            processor.join(0.05)
            if exited_at is None and self.proc.poll() is not None:
                exited_at = time.monotonic()
            elif exited_at is not None and time.monotonic() - exited_at > 5:
                break  # the transport is gone but something else holds its stdout open: stop reading
            version = self.info.get("version")
            if version and not noted:
                noted = True
                self._check_version(version, progress)
            if not self.stopping:
                if canceled():
                    self.stopping = "canceled"
                elif give_up is not None and time.monotonic() > give_up:
                    self.stopping = "timeout"
                elif self.mismatch:
                    self.stopping = "mismatch"
                if self.stopping:
                    self._close_input()
                    cut_at = time.monotonic() + STOP_GRACE
            elif cut_at is not None and time.monotonic() > cut_at:
                self._terminate()
                cut_at = None
        version = self.info.get("version")
        if version and not noted:
            self._check_version(version, progress)

    def _check_version(self, version: str, progress: Progress | None) -> None:
        """A different minor release is refused (exit 4, explained); a different patch level noted once."""
        _NODE_VERSIONS[self.worker] = version
        mine = controller_runner_version()
        if version == mine:
            return
        if version == "unknown" or not _same_minor(version, mine):
            self.mismatch = (f"worker {self.worker.name!r} runs ansible-runner {version} and this controller "
                             f"{mine}: the transmit/worker/process stream only matches within one minor release; "
                             f"install ansible-runner {'.'.join(mine.split('.')[:2])}.x on the node "
                             f"(or point ansible_runner in [workers.{self.worker.name}] at one)")
        elif progress is not None:
            progress.note(f"  note: worker {self.worker.name!r} runs ansible-runner {version}, this controller {mine}")

    def _close_input(self) -> None:
        """EOF on the node's stdin: its script stops every process of the job and removes its folder."""
        assert self.proc is not None and self.proc.stdin is not None
        if self.sender is not None and self.sender.is_alive():
            self._terminate()  # the job is still being written: closing would wait for a node that may not read
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def _terminate(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def close(self) -> None:
        """End the transport: the node cleans up when its stdin closes; wait for that, within bounds."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self._close_input()
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self._terminate()
        self.proc.wait()
        if self.reader is not None:
            self.reader.join(2.0)  # the last words of the node (a background ssh may hold stderr open)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.stderr is not None and not (self.reader and self.reader.is_alive()):
            self.proc.stderr.close()  # (closing it under a blocked reader would block here too)

    # -- the verdict --------------------------------------------------------------------------------
    def _outcome(self, sink: _EventSink, job: PlaybookRun) -> StepOutcome:
        status = str(self.status.get("status", ""))
        if self.stopping == "canceled":
            outcome = sink.outcome("canceled", self.rc, job.limit)
        elif self.stopping == "timeout" or status == "timeout":
            outcome = sink.outcome("timeout", self.rc, job.limit)
        elif self.mismatch and not (self.got_eof and status in ("successful", "failed")):
            outcome = StepOutcome("failed", 4, self.mismatch, sink.outcome("failed", self.rc, job.limit).hosts)
        elif self.got_eof and status in _STATUS:
            outcome = sink.outcome(_STATUS[status], self.rc, job.limit)
        else:
            outcome = StepOutcome("failed", 4, self._failure(status), sink.outcome("failed", self.rc, job.limit).hosts)
        outcome.data = sink.data
        return outcome

    def _failure(self, status: str) -> str:
        """Why the job did not run through, in one line naming the worker."""
        name = f"worker {self.worker.name!r}"
        if "missing" in self.info:
            return f"{name} lacks ansible-runner: {self.info['missing']}"
        if "notmpfs" in self.info:
            return f"{name}: {self.info['notmpfs']}: the job's secrets must not rest on a disk, so it was not sent"
        assert self.proc is not None
        code = self.proc.poll()
        said = [line for line in self.log if line.strip() and not line.startswith("runbook-worker: ")]
        detail = said[-1].strip() if said else f"{self.worker.command[0]} exited {code}"
        if "job" not in self.info:
            return f"{name} cannot be reached: {detail}"
        node = self.info["job"].split()[-1]
        if code is not None and 0 <= code != 255:  # the node's script ended: the worker itself failed there
            explanation = self.status.get("job_explanation") or "no result"
            return f"{name}: ansible-runner on {node} failed: {explanation}; {detail}"[:1000]
        return (f"lost the connection to {name} ({detail}): the playbook may still be running on node {node}; "
                f"its wrapper stops it when it sees the connection closed")[:1000]
