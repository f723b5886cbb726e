"""The service-restart runbook on the fleet, which has no systemd: a tiny init-script web service on
every host (its own port per host, from the inventory) is restarted in rolling batches and checked;
a host where it does not come back stops the rollout before the next batch."""
from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import copy_workspace, on_host, runbook
from fleet import free_ports

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
SERVICE = "demo-web"
PIDFILE = "/run/demo-web.pid"

# An LSB init script as Debian packages ship them: start-stop-daemon, a pidfile, a TERM-then-KILL stop.
INIT_SCRIPT = r"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          demo-web
# Required-Start:    $network
# Required-Stop:     $network
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: demo web server for the service-restart tests
### END INIT INFO
PIDFILE=/run/demo-web.pid
DEMO_PORT=8000
DEMO_ARGS=
[ -r /etc/default/demo-web ] && . /etc/default/demo-web
case "$1" in
  start)
    start-stop-daemon --start --quiet --oknodo --background --make-pidfile --pidfile "$PIDFILE" \
      --chdir /srv/demo-web --exec /usr/bin/python3 -- -m http.server --bind 127.0.0.1 $DEMO_ARGS "$DEMO_PORT"
    ;;
  stop)
    start-stop-daemon --stop --quiet --oknodo --retry=TERM/5/KILL/2 --pidfile "$PIDFILE" --remove-pidfile
    ;;
  restart|force-reload)
    "$0" stop && "$0" start
    ;;
  status)
    start-stop-daemon --status --pidfile "$PIDFILE"
    ;;
  *)
    echo "Usage: $0 {start|stop|restart|force-reload|status}" >&2
    exit 3
    ;;
