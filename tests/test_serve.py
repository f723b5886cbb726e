"""`runbook serve` for real: a service on a free loopback port, real HTTP, real runs of a real playbook on
the local connection, the store read back through the CLI."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import copy_workspace, runbook

TOKEN = "am-token-for-tests-0123"
HOOKS = """
[serve]
workers = 2
stop_timeout = "2s"

[hooks.am]
format = "alertmanager"
token_env = "AM_TOKEN"

[hooks.plain]
format = "json"
token_env = "PLAIN_TOKEN"
"""
RUNBOOK = """apiVersion: runbook/v1
name: disk-alert
title: Note a full disk reported by an alert
version: 1.0.0
kind: operation
targets: all
parameters:
  mountpoint: {type: string, required: true, pattern: "/[a-z0-9/]*", description: The full filesystem}
  message: {type: string, default: "disk full"}
steps:
  - name: note
    playbook: note.yml
triggers:
  - hook: am
    match: {alertname: DiskFull, severity: "~(warning|critical)"}
    from_alert: {mountpoint: labels.mountpoint}
    params: {message: "disk full from an alert"}
  - hook: plain
    match: {alertname: Slow}
    from_alert: {seconds: labels.seconds}
"""
SLOW = """apiVersion: runbook/v1
name: slow-alert
title: Sleeps as long as the alert says
version: 1.0.0
kind: operation
targets: all
concurrency: parallel
parameters:
  seconds: {type: integer, default: 1, min: 1, max: 600}
steps:
  - name: sleep
    playbook: sleep.yml
triggers:
  - hook: plain
    match: {alertname: Slow}
    from_alert: {seconds: labels.seconds}
    max_runs_per_hour: 100
"""
STORM = """apiVersion: runbook/v1
name: storm
title: Notes an alert that comes in storms
version: 1.0.0
kind: operation
targets: all
concurrency: parallel
parameters:
  message: {type: string, default: "storm"}
steps:
  - name: note
    playbook: note.yml
triggers:
  - hook: plain
    match: {alertname: Storm}
    limit: labels.host
    max_runs_per_hour: 3
"""


class Service:
    def __init__(self, root: Path, state: Path) -> None:
        self.root, self.state = root, state
        self.port = _free_port()
        self.env = dict(os.environ, RUNBOOK_STATE_DIR=str(state), RUNBOOK_WORKSPACE=str(root),
                        AM_TOKEN=TOKEN, PLAIN_TOKEN=TOKEN + "-plain")
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--listen", f"127.0.0.1:{self.port}"],
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("runbook serve did not answer /healthz")

    def request(self, method: str, path: str, body: bytes | None = None,
                token: str | None = None) -> tuple[int, Any, str]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                status, text = resp.status, resp.read().decode()
                kind = resp.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, text, kind = exc.code, exc.read().decode(), exc.headers.get("content-type", "")
        return status, json.loads(text) if "json" in kind else text, kind

    def post(self, hook: str, doc: Any, token: str = TOKEN) -> tuple[int, Any, str]:
        return self.request("POST", f"/hooks/{hook}", json.dumps(doc).encode(), token)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return runbook(*args, env=self.env)

    def record(self, run_id: str) -> dict[str, Any]:
        """The run's run.json (the queued record gives way to the started run's: missing for a moment)."""
        path = self.state / "runs" / run_id / "run.json"
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return dict(json.loads(path.read_text()))

    def wait_finished(self, run_id: str, timeout: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.record(run_id)
            if record["status"] not in ("queued", "running"):
                return record
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish: {self.record(run_id)['status']}")

    def stop(self) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        _out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _workspace(target: Path) -> Path:
    root = copy_workspace("alien-workspace", target)
    with open(root / "runbook.toml", "a", encoding="utf-8") as handle:
        handle.write(HOOKS)
    (root / "runbooks" / "disk-alert.yml").write_text(RUNBOOK.replace(_PLAIN_TRIGGER, ""))
    (root / "runbooks" / "slow-alert.yml").write_text(SLOW)
    (root / "runbooks" / "storm.yml").write_text(STORM)
    return root


_PLAIN_TRIGGER = """  - hook: plain
    match: {alertname: Slow}
    from_alert: {seconds: labels.seconds}
"""


def alertmanager(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) as it sends it."""
    return {"version": "4", "groupKey": '{}:{alertname="DiskFull"}', "truncatedAlerts": 0, "status": status,
            "receiver": "runbook", "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {"alertname": "DiskFull"},
            "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093", "alerts": list(alerts)}


