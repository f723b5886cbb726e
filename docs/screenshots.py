"""Retake README's pictures (docs/manual.png, docs/run-report.png, docs/summary.png) with headless
Chromium, from real runs of the standard library on localhost in a throwaway state dir.

    .venv/bin/python docs/screenshots.py        (or: make screenshots)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def runbook(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "-w", str(REPO), *args], env=env,
                          capture_output=True, text=True, timeout=900)


def shot(page: Path, target: Path, height: int, profile: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium is missing: run tests/install-test-deps.sh")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={profile}", "--force-device-scale-factor=0.8", f"--window-size=1000,{height}",
                    f"--screenshot={target}", page.as_uri()], capture_output=True, timeout=120, check=True)
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")


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
    runbook("report", "--since", "1d", "--format", "html", "-o", str(work / "summary.html"), env=env)
    last = json.loads(runbook("history", "hardware-replacement", "--json", env=env).stdout)[0]["id"]
    # The manual from its procedure on: the title, then the numbered steps with their checklist.
    page = (work / "site" / "runbooks" / "hardware-replacement.html").read_text(encoding="utf-8")
    head_end = page.index("</p>", page.index("<h1")) + 4
    (work / "site" / "runbooks" / "shot.html").write_text(page[:head_end] + page[page.index('<h2 id="procedure">'):])
    docs = REPO / "docs"
    shot(work / "site" / "runbooks" / "shot.html", docs / "manual.png", 1660, work / "chromium")
    shot(work / "site" / "runs" / f"{last}.html", docs / "run-report.png", 1500, work / "chromium")
    shot(work / "summary.html", docs / "summary.png", 1100, work / "chromium")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
