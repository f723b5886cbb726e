"""Makes docs/summary.png: the HTML periodic summary of a demo history, as headless Chromium shows it.

    .venv/bin/python docs/summary_screenshot.py

The history is two weeks of runs of the standard library, seeded through the real records and Store APIs
(tests/seeding.py) into a temporary state dir: daily health and capacity checks, backups, a patch
rollout with a failing host, check-mode rehearsals, a hardware replacement. Needs chromium, and a font
with Japanese glyphs for the 運用/保守 heading (Debian: fonts-ipafont-gothic).
"""
from __future__ import annotations

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


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is missing: run tests/install-test-deps.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        state, page = Path(tmp) / "state", Path(tmp) / "summary.html"
        seed(state)
        env = dict(os.environ, RUNBOOK_STATE_DIR=str(state))
        subprocess.run([sys.executable, "-m", "runner", "-w", str(REPO), "report", "--since", "15d", "--format", "html",
                        "-o", str(page)], env=env, check=True)
        target = REPO / "docs" / "summary.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={Path(tmp) / 'chromium'}", "--window-size=1100,2400",
                        f"--screenshot={target}", page.as_uri()], check=True, capture_output=True, timeout=120)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