def disk_full(fingerprint: str, mountpoint: str = "/var", instance: str = "web1:9100",
              status: str = "firing") -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": "DiskFull", "severity": "critical", "instance": instance,
                                         "mountpoint": mountpoint},
            "annotations": {"summary": f"{mountpoint} is 97% full"}, "startsAt": "2026-12-08T03:00:00.123Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus.example:9090/graph?g0.expr=x",
            "fingerprint": fingerprint}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("serve")
    svc = Service(_workspace(base / "ws"), base / "state")
    svc.start()
    yield svc
    if svc.proc is not None and svc.proc.poll() is None:
        svc.proc.kill()
        svc.proc.communicate()


def test_every_refusal_is_json_with_a_reason(service: Service) -> None:
    body = alertmanager(disk_full("f0"))
    cases = [
        (service.post("nope", body), 404),
        (service.request("POST", "/hooks/am", json.dumps(body).encode()), 401),  # no token
        (service.post("am", body, token="wrong"), 401),
        (service.post("am", body, token=TOKEN + "-plain"), 401),  # another hook's token
        (service.request("GET", "/hooks/am", token=TOKEN), 405),
        (service.request("POST", "/hooks/am", b"x" * (1024 * 1024 + 1), TOKEN), 413),
        (service.request("POST", "/hooks/am", b"{not json", TOKEN), 400),
        (service.post("am", {"alerts": "none"}), 400),
        (service.post("am", {"version": "4", "alerts": [{"labels": {"a": 1}}]}), 400),
    ]
    for (status, doc, kind), expected in cases:
        assert status == expected, (expected, doc)
        assert "json" in kind and doc["error"], doc
    assert service.cli("alerts", "--json").stdout.strip() in ("[]", "")  # refused requests store no alert


def test_an_alertmanager_group_starts_one_run_once(service: Service) -> None:
    status, doc, _ = service.post("am", alertmanager(disk_full("a1b2c3d4e5f60718")))
    assert status == 202
    [outcome] = doc["alerts"]
    assert outcome["outcome"] == "queued" and outcome["fingerprint"] == "a1b2c3d4e5f60718"
    record = service.wait_finished(outcome["run"])
    assert record["status"] == "succeeded", record["message"]
    assert record["trigger"] == "alert" and record["limit"] == "web1"  # labels.instance without its port
    assert list(record["steps"][0]["hosts"]) == ["web1"]
    assert record["params"] == {"mountpoint": "/var", "message": "disk full from an alert"}
    assert record["alert"]["labels"]["mountpoint"] == "/var" and record["alert"]["hook"] == "am"
    assert record["alert"]["startsAt"] == "2026-12-08T03:00:00.123Z" and record["alert"]["generatorURL"]

    status, again, _ = service.post("am", alertmanager(disk_full("a1b2c3d4e5f60718")))  # Alertmanager resends
    assert status == 202 and again["alerts"] == [{"fingerprint": "a1b2c3d4e5f60718", "outcome": "duplicate",
                                                 "run": outcome["run"]}]
    runs = json.loads(service.cli("history", "disk-alert", "--json").stdout)
    assert [r["id"] for r in runs] == [outcome["run"]]
    received = json.loads(service.cli("alerts", "--json").stdout)
    assert [a["outcome"] for a in received if a["fingerprint"] == "a1b2c3d4e5f60718"] == ["duplicate", "queued"]


def test_alert_fields_are_checked_as_parameters(service: Service) -> None:
    hostile = disk_full("bad1", mountpoint="/var; rm -rf /")
    no_host = disk_full("bad2", instance="web1, db1")
    other = {**disk_full("other"), "labels": {"alertname": "CpuHigh", "instance": "web1:9100"}}
    status, doc, _ = service.post("am", alertmanager(hostile, no_host, other))
    assert status == 202
    rejected, bad_host, unmatched = doc["alerts"]
    assert rejected["outcome"] == "rejected" and "does not match the pattern" in rejected["reason"]
    assert bad_host["outcome"] == "rejected" and "is not a host name" in bad_host["reason"]
    assert unmatched == {"fingerprint": "other", "outcome": "no-match"}
    assert "run" not in rejected
    runs = json.loads(service.cli("history", "disk-alert", "--json").stdout)
    assert all(r["id"] != rejected.get("run") for r in runs) and len(runs) <= 1
    stored = {a["fingerprint"]: a for a in json.loads(service.cli("alerts", "--json").stdout)}
    assert stored["bad1"]["outcome"] == "rejected" and stored["bad1"]["reason"] == rejected["reason"]


