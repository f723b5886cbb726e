"""Scratch folders for one ansible-playbook invocation, outside the state dir: ansible-runner's private
data dir and the named pipes that carry secrets. Nothing in them holds data at rest (see fifos.py), yet a
runner killed with SIGKILL leaves the folder behind: the reaper of the dead run discards it. A live owner
holds an flock on the folder's `.owner` file, so a folder is discarded only once its owner is gone."""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_PREFIX = "runbook-"
_OWNER = ".owner"


def _roots() -> list[Path]:
    """Where scratch folders go (memory first), and where the reaper looks for them."""
    shm = Path("/dev/shm")
    roots = [shm] if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else []
    tmp = Path(tempfile.gettempdir())
    return roots + ([tmp] if tmp not in roots else [])


@contextmanager
def scratch_dir(run_id: str) -> Iterator[Path]:
    """A private (0700) folder named for the run, removed on exit."""
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{run_id}-", dir=_roots()[0]))
    owner = os.open(path / _OWNER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(owner)


def discard_orphans(run_id: str) -> list[Path]:
    """Remove the scratch folders of `run_id` whose owner process is gone; returns them."""
    discarded = []
    for root in _roots():
        for path in root.glob(f"{_PREFIX}{run_id}-*"):
            if path.is_dir() and not path.is_symlink() and _orphaned(path):
                shutil.rmtree(path, ignore_errors=True)
                discarded.append(path)
    return discarded


def _orphaned(path: Path) -> bool:
    try:
        fd = os.open(path / _OWNER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # its owner died before it could claim it
    except OSError:
        return False  # someone else's, or not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
