"""Sandboxed Jinja2 over `params`: step `vars:` and `when:` conditions. Imported only by commands that run."""
from __future__ import annotations

import functools
from typing import Any, Mapping

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


@functools.cache
def _env() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


MAX_EXPRESSION = 2000  # characters of a `when:` or a `vars:` template: Jinja's parser recurses per level


def expression_error(expression: str) -> str | None:
    return _compile_error(expression, lambda: _env().compile_expression(expression))


def template_error(template: str) -> str | None:
    return _compile_error(template, lambda: _env().from_string(template))


def _compile_error(text: str, compile_: Any) -> str | None:
    if len(text) > MAX_EXPRESSION:
        return f"expression too long ({len(text)} characters; at most {MAX_EXPRESSION})"
    try:
        compile_()
    except TemplateError as exc:
        return f"invalid expression: {exc}"
    except (RecursionError, MemoryError):
        return "expression nested too deeply"
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
