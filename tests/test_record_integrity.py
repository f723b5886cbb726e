"""A record that cannot be rewritten unseen (issue 19, point 2): each attack on the chain, on SQLite and on
PostgreSQL, met with the message a user sees. Histories are seeded through the real Store API (real
records, logs and events, sealed as a run seals them); every command is the real CLI."""
from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import copy_workspace, runbook
from runner.store.records import HostResult, RunRecord, StepRecord


class Desk:
    """One operator's workspace and state dir on the backend under test."""

    def __init__(self, root: Path, state: Path, backend: str, database: str | None, server: Any = None) -> None:
        self.root, self.state, self.backend, self.database, self.server = root, state, backend, database, server

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return runbook(*args, cwd=self.root, env={"RUNBOOK_STATE_DIR": str(self.state), "RUNBOOK_USER": "alice", **env})

    def store(self) -> Any:
        import os

        from runner.definition.workspace import open_workspace
        from runner.store.sqlite import SqliteStore

        if self.backend == "sqlite":
            return SqliteStore(self.state)
        from runner.store.backends import open_store

        os.environ["RUNBOOK_STATE_DIR"] = str(self.state)
        try:
            return open_store(open_workspace(str(self.root)))
        finally:
            del os.environ["RUNBOOK_STATE_DIR"]

    def seed(self, count: int) -> list[str]:
        """`count` finished runs, each with a log and events, saved as a run saves them; their ids, oldest first."""
        store = self.store()
        ids = []
        try:
            for i in range(count):
                run_id = store.new_run_id("conditional")
                started = time.time()
                step = StepRecord(0, "check", "playbook", "succeeded", started, started + 1, rc=0, attempts=1,
                                  hosts={"web01": HostResult(ok=2, changed=i)}, data={"free_pct": 40 + i})
                record = RunRecord(id=run_id, runbook="conditional", version="1.0.0", runbook_sha256="a" * 64,
                                   workspace=str(self.root), inventory="local", limit="", started_at=started,
                                   operator="alice", trigger="cli", playbooks={"check.yml": "b" * 64},
                                   git_commit="c" * 40, hostname="laptop", ended_at=started + 2,
                                   status="succeeded", exit_code=0, message="all good", steps=[step])
                folder = step.folder(store.run_dir(run_id))
                folder.mkdir(parents=True)
                (folder / "stdout").write_text(f"PLAY RECAP web01 ok=2 changed={i}\n")
                (folder / "events.jsonl.gz").write_bytes(gzip.compress(b'{"event": "runner_on_ok"}\n'))
                store.save(record)
                ids.append(run_id)
        finally:
            store.close()
        return ids

    def sql(self, statement: str) -> None:
        """What someone holding the database (or the state dir) would do by hand."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.state / "history.db") as db:
                db.executescript(statement)
        else:
            self.server.psql(statement, str(self.database))


@pytest.fixture
def desk(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Desk:
    import os

    url = os.environ.get("RUNBOOK_DATABASE_URL") if backend == "postgresql" else None
    server = request.getfixturevalue("pg_server") if url else None
    return Desk(copy_workspace("alien-workspace", tmp_path / "ws"), tmp_path / "state", backend,
                url.rsplit("/", 1)[1] if url else None, server)


def _run_json(desk: Desk, run_id: str) -> Path:
    return desk.state / "runs" / run_id / "run.json"


def _edit(path: Path, **changes: Any) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc, indent=2))


def test_an_edited_run_json_is_refused_by_rebuild_and_named_by_verify(desk: Desk) -> None:
    first, victim, last = desk.seed(3)
    assert desk("db", "verify").returncode == 0
    _edit(_run_json(desk, victim), message="nothing to see", git_commit="d" * 40)
    rebuilt = desk("db", "rebuild")
    assert rebuilt.returncode == 1, rebuilt.stderr
    assert f"run {victim}: finished and sealed in the chain" in rebuilt.stderr and "refused" in rebuilt.stderr
    verified = desk("db", "verify")
    if desk.backend == "sqlite":  # run.json is the record here: verify names it
        assert verified.returncode == 1
        assert f"chain broken at run {victim}: its record differs from the one sealed" in verified.stderr
    else:  # the database's record is untouched, and stays so
        assert verified.returncode == 0, verified.stderr
        report = json.loads(desk("report", victim, "--format", "json").stdout)
        assert report["message"] == "all good" and report["git_commit"] == "c" * 40


def test_every_field_and_each_log_is_covered(desk: Desk) -> None:
    if desk.backend == "sqlite":
        first, second = desk.seed(2)
        doc = json.loads(_run_json(desk, first).read_text())
        doc["steps"][0]["data"]["free_pct"] = 99
        _run_json(desk, first).write_text(json.dumps(doc))
        events = next((desk.state / "runs" / second / "steps").iterdir()) / "events.jsonl.gz"
        events.write_bytes(gzip.compress(b'{"event": "runner_on_failed"}\n'))
    else:
        first, second = desk.seed(2)
        desk.sql(f"UPDATE runs SET record = replace(record, '\"free_pct\": 40', '\"free_pct\": 99') "
                 f"WHERE id = '{first}'; UPDATE step_logs SET events = NULL WHERE run_id = '{second}'")
    verified = desk("db", "verify")
    assert verified.returncode == 1
    assert f"chain broken at run {first}: its record differs" in verified.stderr
    assert f"also: chain broken at run {second}: a step's log or events differ" in verified.stderr


def test_a_forged_pending_run_is_refused_by_sync(tmp_path: Path, team_db: str) -> None:
    desk = Desk(copy_workspace("alien-workspace", tmp_path / "ws"), tmp_path / "state", "postgresql", None)
    victim, = desk.seed(1)
    _edit(_run_json(desk, victim), status="failed", exit_code=1, operator="mallory")
    (desk.state / "pending").mkdir(exist_ok=True)
    (desk.state / "pending" / victim).touch()
    synced = desk("db", "sync")
    assert synced.returncode == 1 and f"run {victim}: finished and sealed" in synced.stderr, synced.stderr
    rows = json.loads(desk("history", "--json").stdout)
    assert [(r["status"], r["operator"]) for r in rows] == [("succeeded", "alice")]
    assert desk("db", "verify").returncode == 0


def test_deleting_the_newest_runs_breaks_the_checkpoint(desk: Desk, tmp_path: Path) -> None:
    ids = desk.seed(4)
    points = tmp_path / "checkpoints"
    made = desk("db", "checkpoint", "-o", str(points))
    assert made.returncode == 0 and "unsigned" in made.stderr, made.stderr
    assert desk("db", "verify", "--checkpoints", str(points)).returncode == 0
    gone = "', '".join(ids[-2:])
    desk.sql(f"DELETE FROM host_results WHERE run_id IN ('{gone}'); DELETE FROM steps WHERE run_id IN ('{gone}'); "
             f"DELETE FROM step_logs WHERE run_id IN ('{gone}'); DELETE FROM runs WHERE id IN ('{gone}'); "
             f"DELETE FROM chain WHERE run_id IN ('{gone}')")
    assert desk("db", "verify").returncode == 0  # without a checkpoint, a shortened chain is still a chain
    verified = desk("db", "verify", "--checkpoints", str(points))
    assert verified.returncode == 1
    assert "saw 4 link(s) and the chain now has 2: the newest 2 are gone" in verified.stderr
    assert f"the newest run it saw: {ids[-1]}" in verified.stderr


def test_a_middle_run_marked_pruned_is_named(desk: Desk) -> None:
    first, victim, last = desk.seed(3)
    desk.sql(f"INSERT INTO pruned VALUES ('{victim}', 0); DELETE FROM host_results WHERE run_id = '{victim}'; "
             f"DELETE FROM steps WHERE run_id = '{victim}'; DELETE FROM step_logs WHERE run_id = '{victim}'; "
             f"DELETE FROM runs WHERE id = '{victim}'")
    verified = desk("db", "verify")
    assert verified.returncode == 1
    assert f"chain broken at run {victim}: its history row was deleted without a prune record" in verified.stderr


def test_a_truncated_store_breaks_the_checkpoint(desk: Desk, tmp_path: Path) -> None:
    ids = desk.seed(2)
    points = tmp_path / "checkpoints"
    assert desk("db", "checkpoint", "-o", str(points)).returncode == 0
    tables = ("host_results", "steps", "step_logs", "runs", "chain")
    desk.sql(";".join(f"DELETE FROM {t}" for t in tables) if desk.backend == "sqlite"
             else f"TRUNCATE {', '.join(tables)}")
    verified = desk("db", "verify", "--checkpoints", str(points))
    assert verified.returncode == 1
    assert "saw 2 link(s) and the chain now has 0" in verified.stderr and ids[-1] in verified.stderr


def test_prune_is_written_into_the_chain(desk: Desk, tmp_path: Path) -> None:
    ids = desk.seed(3)
    points = tmp_path / "checkpoints"
    assert desk("db", "checkpoint", "-o", str(points)).returncode == 0
    time.sleep(1.1)
    pruned = desk("prune", "--older-than", "1s")
    assert pruned.returncode == 0 and sorted(pruned.stdout.split()) == ids, pruned.stderr
    verified = desk("db", "verify", "--checkpoints", str(points))
    assert verified.returncode == 0, verified.stderr
    assert "prune record 4: 3 run(s) removed by alice" in verified.stderr and "(unsigned)" in verified.stderr


def _key(tmp_path: Path, name: str) -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


@pytest.fixture
def team(tmp_path: Path) -> Iterator[tuple[Desk, Path]]:
    """A SQLite desk with [team] on: alice's key in allowed_signers."""
    desk = Desk(copy_workspace("alien-workspace", tmp_path / "ws"), tmp_path / "state", "sqlite", None)
    key = _key(tmp_path, "alice")
    (desk.root / "team").mkdir()
    (desk.root / "team" / "allowed_signers").write_text(f"alice {Path(f'{key}.pub').read_text()}")
    with open(desk.root / "runbook.toml", "a") as toml:
        toml.write('\n[team]\nallowed_signers = "team/allowed_signers"\n')
    yield desk, key


