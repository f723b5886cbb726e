"""Advisory run locks on flock(2): the kernel releases them when the holder dies, however it dies."""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from runner.errors import LockedError


class RunLock:
    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / f"{name}.lock"
        self.name = name
        self._fd: int | None = None

    def acquire(self, holder: str, wait: float | None = None) -> None:
        """Take the lock for `holder` (a run id), waiting up to `wait` seconds; LockedError names the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + (wait or 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    current = self.holder()
                    os.close(fd)
                    waited = f" after waiting {wait:g}s" if wait else ""
                    raise LockedError(
                        f"lock {self.name!r} is held by run {current or '(unknown)'}{waited}; "
                        "wait with --wait-lock DUR, or see: runbook history"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def holder(self) -> str | None:
        try:
            text = self.path.read_text().split()
        except OSError:
            return None
        return text[0] if text else None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
