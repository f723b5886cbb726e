"""Named pipes between this process and ansible-playbook: data passes through the kernel's pipe buffer and
never rests in a file, so a killed run leaves an empty pipe behind, never its content."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_JOIN_SECONDS = 5.0


@contextmanager
def feeding(path: Path, payload: bytes) -> Iterator[Path]:
    """A pipe at `path` that gives `payload` once to the first reader (ansible-playbook's `-e @path`),
    written by a thread as the reader takes it. On exit an unread payload is dropped and the pipe removed."""
    os.mkfifo(path, 0o600)
    writer = threading.Thread(target=_feed, args=(path, payload), name="runbook-fifo-feed", daemon=True)
    writer.start()
    try:
        yield path
    finally:
        for _ in range(int(_JOIN_SECONDS / 0.05)):
            if not writer.is_alive():
                break
            _release_writer(path)
            writer.join(0.05)
        path.unlink(missing_ok=True)


def _feed(path: Path, payload: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # blocks until a reader opens the pipe
    except OSError:
        return
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass  # the reader went away (EPIPE): it exited, or this side gave up on it
    finally:
        os.close(fd)


def _release_writer(path: Path) -> None:
    """Open and at once close the read side: the blocked writer wakes, and its write fails with EPIPE or
    lands in a buffer discarded with the pipe."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError:
        pass


@contextmanager
def discarding(path: Path) -> Iterator[Path]:
    """A pipe at `path` whose writer's bytes are read and thrown away: for a file ansible-runner insists
    on writing (`command`, with the whole environment) that must never reach a disk."""
    os.mkfifo(path, 0o600)
    read_end = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.set_blocking(read_end, True)
    # Held open until exit: the reader sees end-of-file only after the last writer, this one, has gone,
    # and a writer's open never blocks.
    keep_open = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    drain = threading.Thread(target=_drain, args=(read_end,), name="runbook-fifo-drain", daemon=True)
    drain.start()
    try:
        yield path
    finally:
        os.close(keep_open)
        drain.join(_JOIN_SECONDS)
        path.unlink(missing_ok=True)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 1 << 16):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
