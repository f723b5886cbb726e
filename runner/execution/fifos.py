"""Named pipes between this process and ansible-playbook: data passes through the kernel's pipe buffer and
never rests in a file, so a killed run leaves an empty pipe behind, never its content."""
from __future__ import annotations

import os
import select
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

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
    with receiving(path, lambda _line: None) as pipe:
        yield pipe


@contextmanager
def receiving(path: Path, deliver: Callable[[bytes], None]) -> Iterator[Path]:
    """A pipe at `path` whose writer sends lines: a thread hands each one to `deliver` (without its newline)
    as it comes, in reads of up to 64 KiB. A writer's open never blocks. On exit, once the writer has
    exited, the lines already written are delivered; processes that merely inherited the write end (a
    killed playbook's workers) are not waited for. A `deliver` that raises gets nothing more, while the
    pipe keeps being drained so that no writer blocks on it; the error is raised on exit."""
    os.mkfifo(path, 0o600)
    read_end = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    keep_open = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # no end-of-file before exit, whoever comes and goes
    stop = threading.Event()
    errors: list[Exception] = []
    reader = threading.Thread(target=_read_lines, args=(read_end, deliver, stop, errors),
                              name="runbook-fifo-lines", daemon=True)
    reader.start()
    try:
        yield path
    finally:
        os.close(keep_open)
        stop.set()  # the reader takes what the pipe holds, then stops
        reader.join()
        path.unlink(missing_ok=True)
    if errors:
        raise errors[0]


def _read_lines(fd: int, deliver: Callable[[bytes], None] | None, stop: threading.Event,
                errors: list[Exception]) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    pending: list[bytes] = []  # the start of a line not yet ended, in pieces: joined once it ends
    give_up = 0.0  # once stopping: a writer still alive (the step raised) is read for 2 s at most
    try:
        while True:
            finishing = stop.is_set()
            if finishing and not give_up:
                give_up = time.monotonic() + 2.0
            elif finishing and time.monotonic() > give_up:
                break
            if not poller.poll(0 if finishing else 100):
                if finishing:
                    break
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                if finishing:
                    break
                continue
            if not chunk:
                break  # every writer has gone, this side's own included
            *lines, rest = chunk.split(b"\n")
            if lines:
                lines[0] = b"".join(pending + [lines[0]])
                pending = []
            if rest:
                pending.append(rest)
            for line in lines:
                if deliver is not None and line:
                    try:
                        deliver(line)
                    except Exception as exc:  # noqa: BLE001  raised on exit; the pipe must keep draining
                        errors.append(exc)
                        deliver = None
        if deliver is not None and pending:
            deliver(b"".join(pending))
    except Exception as exc:  # noqa: BLE001
        errors.append(exc)
    finally:
        os.close(fd)
