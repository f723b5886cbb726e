"""Runbook files -> validated, frozen `Runbook` objects; every problem with file, line and key path."""
from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

from runner.definition.durations import parse_duration
from runner.errors import InvalidError, Problem
from runner.definition.translations import translation_problems
from runner.definition.names import STEP_NAME, is_step_name
from runner.definition.model import Approval, Parameter, Rollout, Runbook, Schedule, Step
from runner.definition.params import coerce, compile_pattern
from runner.definition.triggers import build_trigger, trigger_problems
from runner.definition.yamlfile import Document, KeyPath, format_path, load_document, read_limited

SCHEMA_PATH = Path(__file__).parent.parent / "schema" / "runbook.schema.json"
# Part of the validation cache's key: change it when the checks change, so a file an older loader
# accepted (a cron that never fires, an RE2-less pattern) is checked again.
CHECKS_VERSION = "3"
_STEP_TYPES = ("playbook", "manual", "approval")


@functools.cache
def _validator() -> Any:
    import jsonschema  # costs ~70 ms: only commands that validate pay for it

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def load_runbook(path: Path, display: str | None = None, cache: Path | None = None) -> Runbook:
    """The runbook at `path`, or InvalidError listing every problem in it."""
    runbook, problems = check_runbook(path, display, cache)
    if problems or runbook is None:
        raise InvalidError(f"{display or path}: invalid runbook: nothing was run", tuple(problems))
    return runbook


def _cache_key(raw: bytes, path: Path) -> str:
    """Identifies one validation: the file's bytes, its name and this loader's schema and version."""
    from runner import __version__

    digest = hashlib.sha256(raw)
    for part in (path.stem, __version__, CHECKS_VERSION):
        digest.update(b"\0" + part.encode())
    digest.update(SCHEMA_PATH.read_bytes())
    return digest.hexdigest()


def load_valid(paths: list[Path], display: Callable[[Path], str]) -> tuple[list[Runbook], list[Problem]]:
    """The runbooks that validate, and the problems of those that do not: one bad file blinds nothing."""
    runbooks: list[Runbook] = []
    problems: list[Problem] = []
    for path in paths:
        runbook, found = check_runbook(path, display(path))
        problems += found
        if runbook is not None:
            runbooks.append(runbook)
    return runbooks, problems


