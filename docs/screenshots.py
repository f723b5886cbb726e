"""Retake README's pictures with headless Chromium, in throwaway state dirs:

- docs/manual.png and docs/run-report.png from real runs of the standard library on localhost;
- docs/summary.png, the HTML periodic summary of two weeks of a demo history seeded through the real
  records and Store APIs (tests/seeding.py): daily health and capacity checks, backups, a patch rollout
  with a failing host, check-mode rehearsals, a hardware replacement.

    .venv/bin/python docs/screenshots.py        (or: make screenshots)

Needs chromium, and a font with Japanese glyphs for the summary's 運用/保守 heading (Debian:
fonts-noto-cjk, which tests/install-test-deps.sh installs).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from seeding import seed_run, step  # noqa: E402

from runner.store.records import HostResult  # noqa: E402

DAY = 86400.0


def runbook(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "-w", str(REPO), *args], env=env,
                          capture_output=True, text=True, timeout=900)


def shot(page: Path, target: Path, height: int, profile: Path, width: int = 1000, scale: float = 0.8) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium is missing: run tests/install-test-deps.sh")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={profile}", f"--force-device-scale-factor={scale}", f"--window-size={width},{height}",
                    f"--screenshot={target}", page.as_uri()], capture_output=True, timeout=120, check=True)
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")


def seed(state: Path) -> None:
    rng = random.Random(7)
    now = time.time()
    for day in range(14, -1, -1):
        base = now - day * DAY - 3 * 3600
        seed_run(state, "health-check", base, duration=rng.uniform(18, 30))
        used = 31000 + 450 * (14 - day) + rng.uniform(-150, 150)
        data = {"capacity": {
            "db-01": {"filesystems": {"/": {"fstype": "ext4", "size_mib": 40960, "used_mib": 9000 + 20 * day},
                                      "/var/lib/postgresql": {"fstype": "xfs", "size_mib": 51200, "used_mib": used}}},
            "web-01": {"filesystems": {"/": {"fstype": "ext4", "size_mib": 20480, "used_mib": 6100 + rng.uniform(-80, 80)}}}}}
        seed_run(state, "capacity-report", base + 600, duration=rng.uniform(25, 40),
                 steps=[step("measure", "succeeded", base + 600, {"db-01": HostResult(ok=6), "web-01": HostResult(ok=6)},
                             data=data)])
        if day % 2 == 0:
            failed = day == 6
            seed_run(state, "backup-verify", base + 3600, duration=rng.uniform(280, 420),
                     status="failed" if failed else "succeeded",
                     steps=[step("verify", "failed", base + 3600, {"db-01": HostResult(ok=9, failed=1, message=(
                         "Check the newest backup: /backup/db-01/2026-11-24.tar.zst is 2 days old"))})] if failed else None)
        if day in (9, 2):
            seed_run(state, "patch-rollout", base + 7200, duration=900, check=True)
            failed = day == 9
            seed_run(state, "patch-rollout", base + 9000, duration=rng.uniform(1500, 2100),
                     status="failed" if failed else "succeeded",
                     steps=[step("apply", "failed", base + 9000, {
                         "web-02": HostResult(ok=12, failed=1, message="Upgrade the packages: dpkg: error processing "
                                              "package openssl (--configure)"),
                         "web-01": HostResult(ok=14, changed=3)})] if failed else None)
        if day == 4:
            seed_run(state, "hardware-replacement", base + 5000, duration=5400)
            seed_run(state, "service-restart", base + 12000, duration=140)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="runbook-shots-"))
    env = dict(os.environ, RUNBOOK_STATE_DIR=str(work / "state"), RUNBOOK_USER="aiko@ops", NO_COLOR="1")
    env.pop("CI", None)
    for _ in range(2):
        runbook("run", "health-check", "--non-interactive", "-p", "max_load_per_cpu=50", "-p", "check_services=false", env=env)
    runbook("run", "capacity-report", "--non-interactive", env=env)
    runbook("run", "hardware-replacement", "--check", "-i", "local", "-p", "part=disk sdb (bay 2)",
            "-p", "ticket=CHG-1042", "--non-interactive", env=env)
    runbook("resume", "last", "--confirm", "--note", "old=WD-WX11A2 new=WD-WX77B9", env=dict(env, RUNBOOK_USER="kenji@dc"))
    runbook("site", "-o", str(work / "site"), env=env)
    seed(work / "demo")
    runbook("report", "--since", "15d", "--format", "html", "-o", str(work / "summary.html"),
            env=dict(env, RUNBOOK_STATE_DIR=str(work / "demo")))
    last = json.loads(runbook("history", "hardware-replacement", "--json", env=env).stdout)[0]["id"]
    # The manual from its procedure on: the title, then the numbered steps with their checklist.
    page = (work / "site" / "runbooks" / "hardware-replacement.html").read_text(encoding="utf-8")
    head_end = page.index("</p>", page.index("<h1")) + 4
    (work / "site" / "runbooks" / "shot.html").write_text(page[:head_end] + page[page.index('<h2 id="procedure">'):])
    docs = REPO / "docs"
    shot(work / "site" / "runbooks" / "shot.html", docs / "manual.png", 1660, work / "chromium")
    shot(work / "site" / "runs" / f"{last}.html", docs / "run-report.png", 1500, work / "chromium")
    shot(work / "summary.html", docs / "summary.png", 2400, work / "chromium", width=1100, scale=1.0)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
