"""The incident-diagnostics runbook on the fleet: each host's bundle (its own processes, disks, sockets)
lands in the run record within the size limit, with the last runs of the history, and nothing changes
on the hosts; a host that is down is reported unreachable while the others are still collected."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import copy_workspace, on_host, runbook
from fleet import free_ports

SECTIONS = {"system", "uptime", "load", "memory", "processes_by_cpu", "processes_by_memory", "disks", "inodes",
            "sockets", "socket_summary", "kernel", "logged_in"}


@pytest.fixture
def stuck_process(fleet_hosts: Any) -> Iterator[None]:
    """A process on fleet-02 only (each host has its own PID namespace), as a hung job would be."""
    on_host(fleet_hosts, "fleet-02", "cp /bin/sleep /tmp/stuck-batch-job && "
                                     "(setsid /tmp/stuck-batch-job 4321 </dev/null >/dev/null 2>&1 &)")
    try:
        yield
    finally:
        on_host(fleet_hosts, "fleet-02", "pkill -x stuck-batch-job; rm -f /tmp/stuck-batch-job", check=False)


def _run(ws: Path, inventory: Path | str, *args: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "incident-diagnostics", "--json", "--yes", "-i", str(inventory), *args, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def test_collects_each_hosts_bundle_and_the_recent_runs_read_only(
        fleet_hosts: Any, stuck_process: None, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    limit = ("-l", "fleet-01,fleet-02")
    code, rehearsal, stderr = _run(ws, fleet_hosts.inventory_path, "--check", *limit, "-p", "max_kib=4")
    assert code == 0, stderr
    small = rehearsal["steps"][0]["data"]["incident_diagnostics"]["fleet-01"]
    assert small["bytes"] <= 4096 and small["truncated"]  # cut to fit, and says so
    cut = small["sections"][small["truncated"][0]]
    assert cut["omitted_bytes"] > 0

    code, record, stderr = _run(ws, fleet_hosts.inventory_path, *limit)
    assert code == 0, stderr
    step = record["steps"][0]
    assert {h: (r["changed"], r["failed"]) for h, r in step["hosts"].items()} == {
        "fleet-01": (0, 0), "fleet-02": (0, 0)}
    bundles = step["data"]["incident_diagnostics"]
    assert all(r["summary"].startswith("bundle of ") for r in step["hosts"].values())
    for host, bundle in bundles.items():
        assert SECTIONS <= set(bundle["sections"]), host
        assert bundle["bytes"] <= 64 * 1024
        assert bundle["sections"]["disks"]["output"].startswith("Filesystem")
        assert host in bundle["sections"]["system"]["output"]  # uname -n: the host's own name
    ports = {h.name: h.port for h in fleet_hosts.hosts}
    assert f":{ports['fleet-01']} " in bundles["fleet-01"]["sections"]["sockets"]["output"]
    assert "stuck-batch-job 4321" in bundles["fleet-02"]["sections"]["processes_by_cpu"]["output"]
    assert "stuck-batch-job" not in bundles["fleet-01"]["sections"]["processes_by_cpu"]["output"]
    # the last changes: the rehearsal is in the history the real run read on the controller
    recent = step["data"]["recent_runs"]
    assert [(r["id"], r["check"]) for r in recent] == [(rehearsal["id"], True)]
    log = runbook("log", record["id"], cwd=ws).stdout
    assert f"last 1 runs: incident-diagnostics 1.0.0 succeeded at {rehearsal['started_at']}" in log
    assert "fleet-02: bundle of " in log and "(limit 64.00 KB), load " in log


def test_a_host_that_is_down_is_unreachable_and_the_others_are_collected(
        fleet_hosts: Any, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("run", "incident-diagnostics", "-i", str(fleet_hosts.inventory_path), "-p", "max_kib=1", cwd=ws)
    assert done.returncode == 3 and "max_kib" in done.stderr

    data = yaml.safe_load(Path(fleet_hosts.inventory_path).read_text())
    data["all"]["children"]["fleet"]["hosts"] = {
        "fleet-03": data["all"]["children"]["fleet"]["hosts"]["fleet-03"],
        "fleet-gone": {"ansible_port": free_ports(1)[0]}}  # nothing listens there
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(data))
    code, record, stderr = _run(ws, inventory, "-p", "history_runs=0")
    assert code == 4, stderr
    step = record["steps"][0]
    assert step["hosts"]["fleet-gone"]["unreachable"] == 1
    assert set(step["data"]["incident_diagnostics"]) == {"fleet-03"}
    assert step["data"]["recent_runs"] == []
