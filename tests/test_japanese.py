"""日本語で使える (issue 24): one labelled time zone from `[ui] timezone`, the reader's language, runbooks
written in Japanese (Unicode step names, bilingual manual sections, `translations:`), pages that render it."""
from __future__ import annotations

import datetime as dt
import json
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
"""
_PLAYBOOK = """\
- name: Check
  hosts: all
  gather_facts: false
  tasks:
    - name: Look
      ansible.builtin.debug:
        msg: ok
"""
_RUNBOOK = """\
apiVersion: runbook/v1
name: check
title: Check
version: 1.0.0
kind: operation
owner: team
steps:
  - name: look
    playbook: check.yml
"""
_UTC = {"TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": "", "RUNBOOK_LANG": ""}


def _workspace(root: Path, toml: str = "", runbooks: dict[str, str] | None = None) -> Path:
    for folder, files in {"inventories": {"local.yml": _INVENTORY}, "playbooks": {"check.yml": _PLAYBOOK},
                          "runbooks": runbooks or {"check.yml": _RUNBOOK}}.items():
        (root / folder).mkdir(parents=True)
        for name, text in files.items():
            (root / folder / name).write_text(text, encoding="utf-8")
    (root / "runbook.toml").write_text(toml, encoding="utf-8")
    return root


def test_ui_timezone_shows_the_same_instant_in_that_zone_in_every_view(tmp_path: Path, state_dir: Path) -> None:
    ws = _workspace(tmp_path / "ws", '[ui]\ntimezone = "Asia/Tokyo"\n')
    assert runbook("run", "check", cwd=ws, env=_UTC).returncode == 0
    record = json.loads(next((state_dir / "runs").glob("*/run.json")).read_text())
    started = dt.datetime.strptime(record["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    shown = started.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S JST")
    for args in (("history",), ("report", "last", "--format", "md"), ("log", "last")):
        done = runbook(*args, cwd=ws, env=_UTC)
        out = done.stdout + done.stderr
        assert shown in out and " UTC" not in out, (args, out)
    history = json.loads(runbook("history", "--json", cwd=ws, env=_UTC).stdout)
    assert history[0]["started_at"] == record["started_at"]  # JSON keeps ISO 8601


def test_an_unknown_timezone_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", 'forks = 2\n\n[ui]\ntimezone = "Asia/Tokio"\n')
    done = runbook("list", cwd=ws, env=_UTC)
    assert done.returncode == 3
    assert "runbook.toml:4: ui.timezone: 'Asia/Tokio' is not a known time zone" in done.stderr


_JAPANESE = """\
apiVersion: runbook/v1
name: tenken
title: 点検
version: 1.0.0
kind: operation
owner: team
steps:
  - name: ディスク確認
    playbook: check.yml
  - name: look
    playbook: check.yml
"""


def test_step_names_in_japanese_run_into_safe_folders_and_keep_their_names(tmp_path: Path, state_dir: Path) -> None:
    ws = _workspace(tmp_path / "ws", runbooks={"tenken.yml": _JAPANESE})
    done = runbook("run", "tenken", cwd=ws, env=_UTC)
    assert done.returncode == 0, done.stderr
    run_dir = next((state_dir / "runs").glob("*/run.json")).parent
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in record["steps"]] == ["ディスク確認", "look"]
    folders = sorted(p.name for p in (run_dir / "steps").iterdir())
    assert folders[1] == "02-look" and folders[0].startswith("01-step-") and folders[0].isascii()
    assert (run_dir / "steps" / folders[0] / "stdout").is_file()
    log = runbook("log", "last", "--step", "ディスク確認", cwd=ws, env=_UTC)
    assert log.returncode == 0 and "== step 1 ディスク確認" in log.stdout and "ok=1" in log.stdout
    assert "| ディスク確認 |" in runbook("report", "last", "--format", "md", cwd=ws, env=_UTC).stdout


def test_a_step_name_with_a_control_character_is_refused(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", runbooks={"tenken.yml": _JAPANESE.replace("ディスク確認", '"ディスク\\u0007確認"')})
    done = runbook("validate", "tenken", cwd=ws, env=_UTC)
    assert done.returncode == 3 and "steps[0].name" in done.stderr + done.stdout, done.stderr
