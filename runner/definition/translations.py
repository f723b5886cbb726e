"""A runbook's `translations:` (`{ja: {title, description, parameters: {NAME: {description}}, steps: {STEP:
{description, manual, checklist}}}}`): checked against the runbook, and applied for a reader of that
language, each text falling back on the original where no translation is given."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from runner.definition.model import Runbook, Step
from runner.definition.yamlfile import KeyPath
from runner.errors import Problem


def translation_problems(data: dict[str, Any], problem: Callable[[KeyPath, str], Problem]) -> list[Problem]:
    """Translations must name parameters and steps the runbook has, and keep each checklist's length."""
    translations = data.get("translations")
    if not isinstance(translations, dict):
        return []
    params: dict[str, Any] = data["parameters"] if isinstance(data.get("parameters"), dict) else {}
    steps = {s.get("name"): s for section in ("steps", "on_failure") for s in _list(data.get(section)) if isinstance(s, dict)}
    problems = []
    for lang, texts in translations.items():
        where: KeyPath = ("translations", lang)
        for name in (texts.get("parameters") or {}) if isinstance(texts, dict) else ():
            if name not in params:
                problems.append(problem(where + ("parameters", name), "the runbook has no such parameter"))
        for name, step in ((texts.get("steps") or {}) if isinstance(texts, dict) else {}).items():
            problems += _step_problems(where + ("steps", name), steps.get(name), step, problem)
    return problems


def _step_problems(where: KeyPath, original: dict[str, Any] | None, step: Any,
                   problem: Callable[[KeyPath, str], Problem]) -> list[Problem]:
    if original is None:
        return [problem(where, "the runbook has no such step")]
    if not isinstance(step, dict):
        return []
    found = []
    if "manual" in step and "manual" not in original:
        found.append(problem(where + ("manual",), "the step has no `manual:` text to translate"))
    checklist = step.get("checklist")
    if isinstance(checklist, list) and len(checklist) != len(_list(original.get("checklist"))):
        found.append(problem(where + ("checklist",), f"has {len(checklist)} item(s); the step's checklist has "
                                                      f"{len(_list(original.get('checklist')))}: translate each, in order"))
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def localized(rb: Runbook, lang: str) -> Runbook:
    """`rb` with its texts in `lang` where the runbook translates them; itself otherwise."""
    texts = rb.translations.get(lang)
    if not texts:
        return rb
    params = texts.get("parameters") or {}
    steps = texts.get("steps") or {}
    return dataclasses.replace(
        rb, title=texts.get("title") or rb.title, description=texts.get("description", rb.description),
        parameters=tuple(dataclasses.replace(p, description=(params.get(p.name) or {}).get("description", p.description))
                         for p in rb.parameters),
        steps=tuple(_step(s, steps.get(s.name)) for s in rb.steps),
        on_failure=tuple(_step(s, steps.get(s.name)) for s in rb.on_failure))


def _step(step: Step, texts: dict[str, Any] | None) -> Step:
    if not texts:
        return step
    return dataclasses.replace(step, description=texts.get("description", step.description),
                               manual=texts.get("manual", step.manual),
                               checklist=tuple(texts.get("checklist", step.checklist)))
