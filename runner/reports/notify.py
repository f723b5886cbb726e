"""The [notify] webhook: a JSON POST (Slack-compatible `text` plus the run record) on chosen outcomes.
A notification that cannot be delivered is logged and never changes the run's outcome."""
from __future__ import annotations

import datetime as dt
import json
import sys
import urllib.request
from pathlib import Path

from runner.store.records import RunRecord
from runner.store.redact import Scrubber
from runner.store.files import make_private_dir, open_private
from runner.definition.workspace import Notify


def text_of(record: RunRecord) -> str:
    failed = sorted({h for s in record.steps for h in s.failed_hosts() + s.unreachable_hosts()})
    parts = [f"runbook {record.runbook} {record.version}: {record.status} (exit {record.exit_code})",
             f"run {record.id} by {record.operator} ({record.trigger}) on {record.limit}"]
    if failed:
        parts.append(f"failed hosts: {', '.join(failed)}")
    if record.message:
        parts.append(record.message)
    if record.ci_job_url:
        parts.append(record.ci_job_url)
    return "\n".join(parts)


def send(config: Notify, record: RunRecord, scrub: Scrubber, log_dir: Path) -> bool:
    """POST the notification if the outcome is chosen; False (and a log line) when it cannot be delivered."""
    if not config.webhook or record.status not in config.on:
        return True
    body = scrub.json({"text": text_of(record), "run": record.to_dict()}).encode()
    request = urllib.request.Request(config.webhook, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "runbook"})
    try:
        with urllib.request.urlopen(request, timeout=config.timeout) as response:
            response.read()
        return True
    except Exception as exc:  # noqa: BLE001 - any failure to deliver is logged, never raised
        _log(log_dir, f"run {record.id}: notification to {config.webhook} failed: {exc.__class__.__name__}: {exc}")
        return False


def _log(log_dir: Path, line: str) -> None:
    print(f"runbook: warning: {line}", file=sys.stderr)
    make_private_dir(log_dir)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open_private(log_dir / "notify.log") as handle:
        handle.write(f"{stamp} {line}\n")
