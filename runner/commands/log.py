from __future__ import annotations

import gzip
import json
import sys
import time
import unicodedata
from pathlib import Path
from typing import Iterator

from runner.errors import UsageError
from runner.store.records import RunRecord, StepRecord
from runner.times import human_time
from runner.store.backends import open_store
from runner.store.base import Store
from runner.definition.workspace import Workspace

_LIVE = ("running",)


def show_log(ws: Workspace, ref: str, step: str | None, host: str | None, follow: bool, data: bool = False) -> int:
    store = open_store(ws)
    run_id = store.resolve(ref)
    record = store.load(run_id)
    steps = _select(record, step)
    if follow:
        return _follow(store, run_id, step, host)
    print(f"-- run {record.id} {record.runbook}: started {human_time(record.started_at)}", file=sys.stderr)
    for item in steps:
        if data:
            _print_data(item, host)
        else:
            _print_step(store, record, item, host)
    print(f"-- run {record.id}: {record.status} (exit {record.exit_code})", file=sys.stderr)
    return 0


def _select(record: RunRecord, step: str | None) -> list[StepRecord]:
    if step is None:
        return list(record.steps)
    wanted = unicodedata.normalize("NFC", step)  # a name typed in Japanese may arrive decomposed
    chosen = [s for s in record.steps if unicodedata.normalize("NFC", s.name) == wanted or str(s.index + 1) == step]
    if not chosen:
        names = ", ".join(s.name for s in record.steps)
        raise UsageError(f"run {record.id} has no step {step!r} (steps: {names})")
    return chosen


def _print_data(step: StepRecord, host: str | None) -> None:
    """What the step recorded besides its output: sign-offs and its step data (set_stats), as YAML."""
    from runner.reports.values import human_block

    print(f"== step {step.index + 1} {step.name} ({step.type}): {step.status}")
    for signoff in step.signoffs:
        print(f"   {signoff.decision} by {signoff.who} at {human_time(signoff.at)}"
              + (f": {signoff.item}" if signoff.item else "") + (f" ({signoff.note})" if signoff.note else ""))
    _print_summaries(step, host)
    data = step.data
    if host is not None:  # the usual shape is {key: {host: value}}: keep that host's part
        data = {k: {host: v[host]} for k, v in data.items() if isinstance(v, dict) and host in v}
    if data:
        print("\n".join(f"   {line}" for line in human_block(data).splitlines()))
    elif not step.signoffs and not _summaries(step, host):
        print("   (no step data)")


def _summaries(step: StepRecord, host: str | None) -> list[str]:
    """The playbook's per-host summary lines (runbook_summary), `host: line`."""
    return [f"{name}: {line}" for name, result in sorted(step.hosts.items()) if host in (None, name)
            for line in result.summary.splitlines()]


def _print_summaries(step: StepRecord, host: str | None, heading: str = "") -> None:
    lines = _summaries(step, host)
    if lines and heading:
        print(heading)
    for line in lines:
        print(f"   {line}")


def _print_step(store: Store, record: RunRecord, step: StepRecord, host: str | None) -> None:
    kind = f"{step.type} on {step.strategy}" if step.strategy else step.type
    print(f"== step {step.index + 1} {step.name} ({kind}): {step.status}"
          + (f" - {step.message}" if step.message else ""))
    for signoff in step.signoffs:
        print(f"   {signoff.decision} by {signoff.who} at {human_time(signoff.at)}"
              + (f": {signoff.item}" if signoff.item else "") + (f" ({signoff.note})" if signoff.note else ""))
    folder = step.folder(store.run_dir(record.id))
    if host is None:
        path = folder / "stdout"
        if path.exists():
            sys.stdout.write(path.read_text(encoding="utf-8", errors="replace"))
        _print_summaries(step, host, "-- summary")
        return
    for line in host_lines(folder, host):
        print(line)
    result = step.hosts.get(host)
    if result:
        print(f"-- {host}: ok={result.ok} changed={result.changed} failed={result.failed} "
              f"unreachable={result.unreachable} skipped={result.skipped}" + (f": {result.message}" if result.message else ""))
        _print_summaries(step, host)


def host_lines(folder: Path, host: str) -> Iterator[str]:
    """The recorded output of one host: its task results, with the task headers that frame them."""
    path = folder / "events.jsonl.gz"
    if not path.exists():
        return
    task_header = ""
    with gzip.open(path, "rt", encoding="utf-8") as events:
        for line in events:
            event = json.loads(line)
            data = event.get("event_data") or {}
            if event.get("event") == "playbook_on_task_start":
                task_header = event.get("stdout") or ""
            elif data.get("host") == host and event.get("stdout") and event.get("event", "").startswith("runner_on"):
                if task_header:
                    yield task_header.strip("\r\n")
                    task_header = ""
                yield event["stdout"].strip("\r\n")


def _follow(store: Store, run_id: str, step: str | None, host: str | None) -> int:
    """Print output as it is written until the run leaves `running`."""
    offsets: dict[Path, int] = {}
    while True:
        record = store.load(run_id)
        for item in _select(record, step):
            path = item.folder(store.run_dir(record.id)) / "stdout"
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(offsets.get(path, 0))
                chunk = handle.read()
                offsets[path] = handle.tell()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
        if record.status not in _LIVE:
            print(f"-- run {record.id}: {record.status} (exit {record.exit_code})", file=sys.stderr)
            return 0
        time.sleep(0.5)
        store.reap_dead_runs()
