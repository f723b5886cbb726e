"""`runbook --help` and `runbook list` on a workspace of N runbooks (default 200), each a fresh
process as an operator runs it. The goal is well under 200 ms.

    python bench/cli_latency.py [--runbooks 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

TEMPLATE = (Path(__file__).resolve().parent.parent / "runbooks" / "health-check.yml").read_text()


def make_workspace(ws: Path, runbooks: int) -> None:
    """A workspace of `runbooks` copies of the health check, as a large catalog looks."""
    for folder in ("runbooks", "playbooks", "roles", "inventories"):
        (ws / folder).mkdir(exist_ok=True)
    for i in range(runbooks):
        name = f"check-{i:03d}"
        (ws / "runbooks" / f"{name}.yml").write_text(TEMPLATE.replace("name: health-check", f"name: {name}"))


def latencies(argv: list[str], cwd: Path, env: dict[str, str], repeat: int,
              before: Callable[[], object] | None = None) -> list[float]:
    """Wall seconds of `repeat` fresh processes of `argv`, as an operator starts them."""
    times = []
    for _ in range(repeat):
        if before:
            before()
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(done.stderr.decode())
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runbooks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    runbook = str(Path(sys.executable).parent / "runbook")
    with tempfile.TemporaryDirectory(prefix="runbook-latency-") as tmp:
        ws = Path(tmp)
        make_workspace(ws, args.runbooks)
        env = dict(os.environ, RUNBOOK_STATE_DIR=str(ws / "state"))
        worst = 0.0
        cases = (("runbook --help", ["--help"], False), (f"runbook list ({args.runbooks} runbooks)", ["list"], False),
                 ("runbook list --json", ["list", "--json"], False),
                 ("runbook list, cold catalog cache", ["list"], True))
        for label, command, cold in cases:
            times = latencies([runbook, *command], ws, env, args.repeat,
                              before=lambda: (ws / "state" / "cache" / "catalog.json").unlink(missing_ok=True) if cold else None)
            worst = max(worst, statistics.median(times))
            print(f"  {label:32s} median {1000 * statistics.median(times):5.0f} ms   best {1000 * min(times):5.0f} ms")
        print(f"slowest median: {1000 * worst:.0f} ms (goal: well under 200 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
