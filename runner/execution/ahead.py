"""The interpreter started ahead for a run's first playbook step (launcher.py runs in it).

`runbook run` starts it before anything else (runner/main.py): while runbook imports its modules, checks
the runbook and its parameters, takes the lock and writes the run record (about 0.2 s), the interpreter
loads, on the other core, the libraries ansible-playbook needs before it reads its settings. The first
playbook step run here takes it (spawn.py): ansible-runner gets this process instead of a new one, and the
step's command, environment and folder reach it through a named pipe. Nothing about the step changes:
the same pty, timeout, cancel and exit status, the same command (exec'd instead whenever running it in
place could differ). When the first step is not a playbook run here, or the run stops before it, the
interpreter is killed. RUNBOOK_START_AHEAD=0 turns this off.

Only os-level modules here (and launcher.py and store/ids.py, as light): this runs before runbook has
imported anything."""
from __future__ import annotations

import os
import sys

from runner.execution import launcher
from runner.store.ids import MARKER, is_run_id_of, new_run_id

# Only these of runbook's environment reach the interpreter before the step's own environment does: what
# Python and the preloaded modules read as they start (launcher.py), and where to find programs. The
# run's marker makes it one of the run's processes for cancel, timeouts and the reaper (processes.py).
_ENV = ("PATH", "HOME", "TERM", "TMPDIR")
_SCRATCH = "/dev/shm"  # a scratch folder like scratch.py's: named for the run, owned through an flock


class Ahead:
    def __init__(self, pid: int, fd: int, run_id: str, folder: str, owner: int) -> None:
        self.pid, self.fd, self.run_id, self.folder, self.owner = pid, fd, run_id, folder, owner
        self.fifo = os.path.join(folder, "command")

    def remove_folder(self) -> None:
        for name in ("command", ".owner"):
            try:
                os.unlink(os.path.join(self.folder, name))
            except OSError:
                pass
        try:
            os.rmdir(self.folder)
        except OSError:
            pass
        os.close(self.owner)

    def kill(self) -> None:
        """SIGKILL the interpreter, reap it, close its pty."""
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        os.close(self.fd)


_ahead: Ahead | None = None


def start(runbook: str) -> None:
    """Name the run of `runbook` and start the interpreter for its first step. Does nothing where it
    cannot help: turned off, not Linux, no /dev/shm, a name the loader will refuse, or an
    ansible-playbook that is not a plain Python script beside this Python."""
    global _ahead
    if _ahead is not None or os.environ.get("RUNBOOK_START_AHEAD", "1") == "0" or not sys.platform.startswith("linux"):
        return
    if not (0 < len(runbook) <= 100 and runbook.isascii() and runbook[0].isalnum()
            and runbook.replace("-", "").replace("_", "").replace(".", "").isalnum()):
        return
    script = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")  # ansiblebin.ansible_bin's first choice
    interpreter = _python_of(script)
    if interpreter is None or not os.access(_SCRATCH, os.W_OK | os.X_OK):
        return
    run_id = new_run_id(runbook)
    try:
        folder, owner = _scratch_folder(run_id)
    except OSError:
        return
    fifo = os.path.join(folder, "command")
    env = {k: v for k, v in os.environ.items() if k in _ENV or k.startswith(launcher.STARTUP_VARIABLES)}
    env[MARKER] = run_id
    argv = [*interpreter, os.path.abspath(launcher.__file__), fifo, str(os.getpid()), script]
    try:
        os.mkfifo(fifo, 0o600)
        pid, fd = _spawn_in_pty(argv, env, folder)
    except OSError:
        Ahead(0, -1, run_id, folder, owner).remove_folder()
        return
    _ahead = Ahead(pid, fd, run_id, folder, owner)


def run_id_for(runbook: str) -> str | None:
    """The id of the run the interpreter was started for, if that is a run of `runbook`."""
    return _ahead.run_id if _ahead is not None and is_run_id_of(_ahead.run_id, runbook) else None


def take(run_id: str | None) -> Ahead | None:
    """The interpreter, for the step of run `run_id` that will run in it (then no one else's)."""
    global _ahead
    ahead = _ahead
    if ahead is None or run_id != ahead.run_id:
        return None
    _ahead = None
    return ahead


def discard() -> None:
    """Kill the interpreter, if no step took it."""
    global _ahead
    ahead, _ahead = _ahead, None
    if ahead is not None:
        ahead.kill()
        ahead.remove_folder()


def _scratch_folder(run_id: str) -> tuple[str, int]:
    """A private folder in /dev/shm named like scratch.scratch_dir's, and the fd holding its flock."""
    import fcntl

    folder = os.path.join(_SCRATCH, f"runbook-{run_id}-{os.urandom(4).hex()}")
    os.mkdir(folder, 0o700)
    owner = os.open(os.path.join(folder, ".owner"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX)
    return folder, owner


def _spawn_in_pty(argv: list[str], env: dict[str, str], cwd: str) -> tuple[int, int]:
    """argv in a new session on a new pty, set up as ansible-runner's pexpect spawn sets up ansible-playbook
    (ignore_sighup, echo off, 24x80, no other open file); returns (pid, the pty's master fd)."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: only os-level calls until exec
        try:
            import fcntl
            import signal
            import struct
            import termios

            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            attrs = termios.tcgetattr(0)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(0, termios.TCSANOW, attrs)
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.closerange(3, 1 << 20)
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid, fd


def _python_of(script: str) -> list[str] | None:
    """The interpreter (and its one option) on a Python script's first line; None for anything else."""
    try:
        with open(script, "rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    words = first[2:].decode("utf-8", "replace").split() if first.startswith(b"#!") else []
    if not words or not os.path.basename(words[0]).startswith("python") or len(words) > 2:
        return None
    return words