def check_runbook(
    path: Path, display: str | None = None, cache: Path | None = None
) -> tuple[Runbook | None, list[Problem]]:
    """Load and validate `path`. With `cache` (a folder), a file validated before by this same loader
    skips the schema and semantic checks: the result only depends on what the key covers."""
    filename = display or str(path)
    try:
        raw = read_limited(path)
    except OSError as exc:
        return None, [Problem(filename, None, "", f"cannot read: {exc.strerror}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, [Problem(filename, None, "", "not UTF-8 text")]
    doc, problems = load_document(text, filename)
    if doc is None:
        return None, problems
    if not isinstance(doc.data, dict):
        return None, problems + [doc.problem((), "a runbook is a mapping of keys (apiVersion, name, steps...)")]
    marker = cache / _cache_key(raw, path) if cache is not None else None
    if marker is None or not marker.exists():
        problems += _schema_problems(doc)
        problems += _semantic_problems(doc, path)
        problems.sort(key=lambda p: (p.line or 0, p.path))
    if problems:
        return None, problems
    if marker is not None and not marker.exists():
        from runner.store.files import make_private_dir

        make_private_dir(marker.parent)
        marker.touch(mode=0o600)
    return _build(doc, path, hashlib.sha256(raw).hexdigest()), []


def _schema_problems(doc: Document) -> list[Problem]:
    from jsonschema.exceptions import best_match

    problems = []
    for error in _validator().iter_errors(doc.data):
        if error.context:
            error = best_match(error.context) if error.validator != "oneOf" or "x-message" not in error.schema else error
        problems.extend(_describe(doc, error))
    return problems


def _describe(doc: Document, error: Any) -> list[Problem]:
    path: KeyPath = tuple(error.absolute_path)
    schema = error.schema
    if error.validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = [k for k in error.instance if k not in schema.get("properties", {})]
        return [doc.problem(path + (k,), "unknown key" + _suggest(k, known)) for k in extra]
    if "propertyNames" in error.absolute_schema_path:
        path = path + (str(error.instance),)
    if "x-message" in schema:
        return [doc.problem(path, f"{error.instance!r} {schema['x-message']}")]
    if error.validator == "const":
        return [doc.problem(path, f"{error.instance!r} must be {schema['const']!r}")]
    if error.validator == "enum":
        return [doc.problem(path, f"{error.instance!r} is not one of: {', '.join(map(str, schema['enum']))}")]
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        return [doc.problem(path, f"missing required key {missing[0]!r}" if missing else error.message)]
    return [doc.problem(path, error.message)]


def _suggest(word: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(known)})"


def _semantic_problems(doc: Document, path: Path) -> list[Problem]:
    data = doc.data
    problems: list[Problem] = []
    if isinstance(data.get("name"), str) and data["name"] != path.stem:
        problems.append(doc.problem(("name",), f"{data['name']!r} must equal the file name {path.stem!r}"))
    params = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    for name, spec in params.items():
        if isinstance(spec, dict):
            problems += _parameter_problems(doc, str(name), spec)
    names: dict[str, KeyPath] = {}
    for section in ("steps", "on_failure"):
        steps = data.get(section)
        for index, step in enumerate(steps if isinstance(steps, list) else []):
            if isinstance(step, dict):
                problems += _step_problems(doc, (section, index), step, names)
    schedules = data.get("schedule")
    for index, entry in enumerate(schedules if isinstance(schedules, list) else []):
        if isinstance(entry, dict):
            problems += _schedule_problems(doc, ("schedule", index), entry, params)
    triggers = data.get("triggers")
    for index, entry in enumerate(triggers if isinstance(triggers, list) else []):
        if isinstance(entry, dict):
            problems += trigger_problems(doc, ("triggers", index), entry, params, _value_problem)
    return problems + translation_problems(data, doc.problem)


def _value_problem(name: str, spec: dict[str, Any], value: Any) -> str | None:
    """Why the parameter `spec` refuses `value`, or None (also when the schema already refused the spec)."""
    if not _checkable(spec):
        return None
    try:
        coerce(_parameter(name, spec, None), value)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _parameter_problems(doc: Document, name: str, spec: dict[str, Any]) -> list[Problem]:
    where: KeyPath = ("parameters", name)
    problems = []
    if isinstance(spec.get("pattern"), str):
        try:
            compile_pattern(spec["pattern"])
        except ValueError as exc:
            problems.append(doc.problem(where + ("pattern",), str(exc)))
            return problems
    if spec.get("type") == "secret" and "default" in spec:
        problems.append(doc.problem(where + ("default",), "a secret has no default: give it with env: or --params-file"))
    elif "default" in spec and _checkable(spec):
        try:
            coerce(_parameter(name, spec, None), spec["default"])
        except (ValueError, TypeError) as exc:
            problems.append(doc.problem(where + ("default",), f"default {exc}"))
    if isinstance(spec.get("min"), (int, float)) and isinstance(spec.get("max"), (int, float)) and spec["min"] > spec["max"]:
        problems.append(doc.problem(where + ("min",), "min is greater than max"))
    if "choices" in spec and spec.get("type") != "choice":
        problems.append(doc.problem(where + ("choices",), "choices belong to type: choice"))
    return problems


def _checkable(spec: dict[str, Any]) -> bool:
    """Whether values can be checked against `spec`: not when the schema already refused its type or choices."""
    if spec.get("type") == "choice":
        return isinstance(spec.get("choices"), list) and bool(spec["choices"])
    return spec.get("type") in ("string", "integer", "number", "boolean", "list")


def _step_problems(doc: Document, where: KeyPath, step: dict[str, Any], names: dict[str, KeyPath]) -> list[Problem]:
    problems = []
    kinds = [k for k in _STEP_TYPES if k in step]
    if len(kinds) != 1:
        what = "none" if not kinds else " and ".join(kinds)
        problems.append(doc.problem(where, f"a step has exactly one of playbook, manual, approval (found {what})"))
    kind = kinds[0] if len(kinds) == 1 else None
    for key, needs in (("checklist", "manual"), ("vars", "playbook"), ("retries", "playbook"), ("worker", "playbook")):
        if key in step and kind != needs:
            problems.append(doc.problem(where + (key,), f"{key} belongs to {needs} steps"))
    if isinstance(step.get("playbook"), str):
        problem = playbook_name_problem(step["playbook"])
        if problem:
            problems.append(doc.problem(where + ("playbook",), problem))
    name = step.get("name")
    if isinstance(name, str):
        if STEP_NAME.fullmatch(name) and not is_step_name(name):  # the schema's pattern lets control characters by
            problems.append(doc.problem(where + ("name",), f"{name!r} is not a step name (printable characters only)"))
        if name in names:
            problems.append(doc.problem(where + ("name",), f"duplicate step name {name!r}"))
        names[name] = where
    if isinstance(step.get("when"), str):
        problems += _expression_problems(doc, where + ("when",), step["when"])
    if isinstance(step.get("vars"), dict):
        problems += _template_problems(doc, where + ("vars",), step["vars"])
    return problems


def playbook_name_problem(name: str) -> str | None:
    """Why `name` may not be a playbook reference (absolute, or escaping playbooks/), or None."""
    pure = Path(name)
    if pure.is_absolute() or ".." in pure.parts:
        return f"{name!r} escapes playbooks/: give a path inside the workspace's playbooks/ folder"
    if pure.suffix not in (".yml", ".yaml"):
        return f"{name!r} is not a playbook file (.yml or .yaml)"
    return None


def _expression_problems(doc: Document, where: KeyPath, expression: str) -> list[Problem]:
    from runner.definition.templating import expression_error

    error = expression_error(expression)
    return [doc.problem(where, error)] if error else []


def _template_problems(doc: Document, where: KeyPath, value: Any) -> list[Problem]:
    """Each string of a step's `vars:` that is a template and cannot be compiled (run time would fail)."""
    from runner.definition.templating import template_error

    if isinstance(value, str):
        error = template_error(value) if "{{" in value or "{%" in value or "{#" in value else None
        return [doc.problem(where, error)] if error else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for key, item in items for p in _template_problems(doc, where + (key,), item)]


