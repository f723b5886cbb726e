"""`triggers:` entries of a runbook file: which alerts start it and how their fields become parameters.
Checked when the file loads (patterns, parameters); the hook names are checked against runbook.toml by
`validate` (commands/validate.py), which knows the workspace."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

from runner.definition.model import Trigger
from runner.definition.params import compile_pattern
from runner.definition.yamlfile import Document, KeyPath
from runner.errors import Problem

DEFAULT_LIMIT = "labels.instance"


def trigger_problems(doc: Document, where: KeyPath, entry: dict[str, Any], params: dict[str, Any],
                     check_value: Any) -> list[Problem]:
    """Bad match patterns, unknown or secret parameters, literal values their parameter refuses."""
    problems: list[Problem] = []
    match: dict[str, Any] = entry["match"] if isinstance(entry.get("match"), dict) else {}
    for label, value in match.items():
        if isinstance(value, str) and value.startswith("~"):
            try:
                compile_pattern(value[1:])
            except ValueError as exc:
                problems.append(doc.problem(where + ("match", label), str(exc)))
    for key in ("from_alert", "params"):
        names: dict[str, Any] = entry[key] if isinstance(entry.get(key), dict) else {}
        for name, value in names.items():
            spec = params.get(name)
            if not isinstance(spec, dict):
                known = ", ".join(params) or "none"
                problems.append(doc.problem(where + (key, name), f"unknown parameter (known: {known})"))
            elif spec.get("type") == "secret":
                problems.append(doc.problem(where + (key, name), "a secret never comes from an alert or a runbook file: use env:"))
            elif key == "params":
                problem = check_value(str(name), spec, value)
                if problem:
                    problems.append(doc.problem(where + (key, name), problem))
    given = {**(entry.get("from_alert") or {}), **(entry.get("params") or {})} if _tables(entry) else {}
    for name, spec in params.items():
        if isinstance(spec, dict) and spec.get("required") and "default" not in spec and not spec.get("env") \
                and name not in given:
            problems.append(doc.problem(where, f"required parameter {name!r} gets no value: "
                                               f"add it to from_alert or params"))
    return problems


def _tables(entry: dict[str, Any]) -> bool:
    return all(isinstance(entry.get(k, {}), dict) for k in ("from_alert", "params"))


def build_trigger(doc: Document, where: KeyPath, entry: dict[str, Any]) -> Trigger:
    limit = entry.get("limit")
    if isinstance(limit, str) and not limit.startswith(("labels.", "annotations.")):
        limit = f"labels.{limit}"  # `limit: host` names a label
    return Trigger(
        hook=entry["hook"],
        match=MappingProxyType({str(k): str(v) for k, v in entry.get("match", {}).items()}),
        from_alert=MappingProxyType(dict(entry.get("from_alert", {}))),
        params=MappingProxyType(dict(entry.get("params", {}))),
        limit=limit,
        max_runs_per_hour=int(entry.get("max_runs_per_hour", 10)),
        line=doc.lines.get(where),
    )
