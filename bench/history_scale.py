"""History at years of runs: fills a state dir with N runs (default 100,000: ~30 runs a day for ten
years, 4 hosts each) and times the history, log-resolve and summary commands against it, each as a
fresh `runbook` process, as an operator would run them. The goal is under 300 ms each.

    python bench/history_scale.py [--runs 100000]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner.store.sqlite import Store

STATUSES = ["succeeded"] * 17 + ["failed", "timed_out", "canceled"]
RUNBOOKS = ["health-check", "backup-verify", "patch-rollout", "capacity-report", "cert-expiry-check",
            "service-restart", "account-audit", "security-log-audit"]


def fill(state: Path, count: int) -> None:
    store = Store(state)
    db = store.db
    start = time.time() - count * 3 * 3600 / 30
    rng = random.Random(7)
    db.execute("BEGIN")
    for i in range(count):
        started = start + i * (3 * 3600 / 30)
        runbook = RUNBOOKS[i % len(RUNBOOKS)]
        status = rng.choice(STATUSES)
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{runbook}-{i % 65536:04x}"
        failed = "web03" if status == "failed" else ""
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (run_id, runbook, "1.0.0", status, 0 if status == "succeeded" else 1, "alice@ops", "cron",
                    "production", "all", 0, started, started + 30 + rng.random() * 60, None, None, "vm", failed, "",
                    runbook))
        db.execute("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (run_id, 0, "check", "playbook", status, started, started + 30, 0, 4, 0, int(bool(failed)), 0, 0))
        db.executemany("INSERT INTO host_results VALUES (?,?,?,?,?,?,?,?,?)",
                       [(run_id, 0, f"web0{h}", 3, 0, int(failed == f"web0{h}"), 0, 0, "") for h in range(1, 5)])
    db.execute("COMMIT")
    store.close()


def timed(args: list[str], env: dict[str, str], workspace: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "runbook"), "-w", str(workspace), *args],
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"runbook {' '.join(args)} failed: {done.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runbook-history-") as tmp:
        workspace = Path(tmp) / "ws"
        (workspace / "runbooks").mkdir(parents=True)
        state = Path(tmp) / "state"
        began = time.perf_counter()
        fill(state, args.runs)
        print(f"filled {args.runs} runs in {time.perf_counter() - began:.1f}s "
              f"({(state / 'history.db').stat().st_size / 1e6:.0f} MB)")
        env = dict(os.environ, RUNBOOK_STATE_DIR=str(state))
        queries = {
            "history (newest 20)": ["history"],
            "history NAME --status failed": ["history", "patch-rollout", "--status", "failed"],
            "history --since 7d -n 200 --json": ["history", "--since", "7d", "-n", "200", "--json"],
            "history NAME -n 1000": ["history", "backup-verify", "-n", "1000"],
            "report --since 30d (summary)": ["report", "--since", "30d", "--format", "md"],
        }
        worst = 0.0
        for label, query in queries.items():
            times = [timed(query, env, workspace) for _ in range(args.repeat)]
            worst = max(worst, statistics.median(times))
            print(f"  {label:36s} median {1000 * statistics.median(times):6.0f} ms   best {1000 * min(times):6.0f} ms")
        print(f"slowest median: {1000 * worst:.0f} ms (goal: under 300 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