def _schedule_problems(doc: Document, where: KeyPath, entry: dict[str, Any], params: dict[str, Any]) -> list[Problem]:
    from runner.definition.cron import crontab_problem, parse_cron  # only runbooks with a schedule need it

    problems = _timing_problems(doc, where, entry)
    if isinstance(entry.get("cron"), str):
        try:
            parse_cron(entry["cron"])
        except ValueError as exc:
            problems.append(doc.problem(where + ("cron",), str(exc)))
    for key in ("inventory", "limit"):
        problem = crontab_problem(entry[key]) if isinstance(entry.get(key), str) else None
        if problem:
            problems.append(doc.problem(where + (key,), problem))
    raw_values = entry.get("params")
    values: dict[str, Any] = raw_values if isinstance(raw_values, dict) else {}
    for name, value in values.items():
        spec = params.get(name)
        problem = crontab_problem(value)
        if problem:
            problems.append(doc.problem(where + ("params", name), problem))
        elif not isinstance(spec, dict):
            problems.append(doc.problem(where + ("params", name), "unknown parameter"))
        elif spec.get("type") == "secret":
            problems.append(doc.problem(where + ("params", name), "a secret cannot be written in a schedule: use env:"))
        elif _checkable(spec):
            try:
                coerce(_parameter(str(name), spec, None), value)
            except (ValueError, TypeError) as exc:
                problems.append(doc.problem(where + ("params", name), str(exc)))
    return problems


_MONTHLY = {"first-business-day": 1, "last-business-day": -1}


def _schedule(entry: dict[str, Any]) -> Schedule:
    business_day = _MONTHLY.get(entry.get("monthly", ""), entry.get("business-day"))
    at = entry.get("at")
    cron = entry.get("cron") or f"{int(str(at)[3:5])} {int(str(at)[:2])} * * *"  # a monthly entry fires daily at `at`
    return Schedule(cron, MappingProxyType(dict(entry.get("params", {}))), entry.get("inventory"), entry.get("limit"),
                    entry.get("calendar"), entry.get("on_holiday", "skip"), business_day, at, entry.get("waits", False))


