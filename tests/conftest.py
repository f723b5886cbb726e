"""Shared test fixtures. Every test gets its own state dir; a test that touches the repository's own
.runbook/ (the user's default state) fails the session."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Read before the autouse fixture scrubs the environment: tests needing root or packages fail under CI.
IN_CI = bool(os.environ.get("CI"))
_CI_VARS = ("CI", "RUNBOOK_DATABASE_URL", "GITHUB_ACTIONS", "GITHUB_ACTOR", "GITHUB_RUN_ID", "GITHUB_REPOSITORY", "GITHUB_SERVER_URL",
            "GITHUB_STEP_SUMMARY", "GITLAB_CI", "GITLAB_USER_LOGIN", "CI_JOB_URL", "JENKINS_URL", "BUILD_URL",
            "BUILD_USER_ID", "TF_BUILD", "RUNBOOK_WORKSPACE", "RUNBOOK_USER", "RUNBOOK_STATE_DIR", "NO_COLOR")


@pytest.fixture(autouse=True, scope="session")
def _repo_state_untouched() -> Iterator[None]:
    state = REPO / ".runbook"
    before = _snapshot(state)
    yield
    assert _snapshot(state) == before, f"a test wrote the repository's default state dir {state}"


def _snapshot(folder: Path) -> list[tuple[str, int]]:
    if not folder.exists():
        return []
    return sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _CI_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(tmp_path / "ansible-tmp"))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def copy_workspace(name: str, target: Path) -> Path:
    """A copy of tests/fixtures/<name> (or of the repository itself for 'repo') at `target`."""
    if name == "repo":
        target.mkdir(parents=True, exist_ok=True)
        for folder in ("runbooks", "playbooks", "roles", "inventories"):
            if (REPO / folder).is_dir():
                shutil.copytree(REPO / folder, target / folder)
        return target
    shutil.copytree(FIXTURES / name, target)
    return target


@pytest.fixture
def alien(tmp_path: Path) -> Path:
    """A workspace written to SPEC.md with its own runbooks, playbooks and inventories."""
    return copy_workspace("alien-workspace", tmp_path / "alien")


def runbook(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process, as a user would."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=full_env, input=input,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def fleet_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Four isolated SSH hosts (fleet-01..04) shared by the library tests; their inventory is
    `fleet_hosts.inventory_path`. Without root or sshd: fail under CI, skip elsewhere."""
    import fleet  # tests/fleet.py

    problem = fleet.unavailable_reason()
    if problem:
        if IN_CI:
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    started = fleet.start_fleet(4, tmp_path_factory.mktemp("fleet"))
    yield started
    started.stop()


def on_host(fleet: Any, name: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command on one fleet host (as root) over its sshd."""
    host = next(h for h in fleet.hosts if h.name == name)
    done = subprocess.run(fleet.ssh_argv(host, command), capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, f"{name}: {command}: {done.stderr}"
    return done


def chromium_dom(page: Path, tmp_path: Path) -> str:
    """The page's DOM after a real headless Chromium loaded and rendered it."""
    done = subprocess.run(_chromium(tmp_path) + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def chromium_screenshot(page: Path, target: Path, tmp_path: Path, size: str = "1000,1400") -> bytes:
    """A PNG of the page as a real headless Chromium rendered it (at `size`, width,height)."""
    done = subprocess.run(_chromium(tmp_path) + ["--hide-scrollbars", f"--window-size={size}", f"--screenshot={target}",
                                                 page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and target.is_file(), done.stderr
    return target.read_bytes()


def _chromium(tmp_path: Path) -> list[str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if IN_CI:
            pytest.fail("chromium is missing: run tests/install-test-deps.sh", pytrace=False)
        pytest.skip("chromium is not installed")
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A private PostgreSQL server (tests/pg.py) for the whole session, stopped afterwards.
    Without PostgreSQL: fail under CI, skip elsewhere."""
    import pg  # tests/pg.py

    problem = pg.unavailable_reason()
    if problem:
        if IN_CI:
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    server = pg.start_server()
    yield server
    server.remove()


@pytest.fixture
def team_db(pg_server: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database on the private server, set as RUNBOOK_DATABASE_URL; returns its URL."""
    import re
    import secrets

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + "_" + secrets.token_hex(3)
    url = str(pg_server.new_database(name))
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Runs a store-touching test on both backends: SQLite in the state dir, then the team's PostgreSQL."""
    if request.param == "postgresql":
        request.getfixturevalue("team_db")
    return str(request.param)
