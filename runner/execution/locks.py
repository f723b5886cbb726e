"""Advisory run locks on flock(2): the kernel releases them when the holder dies, however it dies."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from runner.errors import InvalidError, LockedError
from runner.store.files import check_private_dir


class RunLock:
    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / f"{name}.lock"
        self.name = name
        self._fd: int | None = None

    def acquire(self, holder: str, wait: float | None = None, operator: str = "", hostname: str = "") -> None:
        """Take the lock for `holder` (a run id, its operator and host), waiting up to `wait` seconds;
        LockedError names the holder as the team store does: run, operator, host."""
        fd = self._open()
        deadline = time.monotonic() + (wait or 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    current = _holder(fd)
                    os.close(fd)
                    waited = f" after waiting {wait:g}s" if wait else ""
                    raise LockedError(
                        f"lock {self.name!r} is held by {current}{waited}; "
                        "wait with --wait-lock DUR, or see: runbook history"
                    ) from None
                time.sleep(0.2)
        # Ours, regular, not linked anywhere else (checked in _open) and locked: safe to rewrite.
        os.ftruncate(fd, 0)
        who = " ".join(operator.split()) or "?", " ".join(hostname.split()) or "?"  # one line each
        os.pwrite(fd, f"{holder} {os.getpid()}\n{who[0]}\n{who[1]}\n".encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        """The lock file, never through a symlink, never truncated on open, and only a plain file of ours."""
        check_private_dir(self.path.parent.parent)  # the state dir
        check_private_dir(self.path.parent)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refuse("is a symbolic link") from None
            raise
        info = os.fstat(fd)
        problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode)
                   else "belongs to another user" if info.st_uid != os.geteuid()
                   else "has other hard links" if info.st_nlink != 1 else "")
        if problem:
            os.close(fd)
            raise self._refuse(problem)
        return fd

    def _refuse(self, problem: str) -> InvalidError:
        return InvalidError(f"lock file {self.path} {problem}: refusing to open it (it could point at "
                            f"another file); check the state dir, remove it (rm {self.path}) and run again")

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str:
    """`run ID (operator O, host H)` from the lock file: `ID PID`, then the operator and the host, a line each."""
    lines = os.pread(fd, 2000, 0).decode("utf-8", "replace").splitlines()
    run_id = lines[0].split()[0] if lines and lines[0].split() else "(unknown)"
    if len(lines) < 3:
        return f"run {run_id}"
    return f"run {run_id} (operator {lines[1]}, host {lines[2]})"
