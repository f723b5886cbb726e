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


_BILINGUAL = """\
apiVersion: runbook/v1
name: restart
title: Restart the web service
version: 1.0.0
kind: operation
owner: web-team
description: |
  Restarts the service.

  ## 失敗したとき

  当番の責任者に電話する。

  ## 切り戻し

  前のバージョンに戻す。
parameters:
  service: {type: string, default: nginx, description: The unit to restart}
steps:
  - name: confirm
    manual: Tell the channel.
    checklist: [Announced]
  - name: restart
    playbook: check.yml
translations:
  ja:
    title: Webサービスの再起動
    parameters:
      service: {description: 再起動するユニット}
    steps:
      confirm: {manual: チャンネルに連絡する。, checklist: [連絡した]}
"""


def test_the_manual_takes_japanese_sections_and_translations_in_the_readers_language(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", runbooks={"restart.yml": _BILINGUAL})
    pages = {}
    for lang in ("ja", "en"):
        out = tmp_path / lang
        done = runbook("docs", "restart", "--format", "md", "-o", str(out), cwd=ws, env={**_UTC, "RUNBOOK_LANG": lang})
        assert done.returncode == 0, done.stderr
        pages[lang] = (out / "restart.md").read_text(encoding="utf-8")
    ja, en = pages["ja"], pages["en"]
    assert ja.count("## 失敗したとき") == 1 and ja.count("## 切り戻し") == 1 and "## When it fails" not in ja
    assert ja.index("## 失敗したとき") < ja.index("当番の責任者に電話する。") < ja.index("## 切り戻し")
    assert "# Webサービスの再起動" in ja and "再起動するユニット" in ja and "- [ ] 連絡した" in ja and "## 手順" in ja
    assert en.count("## When it fails") == 1 and "## 失敗したとき" not in en and "当番の責任者に電話する。" in en
    assert "# Restart the web service" in en and "- [ ] Announced" in en
    shown = runbook("show", "restart", cwd=ws, env={**_UTC, "LANG": "ja_JP.UTF-8"}).stdout
    assert "Webサービスの再起動" in shown and "連絡した" in shown
    assert "Restart the web service" in runbook("show", "restart", cwd=ws, env={**_UTC, "LANG": "C.UTF-8"}).stdout


def test_translations_must_name_what_the_runbook_has(tmp_path: Path) -> None:
    broken = _BILINGUAL.replace("      confirm: {", "      confrim: {").replace("service: {description: 再", "servise: {description: 再")
    ws = _workspace(tmp_path / "ws", runbooks={"restart.yml": broken})
    done = runbook("validate", "restart", cwd=ws, env=_UTC)
    assert done.returncode == 3
    assert "translations.ja.steps.confrim: the runbook has no such step" in done.stdout + done.stderr
    assert "translations.ja.parameters.servise: the runbook has no such parameter" in done.stdout + done.stderr


def test_language_comes_from_runbook_lang_then_ui_lang_then_the_locale(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", '[ui]\nlang = "ja"\n', runbooks={"restart.yml": _BILINGUAL})
    for env, title in (({}, "Webサービスの再起動"), ({"RUNBOOK_LANG": "en"}, "Restart the web service")):
        assert title in runbook("show", "restart", cwd=ws, env={**_UTC, **env}).stdout
    (ws / "runbook.toml").write_text("")
    assert "Webサービスの再起動" in runbook("show", "restart", cwd=ws, env={**_UTC, "LC_ALL": "ja_JP.UTF-8"}).stdout


def test_a_japanese_manual_page_renders_its_glyphs_not_boxes(tmp_path: Path) -> None:
    """The page in Japanese, and the same page with every Japanese character replaced by U+E000 (a private-use
    code point no font draws: a box): without a Japanese font both show the same boxes, pixel for pixel."""
    import re
    import subprocess

    from conftest import IN_CI, chromium_screenshot

    fonts = subprocess.run(["fc-list", ":lang=ja", "family"], capture_output=True, text=True).stdout.strip()
    if not fonts:
        if IN_CI:
            pytest.fail("no font with Japanese glyphs: run tests/install-test-deps.sh (fonts-noto-cjk)", pytrace=False)
        pytest.skip("no font with Japanese glyphs (Debian: fonts-noto-cjk)")
    ws = _workspace(tmp_path / "ws", runbooks={"restart.yml": _BILINGUAL})
    done = runbook("docs", "restart", "-o", str(tmp_path / "html"), cwd=ws, env={**_UTC, "RUNBOOK_LANG": "ja"})
    assert done.returncode == 0, done.stderr
    page = tmp_path / "html" / "restart.html"
    html = page.read_text(encoding="utf-8")
    assert '<html lang="ja">' in html and "Noto Sans CJK JP" in html and "<h1" in html and "Webサービスの再起動" in html
    boxes = tmp_path / "html" / "boxes.html"
    boxes.write_text(re.sub(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]", "\ue000", html), encoding="utf-8")
    assert boxes.read_text(encoding="utf-8") != html
    glyphs = chromium_screenshot(page, tmp_path / "glyphs.png", tmp_path, "1000,700")
    tofu = chromium_screenshot(boxes, tmp_path / "boxes.png", tmp_path, "1000,700")
    assert glyphs != tofu, f"Japanese text rendered as boxes (fonts: {fonts.splitlines()[:3]})"


@pytest.mark.parametrize("name", ["health-check", "disk-cleanup"])
def test_shipped_runbooks_read_in_japanese_with_one_section_each(name: str, tmp_path: Path) -> None:
    from conftest import REPO
    from runner.definition.loader import load_runbook

    rb = load_runbook(REPO / "runbooks" / f"{name}.yml")
    ja = rb.translations["ja"]
    assert ja["title"] and ja["description"] and set(ja["parameters"]) == {p.name for p in rb.parameters}
    done = runbook("-w", str(REPO), "docs", name, "--format", "md", "-o", str(tmp_path), env={"RUNBOOK_LANG": "ja"})
    assert done.returncode == 0, done.stderr
    page = (tmp_path / f"{name}.md").read_text(encoding="utf-8")
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert len(headings) == len(set(headings)) and "## 失敗したとき" in headings and "## 切り戻し" in headings
    assert "When it fails" not in page and "Rollback" not in page