def test_a_resolved_alert_cancels_its_queued_run(service: Service) -> None:
    # Two slow runs fill both workers; a third alert stays queued until its resolution cancels it.
    busy = [service.post("plain", {"labels": {"alertname": "Slow", "instance": f"web{i}", "seconds": "4"},
                                   "startsAt": "t0", "fingerprint": f"busy{i}"}, TOKEN + "-plain") for i in (1, 2)]
    waiting = {"labels": {"alertname": "Slow", "instance": "db1", "seconds": "1"}, "startsAt": "t1", "fingerprint": "late"}
    status, doc, _ = service.post("plain", waiting, TOKEN + "-plain")
    assert status == 202 and doc["alerts"][0]["outcome"] == "queued"
    queued = json.loads(service.cli("history", "--status", "queued", "--json").stdout)
    assert doc["alerts"][0]["run"] in [r["id"] for r in queued]
    status, resolved, _ = service.post("plain", {**waiting, "status": "resolved"}, TOKEN + "-plain")
    assert resolved["alerts"] == [{"fingerprint": "late", "outcome": "resolved", "run": doc["alerts"][0]["run"]}]
    assert service.record(doc["alerts"][0]["run"])["status"] == "canceled"
    other = {**waiting, "fingerprint": "later"}
    canceled = service.post("plain", other, TOKEN + "-plain")[1]["alerts"][0]["run"]
    result = service.cli("cancel", canceled)
    assert result.returncode == 0 and "canceled" in result.stderr, result.stderr
    assert service.record(canceled)["status"] == "canceled"
    for _status, started, _kind in busy:
        assert service.wait_finished(started["alerts"][0]["run"])["status"] == "succeeded"
    for run_id in (doc["alerts"][0]["run"], canceled):
        assert service.record(run_id)["status"] == "canceled"  # no worker ran it after all


def test_a_storm_is_suppressed_beyond_max_runs_per_hour(service: Service) -> None:
    burst = [{"labels": {"alertname": "Storm", "host": "db1"}, "startsAt": "t9", "fingerprint": f"storm{n}"}
             for n in range(8)]
    status, doc, _ = service.post("plain", {"alerts": burst}, TOKEN + "-plain")
    assert status == 202
    outcomes = [a["outcome"] for a in doc["alerts"]]
    assert outcomes == ["queued"] * 3 + ["suppressed"] * 5
    assert "max_runs_per_hour 3" in doc["alerts"][-1]["reason"]
    for alert in doc["alerts"][:3]:
        record = service.wait_finished(alert["run"])
        assert record["status"] == "succeeded" and record["limit"] == "db1"  # limit: labels.host
    assert len(json.loads(service.cli("history", "storm", "--json").stdout)) == 3


