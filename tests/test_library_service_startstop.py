"""The service-startstop runbook on the fleet (no systemd: init scripts): a small system, demo-db on
fleet-01 and demo-api on fleet-01 and fleet-02, is stopped front to back and started back to front,
each service checked on every host before the next; a service that does not come up stops the start
before anything after it is started, and an unknown service stops the run at the precheck."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import copy_workspace, on_host, runbook
from fleet import free_ports

PLACES = [("fleet-01", "demo-db"), ("fleet-01", "demo-api"), ("fleet-02", "demo-api")]
EVENTS = "/tmp/startstop-events"

# An LSB-style init script (start-stop-daemon, a pidfile) that also logs each start and stop with the
# time in nanoseconds: the fleet's hosts share one clock, so the order across hosts can be checked.
INIT_SCRIPT = r"""#!/bin/sh
NAME=@NAME@
PIDFILE=/run/$NAME.pid
PORT=0
ARGS=
[ -r /etc/default/$NAME ] && . /etc/default/$NAME
case "$1" in
  start)
    echo "$(date +%s%N) $NAME start" >> @EVENTS@
    start-stop-daemon --start --quiet --oknodo --background --make-pidfile --pidfile "$PIDFILE" \
      --chdir /tmp --exec /usr/bin/python3 -- -m http.server --bind 127.0.0.1 $ARGS "$PORT" ;;
  stop)
    echo "$(date +%s%N) $NAME stop" >> @EVENTS@
    start-stop-daemon --stop --quiet --oknodo --retry=TERM/5/KILL/2 --pidfile "$PIDFILE" --remove-pidfile ;;
  status) start-stop-daemon --status --pidfile "$PIDFILE" ;;
  restart) "$0" stop && "$0" start ;;
  *) echo "Usage: $0 {start|stop|status|restart}" >&2; exit 3 ;;