esac
"""


def _pid(fleet: Any, host: str) -> int:
    return int(on_host(fleet, host, f"cat {PIDFILE}").stdout.strip())


def _pids(fleet: Any) -> dict[str, int]:
    return {host: _pid(fleet, host) for host in HOSTS}


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def _answer(port: int) -> str:
    with _LOOPBACK.open(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return response.read().decode()


def _wait_for_answer(port: int, expected: str) -> None:
    deadline = time.monotonic() + 30  # a loaded test machine can take a while to start Python
    while True:
        try:
            assert _answer(port).strip() == expected
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def demo_web(fleet_hosts: Any, tmp_path: Path) -> Iterator[dict[str, int]]:
    """demo-web installed and running on every host, each on its own port; stopped and removed after."""
    ports = dict(zip(HOSTS, free_ports(len(HOSTS))))
    try:
        for host, port in ports.items():
            on_host(fleet_hosts, host, f"""set -e
                cat > /etc/init.d/{SERVICE} <<'EOF'
{INIT_SCRIPT}EOF
                chmod 755 /etc/init.d/{SERVICE}
                mkdir -p /srv/demo-web && echo '{SERVICE} on {host}' > /srv/demo-web/index.html
                echo DEMO_PORT={port} > /etc/default/{SERVICE}
                /etc/init.d/{SERVICE} start""")
        for host, port in ports.items():
            _wait_for_answer(port, f"{SERVICE} on {host}")
        yield ports
    finally:
        for host in HOSTS:
            on_host(fleet_hosts, host, f"test ! -x /etc/init.d/{SERVICE} || /etc/init.d/{SERVICE} stop; "
                                       f"rm -rf /etc/init.d/{SERVICE} /etc/default/{SERVICE} /srv/demo-web {PIDFILE}",
                    check=False)
        still_up = [f"{host}:{port}" for host, port in ports.items() if _listening(port)]
        assert not still_up, f"demo-web still listening after the test: {still_up}"


@pytest.fixture
def inventory(fleet_hosts: Any, demo_web: dict[str, int], tmp_path: Path) -> Path:
    """The fleet's inventory plus each host's port for demo-web (`service_ports`, as the runbook reads it)."""
    data = yaml.safe_load(Path(fleet_hosts.inventory_path).read_text())
    for host, port in demo_web.items():
        data["all"]["children"]["fleet"]["hosts"][host]["service_ports"] = {SERVICE: port}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


CHECKS = ("-p", f"service={SERVICE}", "-p", f"pidfile={PIDFILE}", "-p", "http_url=http://127.0.0.1:{port}/",
          "-p", "wait_seconds=5")


def _run(ws: Path, inventory: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "service-restart", "--json", "--yes", "-i", str(inventory), *CHECKS, *args, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def test_restarts_every_host_in_batches_and_checks_it(
        fleet_hosts: Any, demo_web: dict[str, int], inventory: Path, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    before = _pids(fleet_hosts)
    code, record, stderr = _run(ws, inventory)
    assert code == 0, stderr
    assert [(s["name"], s["status"]) for s in record["steps"]] == [
        ("precheck", "succeeded"), ("restart", "succeeded"), ("postcheck", "succeeded")]
    after = _pids(fleet_hosts)
    for host, port in demo_web.items():
        assert after[host] != before[host], f"{host}: not restarted"
        assert _answer(port).strip() == f"{SERVICE} on {host}"
    outcome = record["steps"][1]["data"]["service_restart"]
    assert {h: (o["pid_before"], o["pid_after"], o["problems"]) for h, o in outcome.items()} == {
        h: (before[h], after[h], []) for h in HOSTS}
    state = record["steps"][2]["data"]["service_state"]
    for host, port in demo_web.items():
        assert state[host]["manager"] == f"init script /etc/init.d/{SERVICE}"
        assert (state[host]["running"], state[host]["pid"], state[host]["port"], state[host]["port_open"],
                state[host]["http_status"]) == (True, after[host], port, True, 200)
    # The shipped rollout, a canary then 25%: on four hosts, four batches of one.
    log = runbook("log", record["id"], "--step", "restart", cwd=ws).stdout
    assert len(re.findall(r"PLAY \[Restart the service in rolling batches", log)) == 4


def test_check_mode_restarts_nothing(
        fleet_hosts: Any, demo_web: dict[str, int], inventory: Path, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    before = _pids(fleet_hosts)
    code, record, stderr = _run(ws, inventory, "--check", "-l", "fleet-01,fleet-02")
    assert code == 0, stderr
    assert _pids(fleet_hosts) == before
    outcome = record["steps"][1]["data"]["service_restart"]
    assert {h: (o["pid_before"], o["pid_after"]) for h, o in outcome.items()} == {
        "fleet-01": (before["fleet-01"], None), "fleet-02": (before["fleet-02"], None)}


def test_a_host_that_does_not_come_back_stops_the_rollout(
        fleet_hosts: Any, demo_web: dict[str, int], inventory: Path, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    # Two hosts per batch for this scenario: fleet-01 and fleet-02 first, then fleet-03 and fleet-04.
    runbook_file = ws / "runbooks" / "service-restart.yml"
    text = runbook_file.read_text()
    assert 'serial: [1, "25%"]' in text
    runbook_file.write_text(text.replace('serial: [1, "25%"]', "serial: 2"))
    # A bad option deployed on fleet-02: the daemon exits at once, its port never opens.
    port_02 = demo_web["fleet-02"]
    on_host(fleet_hosts, "fleet-02", f"echo DEMO_ARGS=--no-such-option >> /etc/default/{SERVICE}")
    before = _pids(fleet_hosts)

    code, record, stderr = _run(ws, inventory, "-p", "wait_seconds=3")
    assert code == 1
    precheck, restart, postcheck = record["steps"]
    assert (precheck["status"], restart["status"], postcheck["status"]) == ("succeeded", "failed", "pending")
    assert {h: r["failed"] for h, r in restart["hosts"].items()} == {"fleet-01": 0, "fleet-02": 1}
    message = restart["hosts"]["fleet-02"]["message"]
    assert f"fleet-02: {SERVICE}: not running (/etc/init.d/{SERVICE} status: exit" in message
    assert f"{SERVICE}: port {port_02} not open on 127.0.0.1 after 3s" in message
    assert f"{SERVICE}: no live process (pidfile {PIDFILE}) after 3s" in message
    assert f"{SERVICE}: http://127.0.0.1:{port_02}/ did not answer after 3s (" in message
    assert re.search(rf"FAILED: fleet-02: .*{SERVICE}: port {port_02} not open", stderr)

    assert _pid(fleet_hosts, "fleet-01") != before["fleet-01"]  # same batch: restarted, and fine
    assert _answer(demo_web["fleet-01"]).strip() == f"{SERVICE} on fleet-01"
    for host in ("fleet-03", "fleet-04"):  # the next batch was never touched
        assert _pid(fleet_hosts, host) == before[host], host
        assert _answer(demo_web[host]).strip() == f"{SERVICE} on {host}"


def test_a_host_without_the_service_stops_the_run_before_any_restart(
        fleet_hosts: Any, demo_web: dict[str, int], inventory: Path, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    on_host(fleet_hosts, "fleet-04", f"/etc/init.d/{SERVICE} stop && rm /etc/init.d/{SERVICE}")
    before = {host: _pid(fleet_hosts, host) for host in HOSTS[:3]}
    code, record, stderr = _run(ws, inventory)
    assert code == 1
    precheck, restart, _ = record["steps"]
    assert precheck["status"] == "failed" and restart["status"] == "pending"
    assert precheck["hosts"]["fleet-04"]["message"].endswith(
        f"fleet-04: {SERVICE}: no init script /etc/init.d/{SERVICE}")
    assert {host: _pid(fleet_hosts, host) for host in HOSTS[:3]} == before


# The fleet has no systemd. This double answers what the runbook and Ansible's systemd module ask, so the
# systemd branch (unit lookup, is-active, MainPID, `systemctl restart`) runs end to end on one host.
FAKE_SYSTEMCTL = r"""#!/bin/sh
# Test double: just enough systemctl (for probe.sh and Ansible's systemd module) for one service
# backed by its init script; every call is logged.
cmd=$1; shift
prop=; value=
for a in "$@"; do
  case "$a" in
    --property=*) prop=${a#--property=} ;;
    --value) value=1 ;;
    -*) ;;
    *) unit=${a%.service} ;;
  esac
