"""How a playbook step's ansible-playbook process starts: pexpect's spawn, tuned for the way ansible-runner
reads it (Spawn), and for a run's first step, the interpreter started ahead (ahead.py) instead of a new
process."""
from __future__ import annotations

import errno
import json
import os
import time
import types
from typing import Any, Mapping

import pexpect
import ptyprocess

from runner.execution import ahead
from runner.store.ids import MARKER

_READ_SIZE = 65536  # what one read of ansible-playbook's output takes at most
_HANDOVER_SECONDS = 10.0  # how long the first step waits for the interpreter to take its command
# How ansible-runner's pexpect.spawn sets up ansible-playbook, and ahead.py the interpreter.
_SPAWN_ARGS = {"ignore_sighup": True, "encoding": "utf-8", "codec_errors": "replace", "echo": False}


class _NothingKept:
    """What pexpect's `_before` buffer becomes: it takes every write and keeps none."""

    def write(self, text: str) -> int:
        return len(text)

    def getvalue(self) -> str:
        return ""

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self) -> str:
        return ""


_NOTHING_KEPT = _NothingKept()


class Spawn(pexpect.spawn):  # type: ignore[misc]
    """pexpect's spawn without three habits that cost a playbook step time for nothing (ansible-runner
    only reads the output through `logfile_read` and waits for ansible-playbook's exit):

    - pexpect reads at most 2,000 bytes at a time and sleeps after every read. Each event travelled
      in-band then (a few KB of base64; now only when the events pipe is missing, see
      callback_plugins/runbook_events.py), so a big step's output came in thousands of small reads, each
      followed by a sleep that lasts 0.5 ms on a busy machine; meanwhile ansible-playbook blocks
      on the full pty. Reads are 64 KiB, without the sleep: 2,000 hosts went from 1.097x to 1.053x
      of plain ansible-playbook (3 paired runs);
    - ptyprocess pauses 0.1 s after closing the pty (meant for children still running), but
      ansible-runner closes it only once ansible-playbook has exited: 7% of a short playbook;
    - pexpect keeps everything the child printed since its last pattern match in `_before`, and
      copies all of it into `before` at every 0.25 s poll that times out. ansible-runner's patterns
      (password prompts) never match in a non-interactive run, so that is the step's whole output
      held in memory and copied again and again: 0.6 s of CPU on 2,000 hosts, quadratic in a long
      verbose step. ansible-runner never reads `before`: it is not kept."""

    _before = property(lambda self: _NOTHING_KEPT, lambda self, value: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **dict(kwargs, maxread=_READ_SIZE))
        self.delayafterread = None

    def close(self, force: bool = True) -> None:
        self.ptyproc.delayafterclose = 0.0
        super().close(force)


def tuned_pexpect() -> types.ModuleType:
    """A copy of the pexpect module whose `spawn` is ours: what ansible_runner.runner is given (other
    users of pexpect keep theirs)."""
    tuned = types.ModuleType("pexpect")
    tuned.__dict__.update(vars(pexpect))
    tuned.spawn = _spawn  # type: ignore[attr-defined]
    return tuned


def _spawn(command: str, args: list[str], **kwargs: Any) -> Spawn:
    """What ansible-runner's `pexpect.spawn(...)` gets: the interpreter started ahead for this run
    (ahead.py), now running the command, or else a new process."""
    env = kwargs.get("env") or {}
    started = ahead.take(env.get(MARKER))
    if started is not None:
        same = all(kwargs.get(k) == v for k, v in _SPAWN_ARGS.items()) and not kwargs.get("preexec_fn")
        taken = same and _hand_over(started, [command, *args], env, kwargs.get("cwd") or os.getcwd())
        started.remove_folder()  # the pipe is read (or never will be)
        if taken:
            return _attach(started, command, args, kwargs)
        started.kill()
    return Spawn(command, args, **kwargs)


def _hand_over(started: ahead.Ahead, argv: list[str], env: Mapping[str, str], cwd: str) -> bool:
    """Write the command to the interpreter's pipe, once it listens (it may still be loading)."""
    payload = json.dumps({"argv": argv, "env": dict(env), "cwd": cwd}).encode()
    deadline = time.monotonic() + _HANDOVER_SECONDS
    while True:
        try:
            fd = os.open(started.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or _exited(started.pid) or time.monotonic() > deadline:
                return False
            time.sleep(0.002)  # not listening yet
    try:
        os.set_blocking(fd, True)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _attach(started: ahead.Ahead, command: str, args: list[str], kwargs: dict[str, Any]) -> Spawn:
    """A Spawn of the running interpreter: what pexpect's own spawn sets once its child runs."""
    child = Spawn(None, **kwargs)
    child.ptyproc = ptyprocess.PtyProcess(started.pid, started.fd)
    child.pid, child.child_fd = started.pid, started.fd
    child.terminated = child.closed = False
    child.command, child.args = command, [command, *args]
    child.name = "<" + " ".join(child.args) + ">"
    return child


def _exited(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True