def test_signed_checkpoints_and_prune_records_with_team(team: tuple[Desk, Path], tmp_path: Path) -> None:
    desk, key = team
    desk.seed(3)
    points = tmp_path / "checkpoints"
    unsigned = desk("db", "checkpoint", "-o", str(points), SSH_AUTH_SOCK="")
    assert unsigned.returncode == 3 and "[team] is on" in unsigned.stderr
    assert desk("db", "checkpoint", "--key", str(key), "-o", str(points)).returncode == 0
    assert desk("prune", "--older-than", "0s", "--keep", "1", "--key", str(key)).returncode == 0
    assert desk("db", "checkpoint", "--key", str(key), "-o", str(points)).returncode == 0
    verified = desk("db", "verify", "--checkpoints", str(points))
    assert verified.returncode == 0, verified.stderr
    assert "2 run(s) removed by alice" in verified.stderr and "signed by key SHA256:" in verified.stderr
    # A checkpoint line changed by hand (an older, shorter chain claimed) is refused.
    lines = points.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["chain_length"] = 2
    points.write_text(lines[0] + "\n" + json.dumps(forged) + "\n")
    refused = desk("db", "verify", "--checkpoints", str(points))
    assert refused.returncode == 1 and "its signature does not verify" in refused.stderr, refused.stderr
    # A prune record appended by hand, unsigned, is named.
    entry = {"removed": ["x"], "by": "mallory", "host": "h", "at": "2026-12-07T00:00:00.000000Z", "signer": ""}
    from runner.store.chain import PRUNE, canonical, prune_digest

    store = desk.store()
    store._chain_insert("", prune_digest(entry), PRUNE, canonical(entry).decode())
    store.close()
    forged_prune = desk("db", "verify")
    assert forged_prune.returncode == 1
    assert "by mallory" in forged_prune.stderr and "not signed, and [team] requires" in forged_prune.stderr