done
echo "$cmd $*" >> /tmp/fake-systemctl.log
pid=$(cat /run/$unit.pid 2>/dev/null)
if [ -x /etc/init.d/$unit ]; then load=loaded; else load=not-found; fi
if /etc/init.d/$unit status >/dev/null 2>&1; then active=active; sub=running; else active=inactive; sub=dead; pid=0; fi
case "$cmd" in
  --version) echo "systemd 252 (252.0)"; exit 0 ;;
  show)
    if [ -n "$prop" ]; then
      case $prop in LoadState) v=$load ;; MainPID) v=$pid ;; ActiveState) v=$active ;; esac
      if [ -n "$value" ]; then echo "$v"; else echo "$prop=$v"; fi
    else
      printf 'Id=%s.service\nNames=%s.service\nLoadState=%s\nActiveState=%s\nSubState=%s\nMainPID=%s\nUnitFileState=enabled\nDescription=%s\n' "$unit" "$unit" "$load" "$active" "$sub" "$pid" "$unit"
    fi ;;
  is-active) [ $active = active ] && { echo active; exit 0; } || { echo inactive; exit 3; } ;;
  restart) /etc/init.d/$unit restart ;;
  reload) /etc/init.d/$unit force-reload ;;
  start|stop) /etc/init.d/$unit $cmd ;;
  list-unit-files) printf '%s.service enabled enabled\n' "$unit" ;;
  *) echo "fake systemctl: $cmd unsupported" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def systemd_double(fleet_hosts: Any, demo_web: dict[str, int]) -> Iterator[str]:
    host = "fleet-04"
    on_host(fleet_hosts, host, f"""set -e
        cat > /usr/local/sbin/systemctl <<'EOF'
{FAKE_SYSTEMCTL}EOF
        chmod 755 /usr/local/sbin/systemctl
        mkdir -p /run/systemd/system
        : > /tmp/fake-systemctl.log""")
    try:
        yield host
    finally:
        on_host(fleet_hosts, host, "rm -rf /usr/local/sbin/systemctl /run/systemd /tmp/fake-systemctl.log", check=False)


def test_systemd_hosts_restart_through_systemctl(
        fleet_hosts: Any, demo_web: dict[str, int], inventory: Path, systemd_double: str, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    host = systemd_double
    before = _pid(fleet_hosts, host)
    # no pidfile: on systemd hosts the main process comes from the unit's MainPID
    done = runbook("run", "service-restart", "--json", "--yes", "-i", str(inventory), "-l", host,
                   "-p", f"service={SERVICE}", "-p", "http_url=http://127.0.0.1:{port}/", "-p", "wait_seconds=5",
                   cwd=ws)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    after = _pid(fleet_hosts, host)
    assert after != before
    state = record["steps"][2]["data"]["service_state"][host]
    assert (state["manager"], state["pid"], state["http_status"]) == (f"systemd unit {SERVICE}", after, 200)
    outcome = record["steps"][1]["data"]["service_restart"][host]
    assert (outcome["pid_before"], outcome["pid_after"]) == (before, after)
    calls = on_host(fleet_hosts, host, "cat /tmp/fake-systemctl.log").stdout.splitlines()
    assert f"restart {SERVICE}" in calls  # through systemctl, not the init script
    assert f"show --property=MainPID --value -- {SERVICE}" in calls
