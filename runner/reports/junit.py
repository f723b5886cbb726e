"""A run as JUnit XML for CI systems: a suite per step, a test case per host and task; failed tasks
are failures with the task's message, unreachable hosts errors, skipped tasks skipped."""
from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

from runner.store.records import RunRecord, StepRecord, iso

_RESULTS = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
            "runner_on_unreachable": "unreachable"}


def task_results(folder: Path) -> Iterator[dict[str, Any]]:
    """One dict per host and task from a step's events: host, task, outcome, message, duration, attempt."""
    path = folder / "events.jsonl.gz"
    if not path.exists():
        return
    attempt = 0
    with gzip.open(path, "rt", encoding="utf-8") as events:
        for line in events:
            event = json.loads(line)
            kind = event.get("event", "")
            if kind == "playbook_on_start":
                attempt += 1
            outcome = _RESULTS.get(kind)
            if outcome is None:
                continue
            data = event.get("event_data") or {}
            res = data.get("res") or {}
            if outcome == "failed" and data.get("ignore_errors"):
                outcome = "ok"
            yield {
                "host": data.get("host", ""), "task": data.get("task", ""), "outcome": outcome,
                "message": str(res.get("msg") or res.get("stderr") or res.get("reason") or ""),
                "duration": float(data.get("duration") or 0), "attempt": max(attempt, 1),
                "output": event.get("stdout") or "",
            }


def junit_xml(record: RunRecord, run_dir: Path) -> str:
    root = ET.Element("testsuites", name=f"runbook {record.runbook} {record.version}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for step in record.steps:
        suite = _suite(record, step, run_dir)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{record.duration or 0:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(record: RunRecord, step: StepRecord, run_dir: Path) -> ET.Element:
    name = f"{step.index + 1:02d} {step.name}" + (" (on_failure)" if step.handler else "")
    suite = ET.Element("testsuite", name=name, timestamp=iso(step.started_at) or "",
                       time=f"{(step.ended_at or 0) - (step.started_at or 0):.3f}" if step.started_at else "0")
    cases = list(_playbook_cases(record, step, run_dir)) if step.type == "playbook" else []
    if not cases:
        cases = [_step_case(record, step)]
    counts = {"tests": len(cases), "failures": 0, "errors": 0, "skipped": 0}
    for case in cases:
        for child, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            counts[key] += case.find(child) is not None
        suite.append(case)
    for key, value in counts.items():
        suite.set(key, str(value))
    results = [f"{host}: {line}" for host, r in sorted(step.hosts.items()) for line in r.summary.splitlines()]
    if results:  # what the playbook said of each host (runbook_summary), where CI shows a suite's output
        ET.SubElement(suite, "system-out").text = "\n".join(results)
    return suite


def _playbook_cases(record: RunRecord, step: StepRecord, run_dir: Path) -> Iterator[ET.Element]:
    for result in task_results(step.folder(run_dir)):
        task = result["task"] + (f" (attempt {result['attempt']})" if result["attempt"] > 1 else "")
        case = ET.Element("testcase", classname=f"{record.runbook}.{step.name}.{result['host']}", name=task,
                          time=f"{result['duration']:.3f}")
        message = result["message"].splitlines()[0][:500] if result["message"] else result["outcome"]
        if result["outcome"] == "failed":
            ET.SubElement(case, "failure", message=message, type="failed").text = result["output"]
        elif result["outcome"] == "unreachable":
            ET.SubElement(case, "error", message=message, type="unreachable").text = result["output"]
        elif result["outcome"] == "skipped":
            ET.SubElement(case, "skipped", message="skipped")
        yield case


def _step_case(record: RunRecord, step: StepRecord) -> ET.Element:
    """A manual step, an approval, or a step that produced no task results (never ran, or broke early)."""
    case = ET.Element("testcase", classname=f"{record.runbook}.{step.name}", name=f"{step.name} ({step.type})")
    message = step.message or step.status
    if step.status == "failed":
        ET.SubElement(case, "failure", message=message, type=step.type)
    elif step.status in ("timed_out", "canceled", "aborted"):
        ET.SubElement(case, "error", message=message, type=step.status)
    elif step.status in ("pending", "skipped", "waiting"):
        ET.SubElement(case, "skipped", message=f"{step.status}: {step.message}" if step.message else step.status)
    if step.signoffs:
        ET.SubElement(case, "system-out").text = "\n".join(
            f"{s.decision} by {s.who} at {iso(s.at)}" + (f": {s.item}" if s.item else "") + (f" ({s.note})" if s.note else "")
            for s in step.signoffs)
    return case
