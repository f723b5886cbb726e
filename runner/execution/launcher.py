"""The interpreter that a run's first playbook step runs ansible-playbook in, started before runbook has
even loaded the runbook (see ahead.py). While runbook starts up, it imports the libraries ansible-playbook
needs that do not depend on Ansible's settings (Jinja2, PyYAML, cryptography...: about a third of
ansible-playbook's start). Then it waits on a named pipe for the step's command, environment and folder,
and runs ansible-playbook's own script in this process, as if it had been started with them.

Whenever that could differ from a fresh start (another ansible-playbook on PATH, an interpreter setting in
the environment that changed), it execs the command instead: exactly what a fresh spawn would have run.

A script, run by the Python named in ansible-playbook's first line; it imports nothing of runbook:

    python launcher.py FIFO PARENT_PID ANSIBLE_PLAYBOOK
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping  # not typing: runbook imports this module before anything else

# Environment variables read when the interpreter or one of the modules below starts: a command whose
# environment differs in any of them is exec'd, never run here.
STARTUP_VARIABLES = ("PYTHON", "LC_", "LANG", "TZ", "CRYPTOGRAPHY_")

# What ansible-playbook imports before it reads its settings, and that reads no setting itself: the
# standard library modules and third-party packages from ansible-core 2.19's start, none of Ansible's own.
PRELOAD = (
    "argparse", "ast", "base64", "bisect", "calendar", "configparser", "contextvars", "copy", "ctypes",
    "curses", "dataclasses", "datetime", "decimal", "difflib", "email.message", "email.parser",
    "email.utils", "fcntl", "fnmatch", "getpass", "gettext", "glob", "grp", "hashlib", "hmac",
    "importlib.metadata", "importlib.resources", "inspect", "ipaddress", "json", "locale", "logging",
    "multiprocessing.connection", "multiprocessing.context", "multiprocessing.popen_fork",
    "multiprocessing.queues", "multiprocessing.synchronize", "numbers", "pathlib", "pickle", "pkgutil",
    "platform", "pprint", "pty", "pwd", "queue", "random", "secrets", "selectors", "shlex", "shutil",
    "signal", "socket", "string", "subprocess", "syslog", "tarfile", "tempfile", "termios", "textwrap",
    "threading", "tokenize", "tomllib", "traceback", "tty", "typing", "unicodedata", "urllib.parse", "uuid",
    "xml.dom.minidom", "xml.etree.ElementTree", "zipfile",
    "cryptography.hazmat.backends.openssl.backend", "cryptography.hazmat.primitives.ciphers",
    "cryptography.hazmat.primitives.hashes", "cryptography.hazmat.primitives.hmac",
    "cryptography.hazmat.primitives.kdf.pbkdf2", "cryptography.hazmat.primitives.padding",
    "cryptography.hazmat.primitives.serialization", "distro", "jinja2", "jinja2.nativetypes",
    "jinja2.sandbox", "markupsafe", "packaging.specifiers", "packaging.version", "yaml",
)


def main() -> None:
    # Python put this script's folder first on sys.path; ansible-playbook's own folder goes there instead.
    if sys.path and sys.path[0] == os.path.dirname(os.path.realpath(__file__)):
        del sys.path[0]
    fifo, parent, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    _die_with_parent(parent)
    startup = _startup(os.environ)
    _preload()
    command = _receive(fifo)
    if command is None:
        os._exit(0)  # runbook had no step for it
    _die_with_parent(0)  # from here on, a process like any ansible-playbook runbook starts
    argv, env, cwd = command
    os.chdir(cwd)
    import shutil

    path = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if path is None or os.path.realpath(path) != os.path.realpath(script) or _startup(env) != startup:
        os.execvpe(argv[0], argv, env)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [path, *argv[1:]]
    sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
    import runpy

    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code: object) -> None:
    """Exit as Python would after SystemExit(code), without tearing down every module and object first:
    that teardown takes 0.1-0.2 s after a playbook, and ansible-playbook has cleaned up by then.
    What Python's exit does besides is done first: waiting for threads, atexit handlers (logging's
    shutdown, temporary folders, multiprocessing's), and flushing stdout and stderr."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _startup(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_VARIABLES)}


def _die_with_parent(parent: int) -> None:
    """Killed when runbook dies before handing over a command (0: no longer). Linux's prctl: elsewhere
    runbook never starts this script."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL if parent else 0)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:
        os._exit(0)  # runbook died before the line above


def _preload() -> None:
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001  missing or broken here: ansible-playbook will say so itself
                pass


def _receive(fifo: str) -> tuple[list[str], dict[str, str], str] | None:
    """The command runbook writes to the pipe (JSON: argv, env, cwd), or None when it closes the pipe
    without one."""
    import json

    fd = os.open(fifo, os.O_RDONLY | os.O_CLOEXEC)  # blocks until runbook opens the other end
    chunks: list[bytes] = []
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    if not chunks:
        return None
    command = json.loads(b"".join(chunks))
    return ([str(a) for a in command["argv"]], {str(k): str(v) for k, v in command["env"].items()},
            str(command["cwd"]))


if __name__ == "__main__":
    main()
