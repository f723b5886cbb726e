"""`runbook capacity`: trends from capacity-report's recorded figures, on a history with known growth
(seeded through the real records and Store APIs), checked against the dates it must project; and the
same figures drawn in the HTML summary."""
from __future__ import annotations

import datetime as dt
import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from conftest import copy_workspace, runbook
from seeding import seed_run, step

from runner.store.records import HostResult

DAY = 86400.0


def _capacity_run(state_dir: Path, at: float, figures: dict[str, dict[str, tuple[float, float]]]) -> str:
    """A capacity-report run at `at` with {host: {mount: (used_mib, size_mib)}} as its step data."""
    data = {"capacity": {host: {"status": "ok", "filesystems": {
        mount: {"fstype": "ext4", "size_mib": size, "used_mib": used, "used_pct": round(100 * used / size)}
        for mount, (used, size) in mounts.items()}} for host, mounts in figures.items()}}
    hosts = {host: HostResult(ok=6) for host in figures}
    return seed_run(state_dir, "capacity-report", at, duration=20,
                    steps=[step("measure", "succeeded", at, hosts, data=data)])


def _date(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).date().isoformat()


def _seed_history(state_dir: Path) -> float:
    """Ten daily runs: db1:/data grows 200 MiB a day exactly; db1:/ does not grow; web1:/srv grows
    100, 300, 200, 400 ... (least squares: 80 MiB/day, not the 100 of its end points). Returns the
    time of the last measurement."""
    now = time.time()
    first = now - 9 * DAY - 3600
    wobble = [100, 300, 200, 400]
    for day in range(10):
        at = first + day * DAY
        figures: dict[str, dict[str, tuple[float, float]]] = {
            "db1": {"/data": (4000 + 200 * day, 10000), "/": (1000, 50000)}}
        if day >= 6:
            figures["web1"] = {"/srv": (wobble[day - 6], 1000)}
        _capacity_run(state_dir, at, figures)
    seed_run(state_dir, "health-check", now - 600)  # other runbooks are not read
    return first + 9 * DAY + 30  # the step ends 30 s after it starts


def _by_fs(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(f["host"], f["mount"]): f for f in doc["filesystems"]}


def test_capacity_projects_the_full_date_from_the_growth(tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    last = _seed_history(state_dir)
    done = runbook("capacity", "--json", cwd=ws)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["runs"] == 10 and doc["fill_soon_days"] == 30
    fs = _by_fs(doc)
    assert sorted(fs) == [("db1", "/"), ("db1", "/data"), ("web1", "/srv")]
    data = fs[("db1", "/data")]
    assert data["samples"] == 10 and data["used_mib"] == 5800 and data["size_mib"] == 10000 and data["used_pct"] == 58
    assert data["growth_mib_per_day"] == 200.0
    assert data["full_on"] == _date(last + 4200 / 200 * DAY)  # 4200 MiB free at 200 MiB a day: 21 days
    assert data["fills_soon"] is True and 20 <= data["days_left"] <= 21.1
    root = fs[("db1", "/")]
    assert root["growth_mib_per_day"] == 0.0 and root["full_on"] is None and root["fills_soon"] is False
    srv = fs[("web1", "/srv")]
    assert srv["samples"] == 4 and srv["growth_mib_per_day"] == 80.0  # least squares
    assert srv["full_on"] == _date(last + 600 / 80 * DAY)
    # --host narrows; --since narrows the window the line is fitted over.
    only = json.loads(runbook("capacity", "--json", "--host", "web1", cwd=ws).stdout)
    assert [(f["host"], f["mount"]) for f in only["filesystems"]] == [("web1", "/srv")]
    recent = _by_fs(json.loads(runbook("capacity", "--json", "--since", "2d", cwd=ws).stdout))
    assert recent[("web1", "/srv")]["samples"] == 2 and recent[("web1", "/srv")]["growth_mib_per_day"] == 200.0
    # The table for people flags what fills within 30 days.
    text = runbook("capacity", cwd=ws)
    line = next(row for row in text.stdout.splitlines() if "/data" in row)
    assert "5.7 GiB" in line and "58%" in line and "+200.0 MiB" in line and _date(last + 21 * DAY) in line
    assert re.search(r"FILLS IN 2[01] DAYS", line)
    assert "FILLS" not in next(row for row in text.stdout.splitlines() if row.startswith("db1") and " / " in row)
    assert "2 filesystem(s) fill within 30 days" in text.stderr
    assert runbook("capacity", "--since", "soon", cwd=ws).returncode == 2


def test_capacity_trends_are_drawn_in_the_summary(tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    _seed_history(state_dir)
    page = tmp_path / "summary.html"
    assert runbook("report", "--since", "30d", "--format", "html", "-o", str(page), cwd=ws).returncode == 0
    html = page.read_text()
    figures = dict(re.findall(r"<figcaption>([^<]+)</figcaption>(<svg\b.*?</svg>)", html, flags=re.S))
    assert {"Disk use on db1", "Disk use on web1"} <= set(figures)
    db1 = ET.fromstring(figures["Disk use on db1"])
    assert "/data (full by " in " ".join(db1.itertext())
    assert 'class="fills-soon"' in html


def test_capacity_of_a_real_run_on_localhost(tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("run", "capacity-report", "-p", "warn_load_per_cpu=0", "-p", "fail_load_per_cpu=0",
                   "-p", "fail_pct=100", cwd=ws)
    assert done.returncode == 0, done.stderr
    # The one-line summary per host its description promises, under the step (runbook_summary).
    assert re.search(r"^  localhost: (ok|warn): load .* MiB, \d+ filesystem\(s\), fullest disk ", done.stderr, re.M)
    doc = json.loads(runbook("capacity", "--json", cwd=ws).stdout)
    root = _by_fs(doc)[("localhost", "/")]
    assert root["samples"] == 1 and root["size_mib"] > 0 and root["growth_mib_per_day"] is None
    assert root["full_on"] is None or root["used_pct"] >= 100


def test_capacity_shows_the_use_the_run_measured(tmp_path: Path, state_dir: Path) -> None:
    """df rounds use up (45 MiB of 10,000 is 1%); `capacity` must not show 0% for what the run data says is 1%."""
    ws = copy_workspace("repo", tmp_path / "ws")
    at = time.time() - 60
    data = {"capacity": {"db1": {"status": "ok", "filesystems": {
        "/data": {"fstype": "ext4", "size_mib": 10000, "used_mib": 45, "used_pct": 1}}}}}
    seed_run(state_dir, "capacity-report", at, steps=[step("measure", "succeeded", at, {"db1": HostResult(ok=6)}, data)])
    doc = json.loads(runbook("capacity", "--json", cwd=ws).stdout)
    assert doc["filesystems"][0]["used_pct"] == 1
    line = next(row for row in runbook("capacity", cwd=ws).stdout.splitlines() if "/data" in row)
    assert " 1% " in line
