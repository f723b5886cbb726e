"""History at years of runs, on both backends side by side: fills a SQLite state dir and a PostgreSQL
database with the same N runs (default 100,000: ~30 runs a day for ten years, 4 hosts each) and times
the history, report and summary commands against each, every one as a fresh `runbook` process, as an
operator would run them. The goal is under 300 ms each, on both backends.

    python bench/history_scale.py [--runs 100000] [--database-url postgresql://...]

Without --database-url a private PostgreSQL server is started (tests/pg.py); --no-postgres skips it.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from runner.store.sqlite import Store

STATUSES = ["succeeded"] * 17 + ["failed", "timed_out", "canceled"]
RUNBOOKS = ["health-check", "backup-verify", "patch-rollout", "capacity-report", "cert-expiry-check",
            "service-restart", "account-audit", "security-log-audit"]


def rows(count: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The same synthetic history for both backends: (runs, steps, host_results)."""
    start = time.time() - count * 3 * 3600 / 30
    rng = random.Random(7)
    runs, steps, hosts = [], [], []
    for i in range(count):
        started = start + i * (3 * 3600 / 30)
        runbook = RUNBOOKS[i % len(RUNBOOKS)]
        status = rng.choice(STATUSES)
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started)) + f".000000Z-{runbook}-{i % 65536:04x}"
        failed = "web03" if status == "failed" else ""
        runs.append((run_id, runbook, "1.0.0", status, 0 if status == "succeeded" else 1, "alice@ops", "cron",
                     "production", "all", 0, started, started + 30 + rng.random() * 60, None, None, "vm", failed, "",
                     runbook, "", None))
        steps.append((run_id, 0, "check", "playbook", status, started, started + 30, 0, 4, 0, int(bool(failed)), 0, 0))
        hosts += [(run_id, 0, f"web0{h}", 3, 0, int(failed == f"web0{h}"), 0, 0, "") for h in range(1, 5)]
    return runs, steps, hosts


def fill_sqlite(state: Path, data: tuple[list[tuple[object, ...]], ...]) -> None:
    store = Store(state)
    db = store.db
    runs, steps, hosts = data
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO runs VALUES ({','.join('?' * 20)})", runs)
    db.executemany("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", steps)
    db.executemany("INSERT INTO host_results VALUES (?,?,?,?,?,?,?,?,?)", hosts)
    db.execute("COMMIT")
    store.close()


def fill_postgres(url: str, state: Path, data: tuple[list[tuple[object, ...]], ...]) -> None:
    from runner.store.base import RUN_COLUMNS
    from runner.store.postgres import PostgresStore

    store = PostgresStore(state, url)
    conn = store.conn  # creates the schema
    runs, steps, hosts = data
    with conn.transaction(), conn.cursor() as cur:
        for table, columns, items in (("runs", RUN_COLUMNS, runs), ("steps", None, steps),
                                      ("host_results", None, hosts)):
            names = f" ({', '.join(columns)})" if columns else ""
            with cur.copy(f"COPY {table}{names} FROM STDIN") as copy:
                for item in items:
                    copy.write_row(item)
    conn.execute("ANALYZE")
    store.close()


