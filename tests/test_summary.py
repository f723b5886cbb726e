"""The periodic summary (`runbook report --since`): check-mode runs apart, the reason of every failed
run, host failures counted against the hosts that failed, operations and maintenance by class, and
its charts as static SVG that a browser shows offline."""
from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import runbook
from seeding import seed_run, step
from test_reports import _chromium_dom, _parse

from runner.store.records import HostResult

SVG = "{http://www.w3.org/2000/svg}"


def _svgs(html: str) -> list[ET.Element]:
    """Every inline SVG of the page, parsed as XML (a malformed one raises)."""
    found = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    return [ET.fromstring(svg) for svg in found]


def _texts(svg: ET.Element) -> str:
    return " ".join(t.strip() for t in svg.itertext() if t.strip())


def test_summary_counts_check_runs_apart_and_says_why_each_run_failed(alien: Path, tmp_path: Path) -> None:
    for args, code in ((("conditional",), 0), (("conditional", "--check"), 0), (("fail-on-host",), 1),
                       (("fail-on-host", "--check"), 1), (("unreachable",), 4)):
        assert runbook("run", *args, cwd=alien).returncode == code, args
    md = runbook("report", "--since", "1h", "--format", "md", cwd=alien).stdout
    # 3 real runs, 1 succeeded; the two check-mode runs are not in the rate.
    assert "3 runs, success rate 33.3%" in md
    assert "Check-mode runs, counted apart (they change nothing): 2 (failed 1, succeeded 1)" in md
    assert "| conditional | 1 | 100% |" in md and "| 1 |" in md.split("| conditional |")[1].splitlines()[0]
    assert "| fail-on-host | 1 | 0% |" in md
    # web2 failed in one real run (the check run does not count); web1 ran there too and did not fail.
    assert re.search(r"\| web2 \| 1 \| 0 \| fail-on-host `[^`]+`: Check the host is not the broken one: web2 is broken", md)
    assert "| web1 |" not in md
    assert "| ghost | 0 | 1 |" in md
    failed = [line for line in md.splitlines() if line.startswith("- `")]
    assert len(failed) == 2
    assert "fail-on-host: failed" in failed[1] and "step 'check' on web2: " in failed[1] and "web2 is broken" in failed[1]
    assert "unreachable: failed" in failed[0] and "on ghost" in failed[0]
    # Operations and maintenance apart, every maintenance class listed.
    assert "| operation | 2 | 50% |" in md
    assert "| maintenance: corrective | 1 | 0% |" in md
    for klass in ("adaptive", "perfective", "preventive", "emergency"):
        assert f"| maintenance: {klass} | 0 | n/a | 0.0s |" in md


def test_work_by_class_gives_counts_success_and_time_spent(alien: Path, state_dir: Path) -> None:
    now = time.time()
    seed_run(state_dir, "maintenance-window", now - 3600, duration=600)
    seed_run(state_dir, "maintenance-window", now - 1800, duration=300, status="failed")
    seed_run(state_dir, "maintenance-window", now - 900, duration=1200, check=True)  # not counted
    seed_run(state_dir, "rolling", now - 600, duration=90)
    seed_run(state_dir, "gone-away", now - 300, duration=30)  # no longer in the workspace
    md = runbook("report", "--since", "2h", "--format", "md", cwd=alien).stdout
    assert "| maintenance: perfective | 2 | 50% | 15m00s |" in md
    assert "| maintenance: preventive | 1 | 100% | 1m30s |" in md
    assert "| operation | 0 | n/a | 0.0s |" in md
    assert "| unknown | 1 | 100% | 30.0s |" in md
    assert "| maintenance-window | 2 | 50% |" in md and md.split("| maintenance-window |")[1].splitlines()[0].endswith("| 1 |")


def test_host_failures_count_only_the_hosts_that_failed(alien: Path, state_dir: Path) -> None:
    now = time.time()
    hosts = {"db1": HostResult(ok=3, failed=1, message="disk full"), "db2": HostResult(ok=4), "db3": HostResult(ok=4)}
    seed_run(state_dir, "fail-on-host", now - 100, status="failed",
             steps=[step("check", "failed", now - 100, hosts, message="failed on db1")])
    # Same hosts in check mode, db2 failing: a rehearsal, not a failure of db2.
    seed_run(state_dir, "fail-on-host", now - 50, status="failed", check=True,
             steps=[step("check", "failed", now - 50, {"db2": HostResult(failed=1, message="x")})])
    md = runbook("report", "--since", "1h", "--format", "md", cwd=alien).stdout
    assert "| db1 | 1 | 0 | fail-on-host" in md and "disk full" in md
    assert "| db2 |" not in md and "| db3 |" not in md
    assert "step 'check' on db1: disk full" in md


def test_html_summary_draws_static_svg_charts(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    now = time.time()
    for day in range(5):
        seed_run(state_dir, "conditional", now - day * 86400 - 60, duration=30 + day)
    seed_run(state_dir, "fail-on-host", now - 2 * 86400, status="failed",
             steps=[step("check", "failed", now - 2 * 86400, {"web2": HostResult(failed=1, message="web2 is broken")})])
    seed_run(state_dir, "fail-on-host", now - 86400, check=True)
    page = tmp_path / "summary.html"
    assert runbook("report", "--since", "7d", "--format", "html", "-o", str(page), cwd=alien).returncode == 0
    html = page.read_text()
    svgs = _svgs(html)
    assert len(svgs) == 3
    for svg in svgs:
        assert svg.tag == f"{SVG}svg"
        assert not list(svg.iter(f"{SVG}script")), "the charts need no script"
        for element in svg.iter():
            for name, value in element.attrib.items():
                assert not (name.endswith("href") and value.startswith(("http:", "https:", "//"))), (name, value)
    assert "<script" not in html and "cdn" not in html.lower()
    per_day, durations, by_host = (_texts(svg) for svg in svgs)
    assert "succeeded" in per_day and "failed" in per_day and "check mode" in per_day
    assert "conditional" in durations and "minutes" in durations
    assert "web2" in by_host
    # Chromium shows the same page: the charts are there as SVG elements, the figures as text.
    dom = _parse(_chromium_dom(page, tmp_path))
    assert dom.tags.count("svg") == 3
    assert dom.by_id["total"] == "6" and dom.by_id["check-total"] == "1"
    assert "step 'check' on web2: web2 is broken" in dom.by_id["failures"]


def test_summary_of_an_empty_window_still_draws(alien: Path, tmp_path: Path) -> None:
    page = tmp_path / "empty.html"
    assert runbook("report", "--since", "1h", "--format", "html", "-o", str(page), cwd=alien).returncode == 0
    svgs = _svgs(page.read_text())
    assert len(svgs) == 3 and "no runs" in _texts(svgs[0])
    assert "0 runs, success rate 0.0% (none)." in runbook("report", "--since", "1h", cwd=alien).stdout
