"""Results on screen: the per-host `runbook_summary` of a playbook on the terminal, in the record, the log and
every report; on_failure steps numbered apart; failure lines cut at a word; one way to write a time."""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import runbook

_INVENTORY = """\
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  hosts:
    h1: {}
    h2: {}
"""
_FIGURES = """\
- name: Figures
  hosts: all
  gather_facts: false
  tasks:
    - name: Say what was found
      ansible.builtin.set_fact:
        runbook_summary:
          - "{{ inventory_hostname }} disk 42% used: ok"
          - "token {{ token }} \\x1b[31mred"
"""
_BREAK = """\
- name: Break
  hosts: all
  gather_facts: false
  tasks:
    - name: Fail with a long message
      ansible.builtin.fail:
        msg: "{{ 'configured ' * 40 }}"
      when: inventory_hostname == 'h2'
"""
_UNDO = """\
- name: Undo
  hosts: all
  gather_facts: false
  tasks:
    - name: Undo
      ansible.builtin.set_fact:
        runbook_summary: rolled back
"""
_RUNBOOK = """\
apiVersion: runbook/v1
name: results
title: Results on screen
version: 1.0.0
kind: operation
owner: team
parameters:
  token: {type: secret, env: RESULTS_TOKEN}
steps:
  - name: figures
    playbook: figures.yml
  - name: break
    playbook: break.yml
  - name: never
    playbook: undo.yml
on_failure:
  - name: rollback
    playbook: undo.yml
"""
_PAUSED = """\
apiVersion: runbook/v1
name: paused
title: A step for people, then a result
version: 1.0.0
kind: operation
owner: team
steps:
  - name: look
    manual: Look at the dashboard.
  - name: undo
    playbook: undo.yml
"""
_SECRET = "s3cr3t-token-value"
_TOKYO = {"TZ": "Asia/Tokyo", "RESULTS_TOKEN": _SECRET}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for folder, files in {"inventories": {"local.yml": _INVENTORY},
                          "playbooks": {"figures.yml": _FIGURES, "break.yml": _BREAK, "undo.yml": _UNDO},
                          "runbooks": {"results.yml": _RUNBOOK, "paused.yml": _PAUSED}}.items():
        (root / folder).mkdir(parents=True)
        for name, text in files.items():
            (root / folder / name).write_text(text)
    return root


def test_summaries_on_screen_in_the_record_the_log_and_every_report(ws: Path, state_dir: Path, tmp_path: Path) -> None:
    done = runbook("run", "results", cwd=ws, env=_TOKYO)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    figures = lines.index(next(line for line in lines if line.startswith("[1/3 figures] succeeded")))
    assert lines[figures + 1:figures + 5] == ["  h1: h1 disk 42% used: ok", "  h1: token *** \\x1b[31mred",
                                              "  h2: h2 disk 42% used: ok", "  h2: token *** \\x1b[31mred"]
    assert _SECRET not in done.stderr and "\x1b" not in done.stderr
    # on_failure steps are counted apart, never [4/3 rollback]
    assert "[on_failure 1/1 rollback] succeeded" in done.stderr and "[4/3" not in done.stderr
    assert "  h2: rolled back" in done.stderr
    failed = next(line for line in lines if line.startswith("  FAILED: h2: "))
    assert failed.endswith(" configured…")  # cut between words, never `configured con`

    record = json.loads(next((state_dir / "runs").glob("*/run.json")).read_text())
    assert record["steps"][0]["hosts"]["h1"]["summary"] == "h1 disk 42% used: ok\ntoken *** \\x1b[31mred"
    assert record["steps"][3]["hosts"]["h2"]["summary"] == "rolled back"
    log = runbook("log", "last", cwd=ws).stdout
    assert "-- summary\n   h1: h1 disk 42% used: ok\n" in log
    assert "   h2: rolled back" in runbook("log", "last", "--data", cwd=ws).stdout

    md = runbook("report", "last", "--format", "md", cwd=ws).stdout
    assert "| figures | h1 | h1 disk 42% used: ok |" in md and "| rollback | h2 | rolled back |" in md
    as_json = json.loads(runbook("report", "last", "--format", "json", cwd=ws).stdout)
    assert as_json["steps"][0]["hosts"]["h2"]["summary"].startswith("h2 disk 42% used: ok")
    html = runbook("report", "last", "--format", "html", cwd=ws).stdout
    assert "<td>h1</td><td>h1 disk 42% used: ok<br>token *** \\x1b[31mred</td>" in html
    junit = runbook("report", "last", "--format", "junit", cwd=ws).stdout
    assert "<system-out>h1: h1 disk 42% used: ok\nh1: token *** \\x1b[31mred\nh2:" in junit
    assert "\x1b" not in md + html + junit and _SECRET not in md + html + junit + log