def timed(args: list[str], env: dict[str, str], workspace: Path) -> float:
    """Wall time of one fresh `runbook` process (its CPU time goes to CPU_TIMES: on a loaded machine
    the wall time says more about the neighbours than about runbook)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "runbook"), "-w", str(workspace), *args],
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_TIMES.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"runbook {' '.join(args)} failed: {done.stderr}")
    return elapsed


CPU_TIMES: list[float] = []


QUERIES = {
    "history (newest 20)": ["history"],
    "history NAME --status failed": ["history", "patch-rollout", "--status", "failed"],
    "history --since 7d -n 200 --json": ["history", "--since", "7d", "-n", "200", "--json"],
    "history NAME -n 1000": ["history", "backup-verify", "-n", "1000"],
    "report last --format json": ["report", "last", "--format", "json"],
    "report --since 30d (summary)": ["report", "--since", "30d", "--format", "md"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", help="an empty PostgreSQL database to fill (default: a private server)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    server = None
    with tempfile.TemporaryDirectory(prefix="runbook-history-") as tmp:
        workspace = Path(tmp) / "ws"
        (workspace / "runbooks").mkdir(parents=True)
        data = rows(args.runs)
        # `report last` reads the newest run's record: give it one on both backends.
        runs = data[0]
        newest = runs[-1]
        backends: dict[str, dict[str, str]] = {}
        sqlite_state = Path(tmp) / "sqlite-state"
        began = time.perf_counter()
        fill_sqlite(sqlite_state, data)
        print(f"sqlite: filled {args.runs} runs in {time.perf_counter() - began:.1f}s "
              f"({(sqlite_state / 'history.db').stat().st_size / 1e6:.0f} MB)")
        backends["sqlite"] = dict(os.environ, RUNBOOK_STATE_DIR=str(sqlite_state), RUNBOOK_DATABASE_URL="")
        url = None
        if not args.no_postgres:
            url = args.database_url
            if url is None:
                import pg  # tests/pg.py

                server = pg.start_server()
                url = server.new_database("bench")
        try:
            if url is not None:
                pg_state = Path(tmp) / "pg-state"
                began = time.perf_counter()
                fill_postgres(url, pg_state, data)
                print(f"postgresql: filled {args.runs} runs in {time.perf_counter() - began:.1f}s")
                backends["postgresql"] = dict(os.environ, RUNBOOK_STATE_DIR=str(pg_state), RUNBOOK_DATABASE_URL=url)
            _write_newest_record(newest, backends)
            return _measure(backends, workspace, args.repeat)
        finally:
            if server is not None:
                server.remove()


def _write_newest_record(newest: tuple[object, ...], backends: dict[str, dict[str, str]]) -> None:
    from runner.store.records import RunRecord, StepRecord

    run_id, runbook, _, status, code, operator, trigger, inventory, limit, _, started, ended = newest[:12]
    record = RunRecord(id=str(run_id), runbook=str(runbook), version="1.0.0", runbook_sha256="", workspace="",
                       inventory=str(inventory), limit=str(limit), started_at=float(started),  # type: ignore[arg-type]
                       operator=str(operator), trigger=str(trigger), status=str(status), exit_code=int(code),  # type: ignore[call-overload]
                       ended_at=float(ended), steps=[StepRecord(0, "check", "playbook", str(status))])  # type: ignore[arg-type]
    for env in backends.values():
        from runner.store.postgres import PostgresStore

        url = env.get("RUNBOOK_DATABASE_URL")
        store = PostgresStore(Path(env["RUNBOOK_STATE_DIR"]), url) if url else Store(Path(env["RUNBOOK_STATE_DIR"]))
        store.save(record)
        store.close()


def _measure(backends: dict[str, dict[str, str]], workspace: Path, repeat: int) -> int:
    names = list(backends)
    print(f"  {'median wall (median CPU) per process':36s} " + "".join(f"{n:>22s}" for n in names))
    worst = {n: 0.0 for n in names}
    for label, query in QUERIES.items():
        cells = []
        for name in names:
            CPU_TIMES.clear()
            times = [timed(query, backends[name], workspace) for _ in range(repeat)]
            worst[name] = max(worst[name], statistics.median(times))
            cells.append(f"{1000 * statistics.median(times):8.0f} ms ({1000 * statistics.median(CPU_TIMES):5.0f})")
        print(f"  {label:36s} " + "".join(f"{c:>22s}" for c in cells))
    cli = [timed(["--version"], backends[names[0]], workspace) for _ in range(repeat)]
    print(f"  {'(runbook --version, for scale)':36s} {1000 * statistics.median(cli):8.0f} ms")
    print("slowest median: " + ", ".join(f"{n} {1000 * w:.0f} ms" for n, w in worst.items()) + " (goal: under 300 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