def test_a_checkpoint_signed_by_another_key_than_pinned_is_refused(tmp_path: Path) -> None:
    desk = Desk(copy_workspace("alien-workspace", tmp_path / "ws"), tmp_path / "state", "sqlite", None)
    desk.seed(1)
    alice, bob = _key(tmp_path, "alice"), _key(tmp_path, "bob")
    points = tmp_path / "checkpoints"
    assert desk("db", "checkpoint", "--key", str(bob), "-o", str(points)).returncode == 0
    assert desk("db", "verify", "--checkpoints", str(points), "--key", f"{bob}.pub").returncode == 0
    refused = desk("db", "verify", "--checkpoints", str(points), "--key", f"{alice}.pub")
    assert refused.returncode == 1 and "not by --key" in refused.stderr


def test_the_app_role_cannot_rewrite_finished_runs(pg_server: Any, team_db: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    database = team_db.rsplit("/", 1)[1]
    desk = Desk(copy_workspace("alien-workspace", tmp_path / "ws"), tmp_path / "state", "postgresql", database)
    role = f"app_{database[-6:]}"
    app_url = pg_server.new_role(role, database)
    upgraded = desk("db", "upgrade", "--grant", role)  # as the owner of the tables
    assert upgraded.returncode == 0 and f"granted role {role}" in upgraded.stderr, upgraded.stderr
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", app_url)
    ran = desk("run", "conditional")
    assert ran.returncode == 0, ran.stderr
    seeded = desk.seed(2)
    rows = json.loads(desk("history", "--json").stdout)
    assert [r["status"] for r in rows] == ["succeeded"] * 3
    verified = desk("db", "verify")
    assert verified.returncode == 0, verified.stderr
    victim = rows[-1]["id"]
    for statement, error in ((f"UPDATE runs SET status = 'failed' WHERE id = '{victim}'", "is finished"),
                             (f"DELETE FROM steps WHERE run_id = '{victim}'", "is sealed in the chain"),
                             (f"DELETE FROM chain WHERE run_id = '{victim}'", "permission denied"),
                             ("TRUNCATE runs, chain CASCADE", "permission denied")):
        with pytest.raises(RuntimeError, match=error):
            pg_server.psql(statement, url=app_url)
    pruned = desk("prune", "--older-than", "0s", "--keep", "1")
    assert pruned.returncode == 0 and len(pruned.stdout.split()) == 2, pruned.stderr
    assert set(pruned.stdout.split()) == {victim, seeded[0]}
    assert desk("db", "verify").returncode == 0


def test_db_upgrade_seals_runs_linked_by_the_old_digest(tmp_path: Path) -> None:
    desk = Desk(copy_workspace("alien-workspace", tmp_path / "ws"), tmp_path / "state", "sqlite", None)
    ids = desk.seed(3)
    from runner.store.chain import chain_hash

    store = desk.store()  # the chain as schema 3 left it: the old digest, no body
    previous, links = "", []
    for seq, run_id in enumerate(ids, 1):
        digest = store._legacy_digest(run_id)
        links.append((seq, run_id, digest, previous, chain_hash(previous, digest)))
        previous = links[-1][-1]
    store.close()
    desk.sql("DELETE FROM chain;" + "".join(
        f"INSERT INTO chain (seq, run_id, digest, prev_hash, hash, linked_at, body) VALUES "
        f"({s}, '{r}', '{d}', '{p}', '{h}', 0, NULL);" for s, r, d, p, h in links)
        # ...and the newest run pruned as schema 3 pruned: rows gone, noted in `pruned`.
        + "".join(f"DELETE FROM {t} WHERE {c} = '{ids[2]}';" for t, c in
                  (("host_results", "run_id"), ("steps", "run_id"), ("runs", "id")))
        + f"INSERT INTO pruned VALUES ('{ids[2]}', 0); PRAGMA user_version = 3;")
    verified = desk("db", "verify")  # migrated on open: the old prune is now a prune record
    assert verified.returncode == 0, verified.stderr
    assert "1 run(s) removed by schema 4 migration" in verified.stderr
    upgraded = desk("db", "upgrade")
    assert upgraded.returncode == 0 and "sealed 2 finished run(s) with the full digest" in upgraded.stderr, upgraded.stderr
    _edit(_run_json(desk, ids[0]), message="rewritten")  # the old digest did not cover the message
    verified = desk("db", "verify")
    assert verified.returncode == 1 and f"chain broken at run {ids[0]}: its record differs" in verified.stderr


def test_a_checkpoint_signed_through_ssh_agent(team: tuple[Desk, Path], tmp_path: Path) -> None:
    desk, key = team
    desk.seed(1)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if sock.exists():
                break
            time.sleep(0.1)
        subprocess.run(["ssh-add", "-q", str(key)], env={"SSH_AUTH_SOCK": str(sock)}, check=True,
                       capture_output=True)
        points = tmp_path / "checkpoints"
        made = desk("db", "checkpoint", "-o", str(points), SSH_AUTH_SOCK=str(sock))
        assert made.returncode == 0, made.stderr
        assert "BEGIN SSH SIGNATURE" in json.loads(points.read_text())["signature"]
        verified = desk("db", "verify", "--checkpoints", str(points))
        assert verified.returncode == 0, verified.stderr
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_db_import_refuses_a_changed_copy_of_an_imported_run(tmp_path: Path, team_db: str) -> None:
    local = Desk(copy_workspace("alien-workspace", tmp_path / "ws"), tmp_path / "local-state", "sqlite", None)
    victim, = local.seed(1)
    team = Desk(local.root, tmp_path / "state", "postgresql", None)
    assert team("db", "import", str(local.state)).returncode == 0
    _edit(_run_json(local, victim), operator="mallory")
    again = team("db", "import", str(local.state))
    assert again.returncode == 1 and f"run {victim}: finished and sealed" in again.stderr, again.stderr
    assert [r["operator"] for r in json.loads(team("history", "--json").stdout)] == ["alice"]