def test_one_time_in_every_view_in_the_local_zone_labelled(ws: Path, state_dir: Path) -> None:
    runbook("run", "results", cwd=ws, env=_TOKYO)
    record = json.loads(next((state_dir / "runs").glob("*/run.json")).read_text())
    started = dt.datetime.strptime(record["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    shown = started.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S JST")
    views = {
        "history": runbook("history", cwd=ws, env=_TOKYO).stdout,
        "show": runbook("show", "results", cwd=ws, env=_TOKYO).stdout,
        "md": runbook("report", "last", "--format", "md", cwd=ws, env=_TOKYO).stdout,
        "html": runbook("report", "last", "--format", "html", cwd=ws, env=_TOKYO).stdout,
        "summary": runbook("report", "--since", "1h", "--format", "md", cwd=ws, env=_TOKYO).stdout,
    }
    for view, text in views.items():
        assert shown in text or view == "summary", view
    assert "JST" in views["summary"] and ".%" not in views["summary"]
    failed_at = next(line for line in views["summary"].splitlines() if line.startswith("- `"))
    assert f"at {shown}:" in failed_at  # the failed run listed at the same time as everywhere else
    history = json.loads(runbook("history", "--json", cwd=ws, env=_TOKYO).stdout)
    assert history[0]["started_at"] == record["started_at"]  # JSON keeps ISO 8601 with its offset (Z)


def test_the_markdown_report_says_who_resumed(ws: Path, state_dir: Path) -> None:
    assert runbook("run", "paused", "--non-interactive", cwd=ws).returncode == 5
    resumed = runbook("resume", "last", "--confirm", "--note", "looked", cwd=ws, env={"RUNBOOK_USER": "bob"})
    assert resumed.returncode == 0, resumed.stderr
    md = runbook("report", "last", "--format", "md", cwd=ws).stdout
    assert "Resumed by bob at " in md
    html = runbook("report", "last", "--format", "html", cwd=ws).stdout
    assert "<td>resumed</td><td>by bob at " in html


def test_human_time_is_local_labelled_and_to_the_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.times import human_time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert human_time(0.123456) == "1970-01-01 09:00:00 JST"
        assert human_time(None) == "-"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_shorten_cuts_at_a_word() -> None:
    from runner.output import shorten

    text = "runbook-broken at 2.0 (half configured), planned 2.0"
    assert shorten(text, 51) == "runbook-broken at 2.0 (half configured), planned…"
    assert shorten(text, 44) == "runbook-broken at 2.0 (half configured)…"
    assert shorten(text, 60) == text
    assert shorten("x" * 50, 10) == "x" * 9 + "…"  # one long word: cut all the same


def test_a_summary_is_short_scrubbed_before_it_is_cut_and_printable() -> None:
    from runner.execution.summaries import summary_of

    secret = "hunter2-secret-value"
    scrub = lambda text: text.replace(secret, "***")  # noqa: E731 - the run's scrubber, for this test
    lines = summary_of({"ansible_facts": {"runbook_summary": [f"line {n}" for n in range(25)]}}, scrub)
    assert lines is not None and len(lines.splitlines()) == 20 and lines.endswith("\n(6 more lines)")
    long = summary_of({"ansible_facts": {"runbook_summary": "word " * 58 + secret + " tail" * 5}}, scrub)
    assert long is not None and "hunter" not in long and len(long) <= 300 and long.endswith("*** tail…")
    looped = summary_of({"results": [{"ansible_facts": {"runbook_summary": "first"}},
                                     {"ansible_facts": {"runbook_summary": "last\x1b[2J"}}, {"changed": False}]}, scrub)
    assert looped == "last\\x1b[2J"
    assert summary_of({"ansible_facts": {"other": 1}}, scrub) is None and summary_of("text", scrub) is None
