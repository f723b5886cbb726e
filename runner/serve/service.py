"""`runbook serve`: checks what it needs before it listens (every hook's token, the store, one instance
per SQLite state dir), then serves HTTP while its workers execute the queue. SIGTERM or SIGINT: stop
taking work, let running runs finish up to [serve] stop_timeout, cancel what is left, exit 0."""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn

from runner import identity
from runner.definition.loader import load_valid
from runner.definition.model import Runbook
from runner.definition.service import split_listen
from runner.definition.workspace import Workspace
from runner.errors import InvalidError, LockedError, Problem, UsageError
from runner.serve.app import Service, build_app
from runner.serve.execute import abandoned
from runner.serve.hooks import Intake
from runner.serve.log import log
from runner.serve.metrics import Metrics
from runner.serve.queue import Workers
from runner.store.backends import open_store
from runner.store.base import Store, process_start_time


class _Server(uvicorn.Server):
    """uvicorn, with our own SIGTERM/SIGINT handling: it stops serving and returns (no signal re-raised)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log("stopping", signal=signal.Signals(signum).name)
        self.should_exit = True


def serve(ws: Workspace, listen: str | None) -> int:
    try:
        host, port = split_listen(listen or ws.config.serve.listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    tokens = _tokens(ws)
    store = open_store(ws)
    store.require_writable()
    store.ping()
    with _one_instance(ws, store):
        runbooks = _triggered_runbooks(ws)
        instance = f"{socket.gethostname()}:{os.getpid()}:{process_start_time(os.getpid())}"
        store.requeue(abandoned(store, lambda claimant: _alive(claimant, store.backend)))
        operator = identity.operator()
        stores = _ThreadStores(ws)
        workers = Workers(ws, ws.config.serve.workers, instance, stores.get, [h.token_env for h in ws.config.hooks.values()])
        service = Service(ws.config.hooks, tokens, Intake(ws, store, runbooks, operator), Metrics(stores.get), workers.wake.set)
        config = uvicorn.Config(build_app(service), host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off", server_header=False)
        sock = _bind(host, port)
        workers.start()
        log("listening", address=f"{host}:{port}", store=store.describe(), workers=ws.config.serve.workers,
            hooks=",".join(sorted(ws.config.hooks)) or "none", triggered=",".join(r.name for r in runbooks) or "none")
        server = _Server(config)
        server.run(sockets=[sock])
        log("draining", running=len(workers.children), stop_timeout=f"{ws.config.serve.stop_timeout:g}s")
        workers.stop(ws.config.serve.stop_timeout)
        log("stopped")
    return 0


def _alive(claimant: str, backend: str) -> bool:
    """Whether the instance that claimed a run may still start it: with SQLite none (one instance per
    state dir, and it is starting); on PostgreSQL one of another machine is taken as alive."""
    host, _, rest = claimant.partition(":")
    if backend == "sqlite":
        return False
    if host != socket.gethostname():
        return True
    pid, _, started = rest.partition(":")
    return pid.isdigit() and str(process_start_time(int(pid))) == started


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: an address in use is one clear line (exit 2)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


def _tokens(ws: Workspace) -> dict[str, str]:
    """Every hook's bearer token, read now; an unset one refuses the start (exit 3)."""
    tokens, problems = {}, []
    for name, hook in sorted(ws.config.hooks.items()):
        value = os.environ.get(hook.token_env, "")
        if not value:
            problems.append(Problem("runbook.toml", None, f"hooks.{name}.token_env",
                                    f"{hook.token_env} is not set: export the hook's bearer token in it"))
        tokens[name] = value
    if problems:
        raise InvalidError("runbook serve: not started", tuple(problems))
    return tokens


@contextlib.contextmanager
def _one_instance(ws: Workspace, store: Store) -> Iterator[None]:
    """With SQLite, one `runbook serve` per state dir (a second one exits 6); PostgreSQL shares the queue."""
    if store.backend != "sqlite":
        yield
        return
    path = store.locks_dir / "serve.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise LockedError(f"another runbook serve (pid {holder}) already serves the state dir {ws.state_dir}: "
                              "one instance per SQLite state dir (share a PostgreSQL store to run several)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _triggered_runbooks(ws: Workspace) -> list[Runbook]:
    """The valid runbooks with triggers; a runbook that does not validate, or names no known hook, is said."""
    runbooks, problems = load_valid(ws.runbook_files(), ws.display)
    for problem in problems:
        log("runbook-invalid", problem=str(problem))
    chosen = []
    for runbook in runbooks:
        unknown = sorted({t.hook for t in runbook.triggers} - set(ws.config.hooks))
        if unknown:
            log("trigger-ignored", runbook=runbook.name, why=f"no hook {unknown[0]!r} in runbook.toml [hooks]")
        if runbook.triggers:
            chosen.append(runbook)
    return chosen


class _ThreadStores:
    """One store per thread (an SQLite connection belongs to the thread that opened it)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._local = threading.local()

    def get(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = open_store(self.ws)
        return store
