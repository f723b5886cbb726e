"""Rows read back from any store are untrusted input (issue 19, point 3). A row of the team's PostgreSQL or
of history.db, a run.json, a pending/ entry whose id or step name would make a path outside the state dir
is shown as `damaged` with its id escaped, never becomes a path, and no command writes or chmods anything
outside the state dir. Each attack is planted as an attacker would: plain SQL with the database URL, or a
file written into a run folder; then the real CLI reads it. Before the fix `log` wrote the attacker's
record and log outside the state dir and chmodded the folders on the way (0755 -> 0700)."""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any
import pytest

from conftest import copy_workspace, runbook

# From runs/: zzzzz/.. is runs, then the state dir, then `home`, the folder that holds it.
HOSTILE_ID = "zzzzz/../../../escape6"
SHOWN_ID = "zzzzz\\x2f..\\x2f..\\x2f..\\x2fescape6"
PRUNED_ID = "../../victim"  # runs/../.. is `home`: prune used to remove home/victim
CONTROL_ID = "zzzzy\x1b]0;owned\x07"  # retitles a terminal
SHOWN_CONTROL_ID = "zzzzy\\x1b]0;owned\\x07"
# From runs/ID/steps/: 01-x/.. is steps, then the run folder, runs, the state dir, `home`.
HOSTILE_STEP = "x/../../../../../escape7"
SHOWN_STEP = "x\\x2f..\\x2f..\\x2f..\\x2f..\\x2f..\\x2fescape7"
PLANTED_ID = "20991231T235959.000000Z-conditional-beef"  # a run id as runbook gives them


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder holding the state dir, 0755 as a home folder is: a chmod to 0700 would show."""
    folder = tmp_path / "home"
    folder.mkdir()
    folder.chmod(0o755)
    monkeypatch.setenv("RUNBOOK_STATE_DIR", str(folder / "state"))
    return folder


@pytest.fixture
def good_run(home: Path, tmp_path: Path) -> tuple[Path, str]:
    """A workspace and one real run of `conditional` in it (the row that must still show)."""
    ws = copy_workspace("alien-workspace", tmp_path / "alien")
    done = runbook("run", "conditional", cwd=ws)
    assert done.returncode == 0, done.stderr
    return ws, json.loads(runbook("history", "--json", cwd=ws).stdout)[0]["id"]


def outside(tmp_path: Path, state: Path, *kept: Path) -> dict[str, tuple[int, bool]]:
    """Every path under tmp_path but the state dir (and `kept`), and every folder above tmp_path, with its
    mode: a file written or a folder chmodded outside the state dir changes it."""
    seen = {str(p): (p.lstat().st_mode, True) for p in (tmp_path, *tmp_path.parents)}
    for folder, dirs, files in os.walk(tmp_path):
        dirs[:] = [d for d in dirs if Path(folder, d) not in (state, *kept)]
        for name in dirs + files:
            path = os.path.join(folder, name)
            seen[path] = (os.lstat(path).st_mode, name in dirs)
    return seen


def planted_record(state: Path, good: str, run_id: str, step: str = "quiet", record_id: str | None = None) -> str:
    """The good run's run.json as an attacker would edit it: another id, a step renamed."""
    record = json.loads((state / "runs" / good / "run.json").read_text())
    record["id"] = run_id if record_id is None else record_id
    record["steps"][0]["name"] = step
    return json.dumps(record)


