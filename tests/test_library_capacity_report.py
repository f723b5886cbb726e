"""The capacity-report runbook on the fleet: figures for every host reach the run record, and a host
with a filesystem over the failure threshold fails alone, named with the filesystem."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, on_host, runbook

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
VOLUME = "/srv/capacity-test"
# The test machine's load belongs to whatever else runs on it, not to these tests.
NO_LOAD_VERDICT = ("-p", "warn_load_per_cpu=0", "-p", "fail_load_per_cpu=0")


@pytest.fixture
def small_volume(fleet_hosts: Any) -> Iterator[str]:
    """A 1 MiB filesystem with 100 inodes at VOLUME on fleet-03 only: an overlay on a small tmpfs,
    so df reports it as a real (overlay) filesystem that a test can fill in a moment."""
    on_host(fleet_hosts, "fleet-03", f"""set -e
        mkdir -p /run/capacity-test {VOLUME}
        mount -t tmpfs -o size=1m,nr_inodes=100 capacity-test /run/capacity-test
        mkdir /run/capacity-test/lower /run/capacity-test/upper /run/capacity-test/work
        mount -t overlay -o lowerdir=/run/capacity-test/lower,upperdir=/run/capacity-test/upper,workdir=/run/capacity-test/work capacity-test {VOLUME}""")
    try:
        yield VOLUME
    finally:
        on_host(fleet_hosts, "fleet-03", f"umount {VOLUME}; umount /run/capacity-test; rmdir {VOLUME} /run/capacity-test",
                check=False)


def _run(ws: Path, fleet: Any, *params: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "capacity-report", "--json", "-i", str(fleet.inventory_path), *params, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def test_figures_for_every_host_reach_the_record(fleet_hosts: Any, small_volume: str, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    on_host(fleet_hosts, "fleet-03", f"fallocate -l 900k {small_volume}/fill")  # 88%: warns, does not fail
    code, record, stderr = _run(ws, fleet_hosts, *NO_LOAD_VERDICT)
    assert code == 0, stderr
    step = record["steps"][0]
    assert step["status"] == "succeeded"
    capacity = step["data"]["capacity"]
    assert sorted(capacity) == HOSTS
    for host, figures in capacity.items():
        assert figures["cpu"]["vcpus"] >= 1 and figures["cpu"]["load15"] >= 0, host
        assert figures["memory"]["total_mib"] > 0 and 0 <= figures["memory"]["used_pct"] <= 100, host
        root = figures["filesystems"]["/"]
        assert root["fstype"] == "overlay" and root["size_mib"] > 0 and 0 <= root["used_pct"] <= 100, host
        assert root["inodes"] > 0 and 0 <= root["inode_pct"] <= 100, host
        assert not any(fs["fstype"] == "tmpfs" for fs in figures["filesystems"].values()), host
        assert figures["problems"] == [], host
        assert figures["status"] == ("warn" if figures["warnings"] else "ok"), host
    for host in ("fleet-01", "fleet-02", "fleet-04"):
        assert small_volume not in capacity[host]["filesystems"]
        assert not any(small_volume in warning for warning in capacity[host]["warnings"])
    volume = capacity["fleet-03"]["filesystems"][small_volume]
    assert volume["size_mib"] == 1.0 and volume["used_pct"] == 88
    assert volume["inodes"] == 100 and volume["inodes_used"] < 10
    assert capacity["fleet-03"]["status"] == "warn"
    assert f"disk {small_volume} at 88% >= 80%" in capacity["fleet-03"]["warnings"]
    assert not any(f"inodes {small_volume}" in warning for warning in capacity["fleet-03"]["warnings"])


def test_host_over_the_threshold_fails_alone_and_is_still_recorded(
        fleet_hosts: Any, small_volume: str, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    on_host(fleet_hosts, "fleet-03", f"fallocate -l 1000k {small_volume}/fill && "
                                     f"for i in $(seq 90); do : > {small_volume}/f$i; done")  # 98% space, inodes
    code, record, stderr = _run(ws, fleet_hosts, *NO_LOAD_VERDICT)
    assert code == 1
    assert record["status"] == "failed"
    step = record["steps"][0]
    assert {h: r["failed"] for h, r in step["hosts"].items()} == {
        "fleet-01": 0, "fleet-02": 0, "fleet-03": 1, "fleet-04": 0}
    message = step["hosts"]["fleet-03"]["message"]
    assert f"fleet-03: disk {small_volume} at 98% > 95%" in message
    assert f"inodes {small_volume} at" in message
    assert "FAILED: fleet-03" in stderr and small_volume in stderr
    capacity = step["data"]["capacity"]
    assert sorted(capacity) == HOSTS  # the failing host's figures are kept as well
    assert capacity["fleet-03"]["status"] == "fail"
    assert capacity["fleet-03"]["filesystems"][small_volume]["used_pct"] == 98
    assert all(capacity[h]["status"] != "fail" for h in ("fleet-01", "fleet-02", "fleet-04"))

    # The same volume, declared full by design, is recorded but no longer fails the host.
    code, record, stderr = _run(ws, fleet_hosts, *NO_LOAD_VERDICT, "-p", f"ignore_mounts={small_volume}")
    assert code == 0, stderr
    figures = record["steps"][0]["data"]["capacity"]["fleet-03"]
    assert figures["status"] != "fail" and figures["problems"] == []
    assert figures["filesystems"][small_volume]["used_pct"] == 98
