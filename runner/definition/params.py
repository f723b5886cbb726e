"""Typed runbook parameters: values from -p, --params-file, the env: variable or the default, validated
before anything runs."""
from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from runner.errors import InvalidError, Problem, UsageError
from runner.definition.model import Parameter, Runbook
from runner.definition.yamlfile import YamlRefused, load_data, read_limited

from runner.store.records import REDACTED  # re-exported: the one mark of a secret
# The shortest secret runbook accepts: a shorter one (`x`, `2026`, `venv`) occurs by chance in ordinary
# output, paths and numbers, which scrubbing it would garble, while hiding next to nothing.
MIN_SECRET_LENGTH = 8
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


@dataclass(frozen=True)
class ResolvedParams:
    values: Mapping[str, Any]
    secret_names: frozenset[str]

    @property
    def secret_values(self) -> tuple[str, ...]:
        return tuple(str(self.values[n]) for n in self.secret_names if self.values.get(n) not in (None, ""))

    def redacted(self) -> dict[str, Any]:
        return {k: (REDACTED if k in self.secret_names and v is not None else v) for k, v in self.values.items()}


@functools.cache
def compile_pattern(pattern: str) -> Any:
    """`pattern` compiled by RE2, whose matching takes time linear in the value (Python's `re` can take
    exponential time: `(a+)+$`). ValueError says why a pattern is refused: invalid in Python's syntax
    (which authors write to), or beyond RE2 (backreferences, lookaround, repetition over 1000)."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    import re2  # google-re2; ~10 ms: only values with a pattern pay for it

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own copy of the error on stderr
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"regular expression not supported by RE2 (linear-time matching: no backreferences "
                         f"or lookaround, repetitions up to 1000): {reason}") from None


def coerce(param: Parameter, raw: Any) -> Any:
    """`raw` (text from the CLI or a typed YAML value) as the parameter's type; ValueError says why not."""
    _check_text(param, raw)
    value = _convert(param, raw)
    _check_constraints(param, value)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(param: Parameter, value: Any) -> None:
    """Bytes that are not UTF-8 (read from argv or the environment as lone surrogates) have no text form
    Ansible could receive literally: refused rather than altered, before any type check could word the
    refusal differently."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and _SURROGATE.search(item):
            raise ValueError(f"{_show(param, item)} is not valid UTF-8 text")


def _convert(param: Parameter, raw: Any) -> Any:
    kind = param.type
    if kind in ("string", "secret"):
        if isinstance(raw, (dict, list)) or raw is None:
            raise ValueError(f"{_show(param, raw)} is not a string")
        return str(raw)
    if kind == "integer":
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"{_show(param, raw)} is not an integer")
        try:
            return int(str(raw).strip()) if not isinstance(raw, float) else int(raw)
        except ValueError:
            raise ValueError(f"{_show(param, raw)} is not an integer") from None
    if kind == "number":
        if isinstance(raw, bool):
            raise ValueError(f"{_show(param, raw)} is not a number")
        try:
            number = float(str(raw).strip())
        except ValueError:
            raise ValueError(f"{_show(param, raw)} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{_show(param, raw)} is not a number")
        return int(number) if number.is_integer() and not isinstance(raw, float) else number
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{_show(param, raw)} is not a boolean (use true or false)")
    if kind == "choice":
        for choice in param.choices:
            if raw == choice or str(raw) == str(choice):
                return choice
        raise ValueError(f"{_show(param, raw)} is not one of {', '.join(map(str, param.choices))}")
    if kind == "list":
        if isinstance(raw, (list, tuple)):
            return [str(item) for item in raw]
        text = str(raw).strip()
        if text.startswith("["):
            try:
                items = load_data(text, "-p")
            except YamlRefused as exc:
                raise ValueError(f"{_show(param, raw)} is not a list: {exc.problem.message}") from None
            if not isinstance(items, list) or not all(isinstance(i, (str, int, float, bool)) for i in items):
                raise ValueError(f"{_show(param, raw)} is not a list of values")
            return [str(item) for item in items]
        return [item.strip() for item in text.split(",") if item.strip()]
    raise ValueError(f"unknown parameter type {kind!r}")


def _check_constraints(param: Parameter, value: Any) -> None:
    if param.secret and 0 < len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"{REDACTED} is too short: a secret needs at least {MIN_SECRET_LENGTH} characters "
                         "(the minimum length), a shorter one cannot be scrubbed from output safely")
    items = value if isinstance(value, list) else [value]
    if param.pattern is not None and param.type in ("string", "secret", "list"):
        regex = compile_pattern(param.pattern)
        for item in items:
            if not regex.fullmatch(str(item)):
                raise ValueError(f"{_show(param, item)} does not match the pattern {param.pattern}")
    measure: float | None = None
    what = "value"
    if param.type in ("integer", "number"):
        measure = value
    elif param.type in ("string", "list"):
        measure, what = len(value), "length"
    if measure is not None and param.min is not None and measure < param.min:
        raise ValueError(f"{_show(param, value)}: {what} {measure} is below the minimum {_num(param.min)}")
    if measure is not None and param.max is not None and measure > param.max:
        raise ValueError(f"{_show(param, value)}: {what} {measure} is above the maximum {_num(param.max)}")


def _show(param: Parameter, raw: Any) -> str:
    if param.secret:
        return REDACTED
    text = repr(raw)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _num(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`-p k=v` arguments as a mapping; a pair without `=` is a usage error."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p {pair!r}: expected NAME=VALUE")
        values[key.strip()] = value
    return values


def read_params_file(path: Path) -> dict[str, Any]:
    try:
        raw = read_limited(path)
    except OSError as exc:
        raise UsageError(f"--params-file {path}: {exc.strerror}") from None
    try:
        data = load_data(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        raise InvalidError(f"--params-file {path}: not UTF-8 text") from None
    except YamlRefused as exc:
        raise InvalidError(f"--params-file {path}: invalid", (exc.problem,)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidError(f"--params-file {path}: expected a mapping of parameter names to values")
    return {str(k): v for k, v in data.items()}


def resolve(
    runbook: Runbook,
    cli_values: Mapping[str, str],
    file_values: Mapping[str, Any],
    environ: MutableMapping[str, str] | None = None,
    prompt_secret: Any = None,
    display: str | None = None,
) -> ResolvedParams:
    """Every parameter's value, validated; all problems reported at once (exit 3, nothing run).

    Precedence: -p, then --params-file, then the `env:` variable, then the default. Secret values
    read from the environment are removed from it so no child process inherits them.
    """
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    file = display or str(runbook.path)
    for name in list(cli_values) + [n for n in file_values if n not in cli_values]:
        if runbook.parameter(name) is None:
            known = ", ".join(p.name for p in runbook.parameters) or "none"
            problems.append(Problem(file, None, f"parameters.{name}", f"unknown parameter (known: {known})"))
    values: dict[str, Any] = {}
    for param in runbook.parameters:
        where = f"parameters.{param.name}"
        if param.secret and param.name in cli_values:
            problems.append(Problem(file, param.line, where, _SECRET_ON_CLI.format(env=param.env or "its env variable")))
            continue
        raw, found = _lookup(param, cli_values, file_values, environ)
        if not found and param.secret and param.required and prompt_secret is not None:
            raw, found = prompt_secret(param), True
        if not found:
            if param.required:
                problems.append(Problem(file, param.line, where, "required parameter has no value" + _hint(param)))
            values[param.name] = None
            continue
        try:
            values[param.name] = coerce(param, raw)
        except ValueError as exc:
            problems.append(Problem(file, param.line, where, str(exc)))
    if problems:
        raise InvalidError("invalid parameters: nothing was run", tuple(problems))
    secrets = frozenset(p.name for p in runbook.parameters if p.secret)
    resolved = ResolvedParams(values, secrets)
    forget_secrets(environ, [p.env for p in runbook.parameters if p.secret and p.env], resolved.secret_values)
    return resolved


# Never removed for holding a secret's value: what runbook and its children need to work at all.
_KEPT_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TERM", "LANG", "PWD")


def forget_secrets(environ: MutableMapping[str, str], names: list[str], values: tuple[str, ...]) -> None:
    """Remove the secrets' own `env:` variables from `environ` (runbook's own environment: no child,
    ssh, git or webhook call inherits them), and any other variable whose whole value is a secret. A
    variable that merely contains a secret is never edited, nor are the control variables above."""
    for name in names:
        environ.pop(name, None)
    for name, value in list(environ.items()):
        if value in values and name not in _KEPT_VARIABLES and not name.startswith("RUNBOOK_"):
            del environ[name]


_SECRET_ON_CLI = (
    "a secret cannot be given with -p: it would show in the process list; "
    "set {env}, use --params-file, or run on a terminal to be asked"
)


def _lookup(
    param: Parameter, cli: Mapping[str, str], file: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Any, bool]:
    if param.name in cli:
        return cli[param.name], True
    if param.name in file:
        return file[param.name], True
    if param.env and param.env in environ:
        return environ[param.env], True
    if param.default is not None:
        return param.default, True
    return None, False


def _hint(param: Parameter) -> str:
    how = f"-p {param.name}=..." if not param.secret else "--params-file"
    return f" (give it with {how}" + (f" or the {param.env} environment variable)" if param.env else ")")

