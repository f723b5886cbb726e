"""Scrub known secret values from everything a run keeps or prints."""
from __future__ import annotations

import json
from typing import Iterable

from runner.definition.params import REDACTED


class Scrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for value in secrets:
            if not value:
                continue
            forms.add(value)
            forms.add(json.dumps(value)[1:-1])  # as it appears inside JSON strings
            forms.add(json.dumps(json.dumps(value))[1:-1][2:-2])  # JSON inside JSON (event payloads)
        self._forms = sorted((f for f in forms if f), key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text
