"""Sandboxed Jinja2 over `params`: step `vars:` and `when:` conditions. Imported only by commands that run."""
from __future__ import annotations

import functools
from typing import Any, Mapping

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


@functools.cache
def _env() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def expression_error(expression: str) -> str | None:
    try:
        _env().compile_expression(expression)
    except TemplateError as exc:
        return f"invalid expression: {exc}"
    return None


def evaluate(expression: str, params: Mapping[str, Any]) -> bool:
    return bool(_env().compile_expression(expression)(params=dict(params)))


def render(value: Any, params: Mapping[str, Any]) -> Any:
    """`value` with every string rendered as a template over `params`, structure kept."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        return _env().from_string(value).render(params=dict(params))
    if isinstance(value, Mapping):
        return {k: render(v, params) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(v, params) for v in value]
    return value