esac
"""


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def system(fleet_hosts: Any) -> Iterator[dict[tuple[str, str], int]]:
    """The services installed and running, each on its own port; stopped and removed after."""
    ports = dict(zip(PLACES, free_ports(len(PLACES))))
    try:
        for host in ("fleet-01", "fleet-02"):
            setup = []
            for name, port in ((n, p) for (h, n), p in ports.items() if h == host):
                script = INIT_SCRIPT.replace("@NAME@", name).replace("@EVENTS@", EVENTS)
                setup.append(f"""cat > /etc/init.d/{name} <<'EOF'
{script}EOF
                chmod 755 /etc/init.d/{name} && echo PORT={port} > /etc/default/{name} && /etc/init.d/{name} start""")
            on_host(fleet_hosts, host, "set -e\n" + "\n".join(setup))
        deadline = time.monotonic() + 30  # a loaded test machine can take a while to start Python
        while not all(_listening(port) for port in ports.values()):
            assert time.monotonic() < deadline, "the demo services did not come up"
            time.sleep(0.1)
        _clear_events(fleet_hosts)
        yield ports
    finally:
        for host, name in PLACES:
            on_host(fleet_hosts, host, f"test ! -x /etc/init.d/{name} || /etc/init.d/{name} stop; "
                                       f"rm -f /etc/init.d/{name} /etc/default/{name} {EVENTS}", check=False)
        assert not [p for p in ports.values() if _listening(p)], "a demo service still listens after the test"


@pytest.fixture
def inventory(fleet_hosts: Any, system: dict[tuple[str, str], int], tmp_path: Path) -> Path:
    data = yaml.safe_load(Path(fleet_hosts.inventory_path).read_text())
    hosts = data["all"]["children"]["fleet"]["hosts"]
    for (host, name), port in system.items():
        hosts[host].setdefault("service_ports", {})[name] = port
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _clear_events(fleet: Any) -> None:
    for host in ("fleet-01", "fleet-02"):
        on_host(fleet, host, f": > {EVENTS}")


def _events(fleet: Any) -> list[tuple[int, str, str, str]]:
    """(time, host, service, action) of every start and stop on both hosts, in time order."""
    found = []
    for host in ("fleet-01", "fleet-02"):
        for line in on_host(fleet, host, f"cat {EVENTS}").stdout.splitlines():
            stamp, name, action = line.split()
            found.append((int(stamp), host, name, action))
    return sorted(found)


def _run(ws: Path, inventory: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "service-startstop", "--json", "-i", str(inventory), "-l", "fleet-01,fleet-02",
                   "-p", "services=demo-db,demo-api", "-p", "wait_seconds=10", *args, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def test_stops_front_to_back_and_starts_back_to_front_checking_each_service(
        fleet_hosts: Any, system: dict[tuple[str, str], int], inventory: Path, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, inventory, "-p", "action=stop")
    assert code == 0, stderr
    assert not [place for place, port in system.items() if _listening(port)]
    # demo-api stopped on both hosts before demo-db was touched
    assert [(h, n, a) for _, h, n, a in _events(fleet_hosts)][-1] == ("fleet-01", "demo-db", "stop")
    precheck, step = record["steps"]
    assert precheck["data"]["service_states"]["fleet-02"]["demo-db"]["installed"] is False
    outcome = step["data"]["service_startstop"]
    assert step["hosts"]["fleet-02"]["summary"].startswith("stopped ")
    assert list(outcome["fleet-01"]) == ["demo-api", "demo-db"]  # the stop order
    assert {(h, n): (o["running_before"], o["running_after"]) for h, s in outcome.items() for n, o in s.items()
            if o["installed"]} == {place: (True, False) for place in PLACES}
    assert outcome["fleet-02"]["demo-db"]["installed"] is False
    log = runbook("log", record["id"], cwd=ws).stdout
    assert f"fleet-02: stopped demo-api (port {system[('fleet-02', 'demo-api')]}), demo-db not here" in log

    _clear_events(fleet_hosts)
    code, record, stderr = _run(ws, inventory, "-p", "action=start")
    assert code == 0, stderr
    assert all(_listening(port) for port in system.values())
    events = _events(fleet_hosts)
    assert [(h, n) for _, h, n, _ in events][0] == ("fleet-01", "demo-db")  # the database first
    assert sorted((h, n) for _, h, n, _ in events[1:]) == [("fleet-01", "demo-api"), ("fleet-02", "demo-api")]
    assert {a for *_, a in events} == {"start"}


def test_a_service_that_does_not_come_up_stops_the_start_on_every_host(
        fleet_hosts: Any, system: dict[tuple[str, str], int], inventory: Path, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, inventory, "-p", "action=stop", "-p", "services=demo-db,demo-dbb,demo-api")
    assert code == 1, stderr
    precheck, step = record["steps"]
    assert (precheck["status"], step["status"]) == ("failed", "pending")
    assert ("demo-dbb: installed on none of the targeted hosts (fleet-01, fleet-02): check the name or --limit"
            in precheck["hosts"]["fleet-01"]["message"])
    assert all(_listening(port) for port in system.values())  # nothing stopped

    on_host(fleet_hosts, "fleet-01", "/etc/init.d/demo-api stop && /etc/init.d/demo-db stop && "
                                     f"echo ARGS=--no-such-option >> /etc/default/demo-db && : > {EVENTS}")
    on_host(fleet_hosts, "fleet-02", f"/etc/init.d/demo-api stop && : > {EVENTS}")
    code, record, stderr = _run(ws, inventory, "-p", "action=start", "-p", "wait_seconds=2")
    assert code == 1, stderr
    step = record["steps"][1]
    assert step["status"] == "failed"
    message = step["hosts"]["fleet-01"]["message"]
    assert "fleet-01: demo-db: not running (/etc/init.d/demo-db status: exit" in message
    assert f"demo-db: port {system[('fleet-01', 'demo-db')]} not open on 127.0.0.1 after 2s" in message
    # demo-api, which needs the database, was started on no host
    assert [(h, n, a) for _, h, n, a in _events(fleet_hosts)] == [("fleet-01", "demo-db", "start")]
    assert not [place for place, port in system.items() if _listening(port)]
