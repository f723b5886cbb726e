"""Unattended use: JUnit for CI, CI detection and job summaries, the example pipelines, webhook
notifications, --quiet and prune. Real runs, a real JUnit parser, a real local HTTP server."""
from __future__ import annotations

import http.server
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from junitparser import Error, Failure, JUnitXml, Skipped

from conftest import REPO, copy_workspace, runbook

SECRET = "Wq-9d1c-n0tify-SECRET"


def _records(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "runs").glob("*/run.json"))]


def test_junit_of_a_failing_two_host_run(alien: Path, tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    done = runbook("run", "fail-on-host", "--junit", str(report), cwd=alien)
    assert done.returncode == 1
    xml = JUnitXml.fromfile(str(report))
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == ["01 check", "02 after"]
    cases = {(c.classname, c.name): c for c in suites["01 check"]}
    failed = cases[("fail-on-host.check.web2", "Check the host is not the broken one")]
    assert isinstance(failed.result[0], Failure) and "web2 is broken" in failed.result[0].message
    assert cases[("fail-on-host.check.web1", "Check the host is not the broken one")].is_passed
    after = list(suites["02 after"])
    assert len(after) == 1 and isinstance(after[0].result[0], Skipped)  # never ran: abort
    assert xml.failures == 1 and xml.tests == 3


def test_junit_unreachable_is_an_error_and_skips_are_skipped(alien: Path, tmp_path: Path) -> None:
    report = tmp_path / "unreachable.xml"
    assert runbook("run", "unreachable", "--junit", str(report), cwd=alien).returncode == 4
    case = next(iter(next(iter(JUnitXml.fromfile(str(report))))))
    assert isinstance(case.result[0], Error) and case.classname == "unreachable.ping.ghost"
    report = tmp_path / "conditional.xml"
    assert runbook("run", "conditional", "--junit", str(report), cwd=alien).returncode == 0
    quiet, loud = list(JUnitXml.fromfile(str(report)))
    assert all(c.is_passed for c in quiet)
    assert [isinstance(c.result[0], Skipped) for c in loud] == [True]  # when: false


def test_ci_run_records_user_trigger_job_url_and_summary(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier steps\n")
    env = {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octocat", "GITHUB_SERVER_URL": "https://github.example",
           "GITHUB_REPOSITORY": "ops/runbooks", "GITHUB_RUN_ID": "4242", "GITHUB_STEP_SUMMARY": str(summary)}
    done = runbook("run", "fail-on-host", cwd=alien, env=env)
    assert done.returncode == 1
    record = _records(state_dir)[0]
    assert (record["operator"], record["trigger"]) == ("octocat", "ci")
    assert record["ci_job_url"] == "https://github.example/ops/runbooks/actions/runs/4242"
    text = summary.read_text()
    assert text.startswith("# earlier steps\n")  # appended, not overwritten
    assert "runbook `fail-on-host` 1.0.0: failed" in text
    assert re.search(r"\| check \| web2 \| [^|]*web2 is broken", text)


def test_gitlab_run_and_ci_implies_non_interactive(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    env = {"GITLAB_CI": "true", "CI": "true", "GITLAB_USER_LOGIN": "gitlab-dev",
           "CI_JOB_URL": "https://gitlab.example/ops/-/jobs/7"}
    done = runbook("run", "maintenance-window", "-p", f"log_file={tmp_path / 'log'}", cwd=alien, env=env)
    assert done.returncode == 5  # a manual step in CI waits instead of prompting
    record = _records(state_dir)[0]
    assert (record["operator"], record["trigger"], record["ci_job_url"]) == (
        "gitlab-dev", "ci", "https://gitlab.example/ops/-/jobs/7")


def _pipeline_commands(path: Path) -> list[str]:
    """The runbook commands an example pipeline runs (GitHub `run:` steps, GitLab `script:` lines)."""
    data = yaml.safe_load(path.read_text())
    lines: list[str] = []
    for job in (data.get("jobs") or {}).values():
        lines += [step["run"] for step in job.get("steps", []) if "run" in step]
    for job in data.values():
        if isinstance(job, dict) and "script" in job:
            lines += job["script"]
    return [line for line in lines if "runbook " in line]


@pytest.mark.parametrize("pipeline", ["github-actions.yml", "gitlab-ci.yml"])
def test_example_pipelines_commands_work(pipeline: str, tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    # The pipelines install into .venv in the checkout: here that is the test's own environment.
    (ws / ".venv").symlink_to(Path(sys.executable).parent.parent)
    commands = _pipeline_commands(REPO / "docs" / "ci" / pipeline)
    assert commands, "the example pipeline runs no runbook command"
    env = dict(os.environ, CI="true", INVENTORY="local")
    for command in commands:
        command = command.replace("runbook run health-check", "runbook run health-check -p max_load_per_cpu=1000")
        done = subprocess.run(["bash", "-c", command], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}: {done.stderr}"
    report = JUnitXml.fromfile(str(ws / "reports" / "health-check.xml"))
    assert report.tests > 0 and report.failures == 0
    assert _records(state_dir)[0]["trigger"] == "ci"


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        _Hook.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    _Hook.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/ops", _Hook.received
    server.shutdown()


def _notify_config(ws: Path, url: str, on: str = '["failed", "waiting"]') -> None:
    (ws / "runbook.toml").write_text(f'inventory = "lab"\n[notify]\nwebhook = "{url}"\non = {on}\ntimeout = 3\n')


def test_webhook_receives_failure_without_secrets(alien: Path, webhook: tuple[str, list[bytes]]) -> None:
    url, received = webhook
    _notify_config(alien, url)
    (alien / "runbooks" / "leaky.yml").write_text((alien / "runbooks" / "leaky.yml").read_text().replace(
        "  - name: leak\n", "  - name: fail\n    playbook: fail_on.yml\n    vars: {bad_host: db1}\n  - name: leak\n"))
    done = runbook("run", "leaky", cwd=alien, env={"LEAKY_TOKEN": SECRET})
    assert done.returncode == 1, done.stderr
    assert len(received) == 1
    payload = json.loads(received[0])
    assert "leaky 0.1.0: failed" in payload["text"] and "db1" in payload["text"]
    assert payload["run"]["status"] == "failed" and payload["run"]["params"]["api_token"] == "***"
    assert SECRET.encode() not in received[0]
    assert runbook("run", "conditional", cwd=alien).returncode == 0
    assert len(received) == 1  # succeeded is not among the chosen outcomes


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("name, code", [("fail-on-host", 1), ("conditional", 0)])
def test_unreachable_webhook_leaves_the_exit_code(alien: Path, state_dir: Path, name: str, code: int) -> None:
    _notify_config(alien, f"http://127.0.0.1:{_closed_port()}/hook", on='["failed", "succeeded"]')
    done = runbook("run", name, cwd=alien)
    assert done.returncode == code
    assert "notification to http://127.0.0.1" in done.stderr
    assert "failed: URLError" in (state_dir / "logs" / "notify.log").read_text()
    assert _records(state_dir)[0]["exit_code"] == code


def test_invalid_notify_config_is_reported(alien: Path) -> None:
    (alien / "runbook.toml").write_text('[notify]\nwebhook = "ftp://x"\non = ["exploded"]\n')
    done = runbook("run", "conditional", cwd=alien)
    assert done.returncode == 3
    assert "notify.webhook" in done.stderr and "notify.on" in done.stderr


def test_quiet_prints_only_the_final_line(alien: Path) -> None:
    done = runbook("run", "conditional", "--quiet", cwd=alien)
    assert done.returncode == 0
    assert done.stderr.strip().count("\n") == 0 and re.match(r"run \S+: succeeded", done.stderr)
    failing = runbook("run", "fail-on-host", "--quiet", cwd=alien)
    assert "FAILED: web2" in failing.stderr and failing.stderr.strip().splitlines()[-1].startswith("run ")


def test_prune_removes_folders_and_rows_together(alien: Path, state_dir: Path) -> None:
    for _ in range(3):
        assert runbook("run", "conditional", cwd=alien).returncode == 0
    assert runbook("run", "fail-on-host", cwd=alien).returncode == 1
    ids = sorted(r["id"] for r in _records(state_dir))
    orphan = state_dir / "runs" / "20200101T000000Z-gone-0000"
    orphan.mkdir()
    os.utime(orphan, (0, 0))
    done = runbook("prune", "--older-than", "0s", "--keep", "1", cwd=alien)
    assert done.returncode == 0, done.stderr
    kept = sorted(p.name for p in (state_dir / "runs").iterdir())
    conditional = sorted(i for i in ids if "conditional" in i)
    assert kept == sorted([conditional[-1], next(i for i in ids if "fail-on-host" in i)])
    with sqlite3.connect(state_dir / "history.db") as db:
        for table, column in (("runs", "id"), ("steps", "run_id"), ("host_results", "run_id")):
            rows = {r[0] for r in db.execute(f"SELECT DISTINCT {column} FROM {table}")}
            assert rows == set(kept), table
    assert runbook("prune", "--older-than", "0s", cwd=alien).returncode == 0
    assert not any((state_dir / "runs").iterdir())
    assert runbook("history", "--json", cwd=alien).stdout.strip() == "[]"


def test_prune_keeps_recent_and_waiting_runs(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    assert runbook("run", "maintenance-window", "-p", f"log_file={tmp_path / 'l'}", cwd=alien).returncode == 5
    assert runbook("run", "conditional", cwd=alien).returncode == 0
    assert runbook("prune", "--older-than", "1d", cwd=alien).stdout == ""
    assert runbook("prune", "--older-than", "0s", cwd=alien).returncode == 0
    assert [r["status"] for r in _records(state_dir)] == ["waiting"]
