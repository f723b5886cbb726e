"""The hardware-replacement runbook on the fleet: it records the host's disks, drains the host (a real
init-script service stops), waits at the manual step, and after `resume --confirm --note` checks the new
device and brings the service back. A device that never appears fails naming host and device and leaves
the host drained, until a later run takes the replacement over."""
from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, on_host, runbook
from fleet import free_ports

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
SERVICE = "runbook-demo-http"
STATES = "/var/lib/runbook/hardware-replacement"
NEW_DISK = "/dev/runbook-test-disk"
# A tiny daemon with an LSB init script: the fleet hosts have no systemd, like many containers.
INIT_SCRIPT = f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          {SERVICE}
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: HTTP server of the runbook tests
### END INIT INFO
PIDFILE=/run/{SERVICE}.pid
PORT=$(cat /etc/{SERVICE}.port)
case "$1" in
  start) start-stop-daemon --start --quiet --oknodo --background --make-pidfile --pidfile $PIDFILE \\
           --exec /usr/bin/python3 -- -m http.server --bind 127.0.0.1 --directory /etc "$PORT" ;;
  stop) start-stop-daemon --stop --quiet --oknodo --retry 5 --pidfile $PIDFILE --remove-pidfile ;;
  status) start-stop-daemon --status --pidfile $PIDFILE ;;
  restart) "$0" stop && "$0" start ;;
  *) echo "usage: $0 start|stop|status|restart" >&2; exit 3 ;;