def _timing_problems(doc: Document, where: KeyPath, entry: dict[str, Any]) -> list[Problem]:
    """Exactly one of cron / monthly / business-day; a monthly entry needs `at` and a calendar; `at`
    and `on_holiday` only where they mean something."""
    given = [k for k in ("cron", "monthly", "business-day") if k in entry]
    if len(given) != 1:
        text = "give one of cron, monthly or business-day" if not given else f"{' and '.join(given)} exclude each other"
        return [doc.problem(where, text)]
    problems = []
    if given[0] == "cron":
        problems += [doc.problem(where + ("at",), "only a monthly or business-day entry has `at` (cron has its time)")] \
            if "at" in entry else []
    else:
        problems += [doc.problem(where, f"{given[0]} needs `at: \"HH:MM\"`")] if "at" not in entry else []
        problems += [doc.problem(where, f"{given[0]} needs `calendar:` (a [calendars.NAME] of runbook.toml)")] \
            if "calendar" not in entry else []
        problems += [doc.problem(where + ("on_holiday",), "a business-day entry is always on a business day")] \
            if "on_holiday" in entry else []
    if "on_holiday" in entry and "calendar" not in entry and given[0] == "cron":
        problems.append(doc.problem(where + ("on_holiday",), "needs `calendar:` (a [calendars.NAME] of runbook.toml)"))
    return problems


def _parameter(name: str, spec: dict[str, Any], line: int | None) -> Parameter:
    return Parameter(
        name=name,
        type=spec["type"],
        required=bool(spec.get("required", False)),
        default=spec.get("default"),
        pattern=spec.get("pattern"),
        min=spec.get("min"),
        max=spec.get("max"),
        choices=tuple(spec.get("choices", ())),
        env=spec.get("env"),
        description=spec.get("description", ""),
        line=line,
    )


def _step(doc: Document, where: KeyPath, data: dict[str, Any]) -> Step:
    kind = next(k for k in _STEP_TYPES if k in data)
    approval = data.get("approval")
    return Step(
        name=data["name"],
        type=kind,
        playbook=data.get("playbook"),
        vars=MappingProxyType(dict(data.get("vars", {}))),
        manual=data.get("manual"),
        checklist=tuple(data.get("checklist", ())),
        approval=Approval(approval["message"], approval.get("approvers", 1), tuple(approval.get("from", ())))
        if approval else None,
        timeout=parse_duration(data["timeout"]) if "timeout" in data else None,
        retries=data.get("retries", 0),
        when=data.get("when"),
        on_failure=data.get("on_failure", "abort"),
        description=data.get("description", ""),
        line=doc.lines.get(where),
        worker=data.get("worker"),
    )


def _build(doc: Document, path: Path, sha256: str) -> Runbook:
    d = doc.data
    rollout = d.get("rollout", {})
    return Runbook(
        path=path,
        sha256=sha256,
        name=d["name"],
        title=d["title"],
        version=d["version"],
        kind=d["kind"],
        maintenance_type=d.get("maintenance_type"),
        owner=d.get("owner", ""),
        contact=d.get("contact", ""),
        tags=tuple(d.get("tags", ())),
        description=d.get("description", ""),
        targets=d.get("targets", "all"),
        inventory=d.get("inventory"),
        max_hosts=d.get("max_hosts"),
        concurrency=d.get("concurrency", "exclusive"),
        lock=d.get("lock"),
        timeout=parse_duration(d["timeout"]) if "timeout" in d else None,
        rollout=Rollout(rollout.get("serial"), rollout.get("max_fail_percentage")),
        parameters=tuple(
            _parameter(n, s, doc.lines.get(("parameters", n))) for n, s in d.get("parameters", {}).items()
        ),
        steps=tuple(_step(doc, ("steps", i), s) for i, s in enumerate(d["steps"])),
        on_failure=tuple(_step(doc, ("on_failure", i), s) for i, s in enumerate(d.get("on_failure", []))),
        schedule=tuple(_schedule(s) for s in d.get("schedule", [])),
        triggers=tuple(build_trigger(doc, ("triggers", i), t) for i, t in enumerate(d.get("triggers", []))),
        accelerate=d.get("accelerate", True),
        translations=MappingProxyType(dict(d.get("translations", {}))),
        lines=MappingProxyType({format_path(k): v for k, v in doc.lines.items() if k}),
        worker=d.get("worker"),
    )
