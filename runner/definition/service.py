"""runbook.toml's `[serve]` (the long-running service) and `[hooks.NAME]` (where alerts come in), checked
like the rest of the file: every problem at once, with its key path."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from runner.definition.durations import parse_duration
from runner.errors import Problem

HOOK_FORMATS = ("alertmanager", "json")
HOOK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_LISTEN = "127.0.0.1:8470"
_SERVE_KEYS = {"listen", "workers", "public_url", "stop_timeout"}
_HOOK_KEYS = {"format", "token_env"}


@dataclass(frozen=True)
class ServeConfig:
    listen: str = DEFAULT_LISTEN
    workers: int = 2  # runs at once in this instance
    public_url: str | None = None  # links in notifications
    stop_timeout: float = 600.0  # SIGTERM: running runs may finish this long, then are canceled


@dataclass(frozen=True)
class Hook:
    """[hooks.NAME]: alerts POSTed to /hooks/NAME in `format`, with the bearer token held in `token_env`."""

    name: str
    format: str
    token_env: str


def split_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT as (host, port); ValueError says why not."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{listen!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
    return host.strip("[]"), int(port)


def parse_serve(data: Any, filename: str) -> tuple[ServeConfig, list[Problem]]:
    if not isinstance(data, dict):
        return ServeConfig(), [Problem(filename, None, "serve", 'expected a table: [serve] listen = "HOST:PORT"')]
    problems = [Problem(filename, None, f"serve.{k}", "unknown key") for k in data if k not in _SERVE_KEYS]
    listen = data.get("listen", DEFAULT_LISTEN)
    try:
        split_listen(listen if isinstance(listen, str) else "")
    except ValueError as exc:
        problems.append(Problem(filename, None, "serve.listen", str(exc) if isinstance(listen, str) else f"{listen!r} is not HOST:PORT"))
    workers = data.get("workers", 2)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        problems.append(Problem(filename, None, "serve.workers", f"{workers!r} is not a number of runs from 1 to 64"))
    public_url = data.get("public_url")
    if public_url is not None and not (isinstance(public_url, str) and public_url.startswith(("http://", "https://"))):
        problems.append(Problem(filename, None, "serve.public_url", f"{public_url!r} is not an http(s) URL"))
    stop_timeout = data.get("stop_timeout", "10m")
    try:
        seconds = float(parse_duration(stop_timeout)) if isinstance(stop_timeout, str) else -1.0
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        problems.append(Problem(filename, None, "serve.stop_timeout", f"{stop_timeout!r} is not a duration like 10m"))
    if problems:
        return ServeConfig(), problems
    return ServeConfig(listen, workers, public_url, seconds), []


def parse_hooks(data: Any, filename: str) -> tuple[Mapping[str, Hook], list[Problem]]:
    if not isinstance(data, dict):
        return {}, [Problem(filename, None, "hooks", "expected tables like [hooks.alertmanager]")]
    hooks: dict[str, Hook] = {}
    problems: list[Problem] = []
    for name, spec in data.items():
        where = f"hooks.{name}"
        if not HOOK_NAME.match(name):
            problems.append(Problem(filename, None, where, "is not a hook name (lower case letters, digits, - and _)"))
            continue
        if not isinstance(spec, dict):
            problems.append(Problem(filename, None, where, 'expected a table with format and token_env'))
            continue
        problems += [Problem(filename, None, f"{where}.{k}", "unknown key") for k in spec if k not in _HOOK_KEYS]
        kind, env = spec.get("format"), spec.get("token_env")
        if kind not in HOOK_FORMATS:
            problems.append(Problem(filename, None, f"{where}.format", f"{kind!r} is not one of: {', '.join(HOOK_FORMATS)}"))
        if not (isinstance(env, str) and ENV_NAME.match(env)):
            problems.append(Problem(filename, None, f"{where}.token_env",
                                    "expected the name of the environment variable holding the bearer token"))
        if kind in HOOK_FORMATS and isinstance(env, str) and ENV_NAME.match(env):
            hooks[name] = Hook(name, str(kind), env)
    return hooks, problems