def test_healthz_and_metrics(service: Service) -> None:
    status, doc, _ = service.request("GET", "/healthz")
    assert status == 200 and doc == {"status": "ok", "store": "sqlite"}
    status, text, kind = service.request("GET", "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    assert 'runbook_alerts_total{hook="am",outcome="queued"}' in text
    assert 'runbook_alerts_total{hook="am",outcome="rejected"}' in text
    assert 'runbook_runs{status="succeeded"}' in text and "runbook_queue_depth" in text
    assert 'runbook_alerts_total{hook="plain",outcome="suppressed"} 5.0' in text


def test_a_second_instance_on_the_state_dir_refuses(service: Service) -> None:
    other = subprocess.run([sys.executable, "-m", "runner", "serve", "--listen", f"127.0.0.1:{_free_port()}"],
                           env=service.env, capture_output=True, text=True, timeout=60)
    assert other.returncode == 6, other.stderr
    assert "already serves the state dir" in other.stderr


def test_sigterm_lets_the_run_finish_then_cancels_it_and_exits_0(service: Service) -> None:
    status, doc, _ = service.post("plain", {"labels": {"alertname": "Slow", "instance": "b1", "seconds": "120"},
                                            "startsAt": "t2", "fingerprint": "long"}, TOKEN + "-plain")
    run_id = doc["alerts"][0]["run"]
    deadline = time.monotonic() + 30
    while service.record(run_id)["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    code, err = service.stop()  # stop_timeout = 2s: the 120 s sleep is canceled
    assert code == 0, err
    assert "stopping signal=SIGTERM" in err and "stopped" in err
    assert service.record(run_id)["status"] == "canceled"


def test_serve_refuses_to_start_without_a_hook_token(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws")
    env = {k: v for k, v in os.environ.items() if k not in ("AM_TOKEN", "PLAIN_TOKEN")}
    env.update(RUNBOOK_WORKSPACE=str(root), PLAIN_TOKEN="set")
    result = subprocess.run([sys.executable, "-m", "runner", "serve", "--listen", f"127.0.0.1:{_free_port()}"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "hooks.am.token_env" in result.stderr and "AM_TOKEN is not set" in result.stderr


def test_validate_checks_triggers_with_file_and_line(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws")
    text = RUNBOOK.replace("hook: plain", "hook: pagerduty").replace("{seconds: labels.seconds}", "{nosuch: labels.x}")
    text = text.replace('"~(warning|critical)"', '"~(a"')
    (root / "runbooks" / "disk-alert.yml").write_text(text)
    result = runbook("-w", str(root), "validate", "disk-alert")
    assert result.returncode == 3
    out = result.stdout + result.stderr
    assert "runbooks/disk-alert.yml:15: triggers[0].match.severity: invalid regular expression" in out
    assert "runbooks/disk-alert.yml:20: triggers[1].from_alert.nosuch: unknown parameter" in out
    assert "runbooks/disk-alert.yml:18: triggers[1]: required parameter 'mountpoint' gets no value" in out
    (root / "runbooks" / "disk-alert.yml").write_text(RUNBOOK.replace(
        _PLAIN_TRIGGER, "  - hook: pagerduty\n    from_alert: {mountpoint: labels.mountpoint}\n"))
    result = runbook("-w", str(root), "validate", "disk-alert")
    assert result.returncode == 3
    assert "runbooks/disk-alert.yml:18: triggers[1].hook: no hook 'pagerduty' in runbook.toml [hooks] (known: am, plain)" in (
        result.stdout + result.stderr)


def test_bad_serve_config_is_refused(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws")
    with open(root / "runbook.toml", "a", encoding="utf-8") as handle:
        handle.write('\n[hooks.grafana]\nformat = "carrier-pigeon"\ntoken_env = "lower case"\n')
    result = runbook("-w", str(root), "list")
    assert result.returncode == 3
    assert "hooks.grafana.format" in result.stderr and "hooks.grafana.token_env" in result.stderr


def test_the_cli_does_not_load_the_web_stack() -> None:
    code = "import sys, runner.cli; print(sorted(m for m in ('starlette', 'uvicorn', 'prometheus_client') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_two_instances_on_one_postgresql_run_each_alert_exactly_once(tmp_path: Path, team_db: str) -> None:
    first = Service(_workspace(tmp_path / "a" / "ws"), tmp_path / "a" / "state")
    second = Service(_workspace(tmp_path / "b" / "ws"), tmp_path / "b" / "state")
    first.start()
    second.start()  # a second instance is fine here: the queue is shared, not the state dir
    try:
        hosts = ("web1", "web2", "db1", "b1")
        queued = []
        for n in range(12):
            alert = {"labels": {"alertname": "Slow", "instance": hosts[n % 4], "seconds": "1"},
                     "startsAt": f"s{n}", "fingerprint": f"pg{n}"}
            status, doc, _ = (first if n % 2 else second).post("plain", {"alerts": [alert]}, TOKEN + "-plain")
            assert status == 202 and doc["alerts"][0]["outcome"] == "queued", doc
            queued.append(doc["alerts"][0]["run"])
        again = first.post("plain", {"labels": {"alertname": "Slow", "instance": "web1", "seconds": "1"},
                                     "startsAt": "s0", "fingerprint": "pg0"}, TOKEN + "-plain")[1]
        assert again["alerts"][0] == {"fingerprint": "pg0", "outcome": "duplicate", "run": queued[0]}  # across instances
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = json.loads(first.cli("history", "slow-alert", "-n", "100", "--json").stdout)
            if len(runs) == 12 and all(r["status"] not in ("queued", "running") for r in runs):
                break
            time.sleep(0.5)
        assert sorted(r["id"] for r in runs) == sorted(queued)
        assert {r["status"] for r in runs} == {"succeeded"}, [r["message"] for r in runs]
    finally:
        logs = [svc.stop()[1] for svc in (first, second)]
    started = [line.split("run=", 1)[1].split()[0] for err in logs for line in err.splitlines() if " run-started " in line]
    assert sorted(started) == sorted(queued)  # each claimed by exactly one instance, once


def test_a_queued_run_survives_kill_9_of_the_service(tmp_path: Path) -> None:
    svc = Service(_workspace(tmp_path / "ws"), tmp_path / "state")
    svc.start()
    plain = TOKEN + "-plain"
    busy = [svc.post("plain", {"labels": {"alertname": "Slow", "instance": h, "seconds": "3"}, "startsAt": "k",
                               "fingerprint": f"k-{h}"}, plain)[1]["alerts"][0]["run"] for h in ("web1", "web2")]
    waiting = svc.post("plain", {"labels": {"alertname": "Slow", "instance": "db1", "seconds": "1"}, "startsAt": "k",
                                 "fingerprint": "k-db1"}, plain)[1]["alerts"][0]["run"]
    assert svc.proc is not None
    svc.proc.kill()  # kill -9 between the 202 and the run's start
    svc.proc.communicate()
    assert svc.record(waiting)["status"] == "queued"
    svc.start()
    try:
        for run_id in (*busy, waiting):  # the busy ones finished in their own processes, the queued one ran now
            assert svc.wait_finished(run_id)["status"] == "succeeded"
    finally:
        code, err = svc.stop()
    assert code == 0 and err.count("run-started") == 1, err  # the restarted instance started only the queued run