esac
"""


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_serving(port: int, expected: bool = True, tries: int = 50) -> bool:
    for _ in range(tries):
        if _serving(port) == expected:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def demo_service(fleet_hosts: Any) -> Iterator[dict[str, int]]:
    """The demo service running on every host, each on its own port: {host: port}."""
    ports = dict(zip(HOSTS, free_ports(len(HOSTS)), strict=True))
    try:
        for host, port in ports.items():
            script = INIT_SCRIPT.replace("'", "'\\''")
            on_host(fleet_hosts, host, f"printf '%s' '{script}' > /etc/init.d/{SERVICE}"
                                       f" && chmod 755 /etc/init.d/{SERVICE} && echo {port} > /etc/{SERVICE}.port"
                                       f" && service {SERVICE} start")
        for port in ports.values():
            assert _wait_serving(port), f"the demo service on port {port} did not start"
        yield ports
    finally:
        for host in HOSTS:
            on_host(fleet_hosts, host, f"service {SERVICE} stop; rm -f /etc/init.d/{SERVICE} /etc/{SERVICE}.port "
                                       f"{NEW_DISK}; rm -rf {STATES}", check=False)


def _records(state: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((state / "runs").glob("*/run.json"))]


def _steps(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in record["steps"]}


def _start(ws: Path, fleet: Any, *params: str) -> Any:
    args = [arg for param in params for arg in ("-p", param)]
    return runbook("run", "hardware-replacement", "-i", str(fleet.inventory_path), "-l", "fleet-02", *args,
                   cwd=ws, env={"RUNBOOK_USER": "alice"})


def _again(fleet: Any) -> tuple[str, str]:
    """The fleet's inventory, outside inventories/, named again at resume (a record's path is not trusted)."""
    return "-i", str(fleet.inventory_path)


def _lsblk_names(fleet: Any, host: str) -> list[str]:
    listing = on_host(fleet, host, "lsblk --json --nodeps --output NAME").stdout
    return [d["name"] for d in json.loads(listing)["blockdevices"]]


def test_replacement_drains_waits_for_the_serials_and_brings_the_host_back(
        fleet_hosts: Any, demo_service: dict[str, int], tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    params = ("part=disk sdz (bay 3)", "ticket=CHG-1234", f"device={NEW_DISK}", f"services={SERVICE}",
              "device_timeout=60")
    waiting = _start(ws, fleet_hosts, *params)
    assert waiting.returncode == 5, waiting.stderr
    assert 'runbook resume RUN --confirm --note "old=OLDSERIAL new=NEWSERIAL"' in waiting.stderr
    record = _records(state_dir)[0]
    steps = _steps(record)
    assert record["status"] == "waiting" and steps["replace-part"]["status"] == "waiting"
    assert steps["postcheck"]["status"] == "pending"
    found = steps["identify"]["data"]["hardware"]["fleet-02"]
    assert found["part"] == "disk sdz (bay 3)" and found["ticket"] == "CHG-1234"
    assert [d["name"] for d in found["disks"]] == _lsblk_names(fleet_hosts, "fleet-02")
    assert all({"model", "serial", "size", "type"} <= set(d) for d in found["disks"])
    assert found["device"] == {"path": NEW_DISK, "present": False, "block_device": False, "disk": None}
    assert found["services"] == {SERVICE: "running"}
    assert steps["drain"]["data"]["drained"]["fleet-02"]["stopped"] == [SERVICE]

    # Drained: the service is down on fleet-02 only.
    assert _wait_serving(demo_service["fleet-02"], expected=False)
    assert all(_serving(demo_service[h]) for h in ("fleet-01", "fleet-03", "fleet-04"))
    state = json.loads(on_host(fleet_hosts, "fleet-02", f"cat {STATES}/{record['id']}.json").stdout)
    assert state["status"] == "drained" and state["stopped"] == [SERVICE]

    # The physical work: the new disk shows up on the host.
    on_host(fleet_hosts, "fleet-02", f"mknod {NEW_DISK} b 7 200")
    resumed = runbook("resume", record["id"], "--confirm", "--note", "old=WD-OLD123 new=WD-NEW789", *_again(fleet_hosts), cwd=ws,
                      env={"RUNBOOK_USER": "dc-tech"})
    assert resumed.returncode == 0, resumed.stderr
    record = _records(state_dir)[0]
    steps = _steps(record)
    assert record["status"] == "succeeded"
    assert [(s["who"], s["item"], s["note"]) for s in steps["replace-part"]["signoffs"]] == [
        ("dc-tech", "Old part serial noted", "old=WD-OLD123 new=WD-NEW789"),
        ("dc-tech", "Part replaced", "old=WD-OLD123 new=WD-NEW789"),
        ("dc-tech", "New part serial noted", "old=WD-OLD123 new=WD-NEW789")]
    after = steps["postcheck"]["data"]["hardware_after"]["fleet-02"]
    assert after["device"]["path"] == NEW_DISK and after["device"]["present"] is True
    assert after["services"] == {SERVICE: "running"}
    assert [d["name"] for d in after["disks"]] == _lsblk_names(fleet_hosts, "fleet-02")
    assert _wait_serving(demo_service["fleet-02"])
    state = json.loads(on_host(fleet_hosts, "fleet-02", f"cat {STATES}/{record['id']}.json").stdout)
    assert state["status"] == "done"


def test_missing_device_fails_naming_host_and_device_and_keeps_the_host_drained(
        fleet_hosts: Any, demo_service: dict[str, int], tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    params = ("part=disk sdz", f"device={NEW_DISK}", f"services={SERVICE}", "device_timeout=2")
    assert _start(ws, fleet_hosts, *params).returncode == 5
    failed = runbook("resume", "last", "--confirm", "--note", "old=A1 new=B2", *_again(fleet_hosts), cwd=ws)
    assert failed.returncode == 1
    first = _records(state_dir)[0]
    postcheck = _steps(first)["postcheck"]
    assert postcheck["status"] == "failed" and first["status"] == "failed"
    message = postcheck["hosts"]["fleet-02"]["message"]
    assert f"fleet-02: device {NEW_DISK} not present after 2s" in message
    assert f"{SERVICE} not started" in message
    assert f"fleet-02: device {NEW_DISK} not present" in failed.stderr
    assert not _serving(demo_service["fleet-02"])  # not put back in service with a part missing

    # A new run on the host refuses while the failed one is unfinished, then takes it over.
    refused = _start(ws, fleet_hosts, *params)
    assert refused.returncode == 1
    message = _steps(_records(state_dir)[1])["identify"]["hosts"]["fleet-02"]["message"]
    assert f"another hardware replacement is unfinished on this host: run {first['id']} (drained" in message
    assert "adopt_unfinished=true" in message
    on_host(fleet_hosts, "fleet-02", f"mknod {NEW_DISK} b 7 200")
    assert _start(ws, fleet_hosts, *params, "adopt_unfinished=true").returncode == 5
    done = runbook("resume", "last", "--confirm", "--note", "old=A1 new=B3", *_again(fleet_hosts), cwd=ws)
    assert done.returncode == 0, done.stderr
    assert _wait_serving(demo_service["fleet-02"])  # the service the failed run stopped runs again
    old_state = json.loads(on_host(fleet_hosts, "fleet-02", f"cat {STATES}/{first['id']}.json").stdout)
    assert old_state["status"] == "superseded" and old_state["superseded_by"] == _records(state_dir)[2]["id"]


def test_more_than_one_host_is_refused_before_anything_stops(
        fleet_hosts: Any, demo_service: dict[str, int], tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("run", "hardware-replacement", "--json", "-i", str(fleet_hosts.inventory_path), "-l",
                   "fleet-01,fleet-03", "-p", "part=PSU 2", "-p", f"services={SERVICE}", cwd=ws)
    assert done.returncode == 3  # max_hosts: 1, checked before anything runs
    assert done.stderr.count("hardware-replacement works on at most 1 host (max_hosts: 1); this run targets 2 "
                             "(fleet-01, fleet-03): narrow it with -l HOST") == 1
    assert not _records(state_dir)  # nothing recorded
    assert all(_serving(port) for port in demo_service.values())


def test_check_mode_stops_nothing_and_writes_nothing(
        fleet_hosts: Any, demo_service: dict[str, int], tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("run", "hardware-replacement", "--check", "-i", str(fleet_hosts.inventory_path), "-l", "fleet-02",
                   "-p", "part=disk sdz", "-p", f"services={SERVICE}", "-p", "drain_hook=touch /root/drained", cwd=ws)
    assert done.returncode == 0, done.stderr  # the manual step is rehearsed: shown, not waited at
    assert "A real run stops here and waits" in done.stderr and "The host is drained" not in done.stderr
    steps = _steps(_records(state_dir)[0])
    assert steps["replace-part"]["status"] == "skipped" and steps["replace-part"]["message"].startswith("rehearsed")
    assert steps["identify"]["data"]["hardware"]["fleet-02"]["services"] == {SERVICE: "running"}
    assert steps["drain"]["data"]["drained"]["fleet-02"]["would_stop"] == [SERVICE]
    assert _serving(demo_service["fleet-02"])
    leftovers = on_host(fleet_hosts, "fleet-02", f"ls {STATES} /root/drained", check=False)
    assert leftovers.returncode != 0 and not leftovers.stdout.strip()
