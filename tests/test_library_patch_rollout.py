"""The patch-rollout runbook on the fleet, against real apt repositories the test builds: tiny .deb
packages (dpkg-deb) in flat file: repositories. Check mode plans without changing anything; a rollout
upgrades every host batch by batch and records the versions before and after; a failing maintainer
script on one host stops the rollout after its batch and the handler puts that host back."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aptrepo import TEST_PACKAGES, build_repos, forget_repos_script, use_repos_script
from conftest import copy_workspace, on_host, runbook

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
RECORDS = "/var/lib/runbook/patch-rollout"
# The load of a busy test machine is not what these tests are about.
LENIENT = ("-p", "max_load_per_cpu=1000")


@pytest.fixture(scope="module")
def apt_repos() -> Iterator[Path]:
    """The repositories of tests/aptrepo.py (also what `make fleet-repo` serves), outside /tmp: the fleet
    hosts have their own /tmp but see the rest of this machine's files."""
    root = Path(tempfile.mkdtemp(prefix="runbook-patch-repos-", dir="/var/tmp"))
    try:
        yield build_repos(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def patch_fleet(fleet_hosts: Any, apt_repos: Path) -> Iterator[Any]:
    """The fleet with apt pointed at the test's repositories only."""
    try:
        for host in HOSTS:
            on_host(fleet_hosts, host, use_repos_script(apt_repos))
        yield fleet_hosts
    finally:
        for host in HOSTS:
            on_host(fleet_hosts, host, forget_repos_script(RECORDS), check=False)


@pytest.fixture
def baseline(patch_fleet: Any, apt_repos: Path) -> Any:
    """Every host at runbook-demo 1.0 and runbook-sec 1.0, nothing else of ours, no records."""
    for host in HOSTS:
        on_host(patch_fleet, host, f"""set -e
            dpkg --purge runbook-broken >/dev/null
            dpkg -i {apt_repos}/main/runbook-demo_1.0_all.deb {apt_repos}/security/runbook-sec_1.0_all.deb \
                >/dev/null 2>&1
            rm -rf {RECORDS} /run/reboot-required""")
    return patch_fleet


def _versions(fleet: Any, host: str) -> dict[str, str]:
    """Installed versions of the test packages, and anything dpkg does not consider fully installed."""
    done = on_host(fleet, host, "dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' 'runbook-*'"
                                " 2>/dev/null; dpkg --audit", check=False)
    versions = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in TEST_PACKAGES:
            assert parts[2] == "ii", f"{host}: {line}"  # fully installed, no failed maintainer script left
            versions[parts[0]] = parts[1]
    return versions


def _run(ws: Path, fleet: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "patch-rollout", "--json", "-i", str(fleet.inventory_path), *LENIENT, *args, cwd=ws,
                   timeout=900)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def _steps(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in record["steps"]}


def _step_stdout(state_dir: Path, record: dict[str, Any], step: str) -> str:
    index = next(i for i, s in enumerate(record["steps"], 1) if s["name"] == step)
    return (state_dir / "runs" / record["id"] / "steps" / f"{index:02d}-{step}" / "stdout").read_text()


def test_check_mode_reports_the_updates_and_changes_nothing(baseline: Any, tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, baseline, "--check", "-p", "mode=all", "-p", "batch_size=1")
    assert code == 0, stderr
    steps = _steps(record)
    assert _step_stdout(state_dir, record, "apply").count("PLAY [Apply the updates in rolling batches]") == 4
    assert steps["record-versions"]["data"] == {
        "packages_before": {h: {"runbook-demo": "1.0", "runbook-sec": "1.0"} for h in HOSTS},
        "packages_candidate": {h: {"runbook-demo": "2.0", "runbook-sec": "1.1"} for h in HOSTS}}
    assert steps["apply"]["data"] == {
        "packages_would_upgrade": {h: {"runbook-demo": "2.0", "runbook-sec": "1.1"} for h in HOSTS}}
    apply_log = _step_stdout(state_dir, record, "apply")
    assert "fleet-03: would upgrade runbook-demo 1.0 -> 2.0, runbook-sec 1.0 -> 1.1" in apply_log
    # The plan and the versions are on screen under their steps and in the record (runbook_summary), in --check too.
    assert "\n  fleet-03: would upgrade runbook-demo 1.0 -> 2.0, runbook-sec 1.0 -> 1.1\n" in stderr
    assert "  fleet-02: would upgrade 2 package(s), mode all: runbook-demo 1.0 -> 2.0, runbook-sec 1.0 -> 1.1" in stderr
    assert steps["apply"]["hosts"]["fleet-01"]["summary"] == "would upgrade runbook-demo 1.0 -> 2.0, runbook-sec 1.0 -> 1.1"
    for host in HOSTS:
        assert _versions(baseline, host) == {"runbook-demo": "1.0", "runbook-sec": "1.0"}
        assert on_host(baseline, host, f"test -e {RECORDS}", check=False).returncode != 0  # no record written

    # The default mode takes security updates only: runbook-sec comes from a *-security suite.
    code, record, stderr = _run(ws, baseline, "--check")
    assert code == 0, stderr
    assert _steps(record)["record-versions"]["data"]["packages_candidate"] == {h: {"runbook-sec": "1.1"} for h in HOSTS}
    assert _versions(baseline, "fleet-01") == {"runbook-demo": "1.0", "runbook-sec": "1.0"}


def test_rollout_upgrades_every_batch_records_versions_and_is_idempotent(
        baseline: Any, tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    # fleet-04's updates "need" a reboot, which this run may not do (a fleet host has no init to reboot).
    on_host(baseline, "fleet-04", "touch /run/reboot-required")
    code, record, stderr = _run(ws, baseline, "-p", "mode=all", "-p", "packages=runbook-demo,runbook-s*",
                                "-p", "allow_reboot=false")
    assert code == 0, stderr
    steps = _steps(record)
    assert [s["status"] for s in record["steps"]] == ["succeeded"] * 5
    assert steps["record-versions"]["data"]["packages_before"] == {
        h: {"runbook-demo": "1.0", "runbook-sec": "1.0"} for h in HOSTS}
    assert steps["record-after"]["data"]["packages_after"] == {
        h: {"runbook-demo": "2.0", "runbook-sec": "1.1"} for h in HOSTS}
    assert steps["apply"]["data"]["packages_upgraded"]["fleet-04"] == {
        "runbook-demo": {"from": "1.0", "to": "2.0"}, "runbook-sec": {"from": "1.0", "to": "1.1"}}
    assert steps["apply"]["data"]["reboot"]["fleet-01"] == {"required": False, "rebooted": False}
    assert steps["apply"]["hosts"]["fleet-04"]["summary"] == "upgraded runbook-demo 1.0 -> 2.0, runbook-sec 1.0 -> 1.1"
    assert steps["record-after"]["hosts"]["fleet-04"]["summary"] == \
        "runbook-demo 1.0 -> 2.0, runbook-sec 1.0 -> 1.1; reboot pending"
    assert "\n  fleet-02: upgraded runbook-demo 1.0 -> 2.0, runbook-sec 1.0 -> 1.1\n" in stderr
    assert steps["apply"]["data"]["reboot"]["fleet-04"] == {"required": True, "rebooted": False}
    assert "fleet-04: a reboot is required (allow_reboot is false)" in _step_stdout(state_dir, record, "apply")
    assert steps["record-after"]["data"]["reboot_pending"] == {
        "fleet-01": False, "fleet-02": False, "fleet-03": False, "fleet-04": True}
    # rollout.serial 50%: two batches of two hosts
    assert _step_stdout(state_dir, record, "apply").count("PLAY [Apply the updates in rolling batches]") == 2
    for host in HOSTS:
        assert _versions(baseline, host) == {"runbook-demo": "2.0", "runbook-sec": "1.1"}
    kept = json.loads(on_host(baseline, "fleet-02", f"cat {RECORDS}/{record['id']}.json").stdout)
    assert kept["packages"]["runbook-demo"]["before"] == "1.0" and kept["after"] == {"runbook-demo": "2.0",
                                                                                       "runbook-sec": "1.1"}

    again_code, again, stderr = _run(ws, baseline, "-p", "mode=all")
    assert again_code == 0, stderr
    apply = _steps(again)["apply"]
    assert apply["data"]["packages_upgraded"] == {h: {} for h in HOSTS}
    assert all(result["changed"] == 0 for result in apply["hosts"].values())
    assert "fleet-01: nothing to upgrade (mode all" in _step_stdout(state_dir, again, "record-versions")
    # allow_reboot is true now, but this run changed nothing on fleet-04: its pending reboot is only reported.
    assert apply["data"]["reboot"]["fleet-04"] == {"required": True, "rebooted": False}
    assert "fleet-04: a reboot is required (pending from before this run)" in _step_stdout(state_dir, again, "apply")


def test_failed_upgrade_stops_the_rollout_and_rolls_its_host_back(
        baseline: Any, apt_repos: Path, tmp_path: Path) -> None:
    # runbook-broken 2.0's postinst fails: only fleet-01 has the package, so only its upgrade fails.
    on_host(baseline, "fleet-01", f"dpkg -i {apt_repos}/main/runbook-broken_1.0_all.deb")
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, _ = _run(ws, baseline, "-p", "mode=all")
    assert code == 1
    steps = _steps(record)
    assert steps["apply"]["status"] == "failed"
    assert steps["postcheck"]["status"] == "pending" and steps["record-after"]["status"] == "pending"
    hosts = steps["apply"]["hosts"]
    assert sorted(hosts) == ["fleet-01", "fleet-02"]  # the second batch (fleet-03, fleet-04) never started
    assert hosts["fleet-01"]["failed"] == 1 and hosts["fleet-02"]["failed"] == 0
    message = hosts["fleet-01"]["message"]
    assert "fleet-01: upgrade failed:" in message
    assert "dpkg: error processing package runbook-broken (--configure)" in message
    assert "runbook-broken at 2.0 (half configured), planned 2.0" in message

    rollback = steps["rollback"]
    assert rollback["handler"] is True and rollback["status"] == "succeeded"
    assert rollback["data"]["packages_rolled_back"] == {"fleet-01": {
        "runbook-broken": {"from": "2.0", "to": "1.0"}, "runbook-demo": {"from": "2.0", "to": "1.0"},
        "runbook-sec": {"from": "1.1", "to": "1.0"}}}
    assert _versions(baseline, "fleet-01") == {"runbook-broken": "1.0", "runbook-demo": "1.0", "runbook-sec": "1.0"}
    assert _versions(baseline, "fleet-02") == {"runbook-demo": "2.0", "runbook-sec": "1.1"}  # its update went well
    for host in ("fleet-03", "fleet-04"):
        assert _versions(baseline, host) == {"runbook-demo": "1.0", "runbook-sec": "1.0"}
    kept = json.loads(on_host(baseline, "fleet-01", f"cat {RECORDS}/{record['id']}.json").stdout)
    assert kept["failed_step"] == "apply" and kept["rolled_back"]["runbook-demo"] == {"from": "2.0", "to": "1.0"}