def plant_row(backend: str, state: Path, run_id: str, record: str | None, status: str = "succeeded") -> None:
    """A runs row (and, in PostgreSQL, its record and the first step's log) written with plain SQL."""
    started = time.time() - 60
    row = (run_id, "conditional", "1.2.0", status, 0, "mallory", "cli", "local", "", 0, started, started + 1,
           1, -1, socket.gethostname(), "", "", "", "")
    columns = ("id, runbook, version, status, exit_code, operator, trigger, inventory, limit_pattern, check_mode, "
               "started_at, ended_at, pid, pid_start, hostname, hosts_failed, message, lock_name, runbook_sha256")
    if backend == "sqlite":
        with sqlite3.connect(state / "history.db") as db:
            db.execute(f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' * len(row))})", row)
        return
    import psycopg

    with psycopg.connect(os.environ["RUNBOOK_DATABASE_URL"], autocommit=True) as db:
        db.execute(f"INSERT INTO runs ({columns}, record) VALUES ({', '.join(['%s'] * (len(row) + 1))})",
                   (*row, record))
        db.execute("INSERT INTO step_logs VALUES (%s, 0, %s, NULL)", (run_id, "attacker content\n"))


def every(ws: Path, *commands: tuple[str, ...], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Each command run by the real CLI, all of them before any is judged (what they left outside first)."""
    return {" ".join(argv): runbook(*argv, cwd=ws, env=env) for argv in commands}


def test_a_hostile_run_id_is_shown_damaged_escaped_and_never_a_path(
        backend: str, good_run: tuple[Path, str], home: Path, tmp_path: Path) -> None:
    ws, good = good_run
    state = home / "state"
    for run_id in (HOSTILE_ID, CONTROL_ID, PRUNED_ID):
        plant_row(backend, state, run_id, planted_record(state, good, run_id))
    (home / "victim").mkdir()
    (home / "victim" / "precious").write_text("kept")
    site = tmp_path / "site"
    before = outside(tmp_path, state, site)
    done = every(ws, ("history",), ("history", "--json"), ("history", "--status", "succeeded", "--json"),
                 ("log", "last"), ("report", "last", "--format", "md"), ("log", good, "--step", "quiet"),
                 ("report", good, "--format", "md"), ("show", "conditional"), ("site", "-o", str(site)),
                 ("prune", "--older-than", "1s"))
    assert outside(tmp_path, state, site) == before

    history = done["history"]
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert any(SHOWN_ID in line and "damaged" in line for line in lines), history.stdout
    assert any(SHOWN_CONTROL_ID in line and "damaged" in line for line in lines), history.stdout
    assert any(good in line and "succeeded" in line for line in lines), history.stdout
    listed = {r["id"]: r for r in json.loads(done["history --json"].stdout)}
    assert listed[SHOWN_ID]["status"] == listed[SHOWN_CONTROL_ID]["status"] == "damaged"
    assert "damaged" in listed[SHOWN_ID]["message"] and listed[good]["status"] == "succeeded"
    assert [r["id"] for r in json.loads(done["history --status succeeded --json"].stdout)] == [good]
    for name in ("log last", "report last --format md"):
        refused = done[name]
        assert refused.returncode == 1 and "damaged" in refused.stderr and SHOWN_ID in refused.stderr, refused.stderr
        assert "internal error" not in refused.stderr and "attacker" not in refused.stdout
    step = done[f"log {good} --step quiet"]
    assert step.returncode == 0 and "== step 1 quiet" in step.stdout, step.stderr
    assert done[f"report {good} --format md"].returncode == 0
    show = done["show conditional"]
    assert show.returncode == 0 and f"{SHOWN_ID}  damaged" in show.stdout and good in show.stdout, show.stderr
    assert done[f"site -o {site}"].returncode == 0, done[f"site -o {site}"].stderr
    index = (site / "index.html").read_text()
    assert SHOWN_ID in index and f'href="runs/{good}.html"' in index
    assert sorted(p.name for p in (site / "runs").iterdir()) == [f"{good}.html"]
    assert done["prune --older-than 1s"].returncode == 0, done["prune --older-than 1s"].stderr


def test_a_hostile_step_name_in_a_team_database_record_never_becomes_a_folder(
        team_db: str, good_run: tuple[Path, str], home: Path, tmp_path: Path) -> None:
    ws, good = good_run
    state = home / "state"
    plant_row("postgresql", state, PLANTED_ID, planted_record(state, good, PLANTED_ID, HOSTILE_STEP))
    site = tmp_path / "site"
    before = outside(tmp_path, state, site)
    reads = (("log", PLANTED_ID), ("log", PLANTED_ID, "--step", "1"), ("report", PLANTED_ID, "--format", "html"))
    done = every(ws, *reads, ("site", "-o", str(site)), ("log", good, "--step", "quiet"))
    assert outside(tmp_path, state, site) == before
    assert not (state / "runs" / "escape7").exists() and not (state / "runs" / PLANTED_ID / "steps").exists()

    for argv in reads:
        read = done[" ".join(argv)]
        assert read.returncode == 1 and "damaged" in read.stderr and SHOWN_STEP in read.stderr, (argv, read.stderr)
        assert PLANTED_ID in read.stderr and "internal error" not in read.stderr
    assert done[f"site -o {site}"].returncode == 0, done[f"site -o {site}"].stderr
    assert sorted(p.name for p in (site / "runs").iterdir()) == [f"{good}.html"]
    assert PLANTED_ID in (site / "index.html").read_text()
    assert done[f"log {good} --step quiet"].returncode == 0


def test_a_hostile_run_json_in_a_run_folder_is_damaged_and_never_rewritten_elsewhere(
        good_run: tuple[Path, str], home: Path, tmp_path: Path) -> None:
    """A run.json naming another run (`../../../escape8`) and a step `x/../..`, its row `running` on this
    host with its process gone: reaping it used to save the record at the path its id spells."""
    ws, good = good_run
    state = home / "state"
    folder = state / "runs" / PLANTED_ID
    folder.mkdir(mode=0o700)
    (folder / "run.json").write_text(planted_record(state, good, PLANTED_ID, HOSTILE_STEP, "../../../escape8"))
    plant_row("sqlite", state, PLANTED_ID, None, status="running")
    before = outside(tmp_path, state)
    reads = (("log", PLANTED_ID, "--step", "1"), ("report", PLANTED_ID, "--format", "junit"))
    done = every(ws, ("history", "--json"), *reads)
    assert outside(tmp_path, state) == before and not (tmp_path / "escape8").exists()

    history = done["history --json"]
    assert history.returncode == 0, history.stderr
    listed = {r["id"]: r for r in json.loads(history.stdout)}
    assert listed[PLANTED_ID]["status"] == "damaged" and "..\\x2f..\\x2f..\\x2fescape8" in listed[PLANTED_ID]["message"]
    assert listed[good]["status"] == "succeeded"
    for argv in reads:
        read = done[" ".join(argv)]
        assert read.returncode == 1 and "damaged" in read.stderr and PLANTED_ID in read.stderr, (argv, read.stderr)


def test_a_hostile_pending_entry_is_not_uploaded_and_never_becomes_a_folder(
        team_db: str, good_run: tuple[Path, str], home: Path, tmp_path: Path) -> None:
    """A run kept in pending/ whose run.json has a step `x/../..`: `db sync` (here run by history) marks it
    damaged instead of uploading it for every other machine to write out."""
    ws, good = good_run
    state = home / "state"
    folder = state / "runs" / PLANTED_ID
    folder.mkdir(mode=0o700)
    (folder / "run.json").write_text(planted_record(state, good, PLANTED_ID, HOSTILE_STEP))
    (state / "pending").mkdir(mode=0o700, exist_ok=True)
    (state / "pending" / PLANTED_ID).touch()
    other = home / "other-machine"
    before = outside(tmp_path, state, other)
    synced = every(ws, ("history", "--json"))
    elsewhere = every(ws, ("log", PLANTED_ID), ("log", good, "--step", "quiet"), env={"RUNBOOK_STATE_DIR": str(other)})
    assert outside(tmp_path, state, other) == before

    history = synced["history --json"]
    assert history.returncode == 0, history.stderr
    listed = {r["id"]: r for r in json.loads(history.stdout)}
    assert listed[PLANTED_ID]["status"] == "damaged" and SHOWN_STEP in listed[PLANTED_ID]["message"]
    assert listed[good]["status"] == "succeeded"
    read = elsewhere[f"log {PLANTED_ID}"]
    assert read.returncode == 1 and "damaged" in read.stderr and SHOWN_STEP in read.stderr, read.stderr
    assert elsewhere[f"log {good} --step quiet"].returncode == 0
    assert not list((state / "pending").iterdir())


def test_folders_are_never_made_through_a_link_or_a_dot_dot_out_of_the_state_dir(tmp_path: Path) -> None:
    from runner.errors import InvalidError
    from runner.store.files import make_private_dir_within

    state, away = tmp_path / "state", tmp_path / "away"
    away.mkdir(mode=0o755)
    make_private_dir_within(state, state / "runs")
    (state / "runs" / "link").symlink_to(away)
    for path in (state / "runs" / "link" / "steps", state / "runs" / ".." / ".." / "away" / "x", away / "y"):
        with pytest.raises(InvalidError):
            make_private_dir_within(state, path)
    assert list(away.iterdir()) == [] and away.stat().st_mode & 0o777 == 0o755
    assert make_private_dir_within(state, state / "runs" / "a" / "b").is_dir()
