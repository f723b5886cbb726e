"""The per-host summary a playbook hands the run: the fact `runbook_summary` (set_fact), a string or a
list of lines. The last value a host sets in a step is its summary for that step (README, "Runbook format")."""
from __future__ import annotations

from typing import Any, Callable

from runner.output import printable, shorten

FACT = "runbook_summary"
MAX_LINES = 20
MAX_WIDTH = 300


def summary_of(result: Any, scrub: Callable[[str], str]) -> str | None:
    """The summary a task result sets (in a loop, the last item's that does), or None if it sets none.
    `scrub` takes the secrets out of the text before anything cuts it (a cut secret is no longer found)."""
    if not isinstance(result, dict):
        return None
    value = _fact(result)
    for item in result.get("results") or []:
        value = _fact(item) if _fact(item) is not None else value
    return None if value is None else summary_text(value, scrub)


def _fact(result: Any) -> Any:
    facts = result.get("ansible_facts") if isinstance(result, dict) else None
    return facts.get(FACT) if isinstance(facts, dict) else None


def summary_text(value: Any, scrub: Callable[[str], str]) -> str:
    """At most MAX_LINES lines of MAX_WIDTH characters, each cut at a word; empty lines dropped. Control
    characters are kept written out (`\\x1b`), so no view (terminal, report, XML) ever receives one."""
    items = value if isinstance(value, (list, tuple)) else [value]
    lines = [line for item in items for line in scrub(str(item)).splitlines()]
    kept = [shorten(printable(line.replace("\t", " ").rstrip()), MAX_WIDTH) for line in lines if line.strip()]
    if len(kept) > MAX_LINES:
        kept = kept[:MAX_LINES - 1] + [f"({len(kept) - MAX_LINES + 1} more lines)"]
    return "\n".join(kept)
