"""Documents: one run as md/json/junit/html, the periodic summary, the procedure manual. HTML is
loaded in a real headless Chromium and read back from its DOM."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from junitparser import JUnitXml

from conftest import chromium_dom, copy_workspace, runbook


_chromium_dom = chromium_dom


class _Texts(HTMLParser):
    """Text by element id, and every tag seen: what a reader of the rendered page gets."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.tags: list[str] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("br", "meta", "link", "img", "input"):
            return
        ident = dict(attrs).get("id")
        self._open.append(ident)
        if ident:
            self.by_id[ident] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("br", "meta", "link", "img", "input"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.by_id[ident] += data


def _parse(dom: str) -> _Texts:
    texts = _Texts()
    texts.feed(dom)
    return texts


def test_run_report_formats(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    assert runbook("run", "fail-on-host", cwd=alien).returncode == 1
    record = json.loads(next((state_dir / "runs").glob("*/run.json")).read_text())
    as_json = runbook("report", "last", "--format", "json", cwd=alien)
    assert json.loads(as_json.stdout) == record
    md = runbook("report", "last", "--format", "md", cwd=alien).stdout
    assert "runbook `fail-on-host` 1.0.0: failed" in md and "| check | web2 |" in md
    runbook("report", "last", "--format", "junit", "-o", str(tmp_path / "r.xml"), cwd=alien)
    assert JUnitXml.fromfile(str(tmp_path / "r.xml")).failures == 1


def test_run_report_html_in_a_browser_escapes_values(alien: Path, tmp_path: Path) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    assert runbook("run", "conditional", "-p", f"greeting={hostile}", cwd=alien).returncode == 0
    assert runbook("run", "fail-on-host", cwd=alien).returncode == 1
    first = runbook("history", "--json", cwd=alien)
    conditional = next(r["id"] for r in json.loads(first.stdout) if r["runbook"] == "conditional")
    page = tmp_path / "run.html"
    assert runbook("report", conditional, "--format", "html", "-o", str(page), cwd=alien).returncode == 0
    dom = _parse(_chromium_dom(page, tmp_path))
    assert dom.by_id["run-status"].strip() == "succeeded"
    assert "img" not in dom.tags  # the parameter value is shown as text, never as markup
    assert hostile in page.read_text().replace("&lt;", "<").replace("&gt;", ">")
    failed = tmp_path / "failed.html"
    runbook("report", "last", "--format", "html", "-o", str(failed), cwd=alien)
    dom = _parse(_chromium_dom(failed, tmp_path))
    assert dom.by_id["run-status"].strip() == "failed"
    assert "web2 is broken" in dom.by_id["steps"] or "failed on web2" in dom.by_id["steps"]


def test_periodic_summary(alien: Path, tmp_path: Path) -> None:
    for name, code in (("conditional", 0), ("conditional", 0), ("fail-on-host", 1), ("unreachable", 4)):
        assert runbook("run", name, cwd=alien).returncode == code
    md = runbook("report", "--since", "1h", "--format", "md", cwd=alien).stdout
    assert "4 runs, success rate 50.0%" in md
    assert "| conditional | 2 | 100% |" in md and "| fail-on-host | 1 | 0% |" in md
    assert "| web2 | 1 | 0 |" in md and "| ghost | 0 | 1 |" in md
    page = tmp_path / "summary.html"
    runbook("report", "--since", "1h", "--format", "html", "-o", str(page), cwd=alien)
    dom = _parse(_chromium_dom(page, tmp_path))
    assert dom.by_id["total"] == "4" and dom.by_id["success-rate"] == "50.0%"
    assert "web2" in dom.by_id["hosts"] and "ghost" in dom.by_id["hosts"]
    assert runbook("report", "--since", "1h", "--format", "junit", cwd=alien).returncode == 2
    assert runbook("report", cwd=alien).returncode == 2  # neither RUN nor --since


def test_procedure_manual(tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    out = tmp_path / "manual"
    assert runbook("docs", "--format", "md", "-o", str(out), cwd=ws).returncode == 0
    names = sorted(p.stem for p in (ws / "runbooks").glob("*.yml"))
    assert sorted(p.stem for p in out.glob("*.md")) == sorted(names + ["index"])
    page = (out / "health-check.md").read_text()
    assert "## Procedure" in page and "Fail if any resource is over its threshold" in page
    assert "| `max_disk_pct` | integer | `90` |" in page
    html = tmp_path / "html"
    assert runbook("docs", "-o", str(html), cwd=ws).returncode == 0
    dom = _chromium_dom(html / "index.html", tmp_path)
    for name in names:
        assert f'href="{name}.html"' in dom
    assert "<table>" in (html / "health-check.html").read_text()  # the description's Markdown table rendered


def test_alien_manual_shows_checklists_and_approvals(alien: Path, tmp_path: Path) -> None:
    assert runbook("docs", "maintenance-window", "--format", "md", "-o", str(tmp_path / "m"), cwd=alien).returncode == 0
    page = (tmp_path / "m" / "maintenance-window.md").read_text()
    assert "- [ ] Window announced" in page and "Needs 1 approval(s)" in page
    assert "## Rollback" in page and "1. **rollback**: playbook `note.yml`" in page
