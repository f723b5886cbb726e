"""`runbook db verify` at years of runs: fills a SQLite state dir (run folders with run.json, a log and
events per step, rows and the chain) and a PostgreSQL database with the same N sealed runs (default
100,000), sealed with the store's own functions exactly as a finished run is, then times one `db verify`
process on each. The goal is well under a minute at 100,000 runs.

    python bench/verify_scale.py [--runs 100000] [--no-postgres] [--database-url postgresql://...]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from runner.store.base import RUN_COLUMNS, folder_logs, index_rows
from runner.store.chain import RUN, chain_hash, run_digest
from runner.store.records import HostResult, RunRecord, StepRecord

EVENTS = gzip.compress(b'{"event": "runner_on_ok", "host": "web01"}\n' * 20)


def records(count: int) -> Iterator[RunRecord]:
    start = time.time() - count * 360
    for i in range(count):
        started = start + i * 360
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started)) + f".000000Z-health-check-{i % 65536:04x}"
        steps = [StepRecord(0, "check", "playbook", "succeeded", started, started + 30, rc=0, attempts=1,
                            hosts={f"web0{h}": HostResult(ok=3) for h in range(1, 5)}, data={"free_pct": 40})]
        yield RunRecord(id=run_id, runbook="health-check", version="1.0.0", runbook_sha256="a" * 64, workspace="/ws",
                        inventory="production", limit="", started_at=started, operator="alice@ops", trigger="cron",
                        playbooks={"check.yml": "b" * 64}, git_commit="c" * 40, hostname="vm", ended_at=started + 31,
                        status="succeeded", exit_code=0, steps=steps)


def write_folder(runs: Path, record: RunRecord) -> str:
    """run.json, the step's stdout and events, as a run leaves them; the run.json text."""
    folder = record.steps[0].folder(runs / record.id)
    folder.mkdir(parents=True)
    (folder / "stdout").write_text("PLAY [check] ***\nok: [web01]\n" * 10)
    (folder / "events.jsonl.gz").write_bytes(EVENTS)
    text = json.dumps(record.to_dict(), indent=2)
    (runs / record.id / "run.json").write_text(text)
    return text


def fill_sqlite(state: Path, count: int) -> None:
    from runner.store.sqlite import Store

    store = Store(state)
    db = store.db
    previous = ""
    db.execute("BEGIN")
    for seq, record in enumerate(records(count), 1):
        text = write_folder(state / "runs", record)
        run, steps, hosts = index_rows(record)
        logs = sorted(folder_logs(record, state / "runs" / record.id))
        digest = run_digest(json.loads(text), logs)
        db.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})", run)
        db.executemany("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", steps)
        db.executemany("INSERT INTO host_results VALUES (?,?,?,?,?,?,?,?,?)", hosts)
        link = chain_hash(previous, digest)
        db.execute("INSERT INTO chain (seq, run_id, digest, prev_hash, hash, linked_at, kind, body) VALUES (?,?,?,?,?,?,?,?)",
                   (seq, record.id, digest, previous, link, time.time(), RUN, json.dumps(logs)))
        previous = link
    db.execute("COMMIT")
    store.close()


def fill_postgres(url: str, state: Path, count: int) -> None:
    from runner.store.postgres import PostgresStore

    store = PostgresStore(state, url)
    conn = store.conn
    previous = ""
    rows: dict[str, list[tuple[Any, ...]]] = {"runs": [], "steps": [], "host_results": [], "step_logs": [], "chain": []}
    for seq, record in enumerate(records(count), 1):
        text = json.dumps(record.to_dict())
        run, steps, hosts = index_rows(record, text)
        stdout = "PLAY [check] ***\nok: [web01]\n" * 10
        from runner.store.chain import bytes_sha, text_sha

        logs = [[0, text_sha(stdout.encode()), bytes_sha(EVENTS)]]
        digest = run_digest(json.loads(text), logs)
        link = chain_hash(previous, digest)
        rows["runs"].append(run)
        rows["steps"] += steps
        rows["host_results"] += hosts
        rows["step_logs"].append((record.id, 0, stdout, EVENTS))
        rows["chain"].append((seq, record.id, digest, previous, link, time.time(), RUN, json.dumps(logs)))
        previous = link
    columns = {"runs": f" ({', '.join(RUN_COLUMNS)})",
               "chain": " (seq, run_id, digest, prev_hash, hash, linked_at, kind, body)"}
    with conn.transaction(), conn.cursor() as cur:
        for table, items in rows.items():
            with cur.copy(f"COPY {table}{columns.get(table, '')} FROM STDIN") as copy:
                for item in items:
                    copy.write_row(item)
    conn.execute("SELECT setval('chain_seq_seq', %s)", (count,))
    conn.execute("ANALYZE")
    store.close()


def timed_verify(env: dict[str, str], workspace: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one `runbook db verify` process; it must pass."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "runbook"), "-w", str(workspace), "db", "verify"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"db verify failed: {done.stderr}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def bench_sqlite(state: Path, runs: int, workspace: Path) -> None:
    began = time.perf_counter()
    fill_sqlite(state, runs)
    print(f"sqlite: filled {runs} sealed runs in {time.perf_counter() - began:.0f}s")
    wall, cpu = timed_verify(dict(os.environ, RUNBOOK_STATE_DIR=str(state), RUNBOOK_DATABASE_URL=""), workspace)
    print(f"  db verify, sqlite, {runs} runs: {wall:.1f}s wall ({cpu:.1f}s CPU)  (goal: well under 60s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--database-url", help="an empty PostgreSQL database to fill (default: a private server)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    server = None
    with tempfile.TemporaryDirectory(prefix="runbook-verify-") as tmp:
        workspace = Path(tmp) / "ws"
        (workspace / "runbooks").mkdir(parents=True)
        if not args.no_sqlite:
            bench_sqlite(Path(tmp) / "sqlite-state", args.runs, workspace)
        if args.no_postgres:
            return 0
        url = args.database_url
        try:
            if url is None:
                import pg  # tests/pg.py

                server = pg.start_server()
                url = server.new_database("bench")
            pg_state = Path(tmp) / "pg-state"
            began = time.perf_counter()
            fill_postgres(url, pg_state, args.runs)
            print(f"postgresql: filled {args.runs} sealed runs in {time.perf_counter() - began:.0f}s")
            wall, cpu = timed_verify(dict(os.environ, RUNBOOK_STATE_DIR=str(pg_state), RUNBOOK_DATABASE_URL=url),
                                     workspace)
            print(f"  db verify, postgresql, {args.runs} runs: {wall:.1f}s wall ({cpu:.1f}s CPU of the client)")
        finally:
            if server is not None:
                server.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
