"""The reader's language: `ja` or `en`. RUNBOOK_LANG, else runbook.toml's `[ui] lang`, else the locale
(LC_ALL, LC_MESSAGES, LANG: `ja_JP.UTF-8` is ja), else en. The one place it is decided."""
from __future__ import annotations

import os

_CONFIGURED: str | None = None  # runbook.toml's [ui] lang, set when the workspace is opened


def configure(lang: str | None) -> None:
    global _CONFIGURED
    _CONFIGURED = lang


def language() -> str:
    """`ja` or `en`, as described above; an unknown RUNBOOK_LANG value falls through to the next source."""
    chosen = _known(os.environ.get("RUNBOOK_LANG", ""))
    if chosen:
        return chosen
    if _CONFIGURED:
        return _CONFIGURED
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:  # the first one set decides, as the C library does
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


def _known(value: str) -> str | None:
    value = value.strip().lower()
    if value.startswith("ja"):
        return "ja"
    if value.startswith("en"):
        return "en"
    return None
