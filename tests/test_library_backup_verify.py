"""The backup-verify runbook on the fleet: good backups pass (and test-restore without leaving anything
behind); a corrupted, a stale and a missing backup each fail their own host, named with the file."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, on_host, runbook

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
FOLDER = "/var/backups/bv-test"
APP = f"{FOLDER}/app-2.tar.gz"  # the newest of the app-*.tar.gz series
DB = f"{FOLDER}/db.zip"
BACKUPS = f"backups={FOLDER}/app-*.tar.gz,{DB}"
SCRATCH = "/var/tmp/bv-test-scratch"

# On each host: some data; an old and a new tar.gz of it, each with a .sha256 sidecar; a zip of it
# listed in SHA256SUMS. The old one is 5 days old: a rotating series is judged by its newest file.
MAKE_BACKUPS = f"""set -e
mkdir -p /srv/bv-test/data/sub {FOLDER}
head -c 30000 /dev/urandom > /srv/bv-test/data/blob
echo "config of $(hostname)" > /srv/bv-test/data/sub/app.conf
cd {FOLDER}
for n in 1 2; do
    tar -czf app-$n.tar.gz -C /srv/bv-test data
    sha256sum app-$n.tar.gz > app-$n.tar.gz.sha256
done
touch -d '5 days ago' app-1.tar.gz
(cd /srv/bv-test && zip -qr {DB} data)
sha256sum db.zip > SHA256SUMS
"""


@pytest.fixture
def backups(fleet_hosts: Any) -> Iterator[dict[str, str]]:
    """Valid backups on every host; yields each host's sha256 of APP."""
    sums = {}
    for host in HOSTS:
        on_host(fleet_hosts, host, MAKE_BACKUPS)
        sums[host] = on_host(fleet_hosts, host, f"sha256sum {APP}").stdout.split()[0]
    try:
        yield sums
    finally:
        for host in HOSTS:
            on_host(fleet_hosts, host, f"rm -rf {FOLDER} /srv/bv-test {SCRATCH}", check=False)


def _run(ws: Path, fleet: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "backup-verify", "--json", "-i", str(fleet.inventory_path), "-p", BACKUPS, *args, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def _leftovers(fleet: Any, host: str, path: str) -> str:
    """What is at `path` on `host` ('' when nothing)."""
    return on_host(fleet, host, f"test ! -e {path} || find {path}", check=False).stdout.strip()


def test_good_backups_pass_and_the_test_restore_leaves_nothing(
        fleet_hosts: Any, backups: dict[str, str], tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    # An operator's own scratch folder on fleet-01 is kept, with its content; elsewhere it is created.
    on_host(fleet_hosts, "fleet-01", f"mkdir -p {SCRATCH} && echo keep > {SCRATCH}/mine")

    code, record, stderr = _run(ws, fleet_hosts, "-p", "test_restore=true", "-p", f"scratch_dir={SCRATCH}", "--check")
    assert code == 0, stderr
    data = record["steps"][0]["data"]["backups"]
    assert all("test restore skipped (--check)" in data[h][APP]["notes"] for h in HOSTS)
    assert all(_leftovers(fleet_hosts, h, SCRATCH) == "" for h in HOSTS[1:])  # --check wrote nothing

    code, record, stderr = _run(ws, fleet_hosts, "-p", "test_restore=true", "-p", f"scratch_dir={SCRATCH}")
    assert code == 0, stderr
    step = record["steps"][0]
    assert step["status"] == "succeeded"
    assert sorted(step["hosts"]) == HOSTS and all(r["failed"] == 0 for r in step["hosts"].values())
    data = step["data"]["backups"]
    assert sorted(data) == HOSTS
    for host in HOSTS:
        assert sorted(data[host]) == [APP, DB], host  # app-1 (5 days old) is not the series' newest
        assert data[host][APP]["sha256"] == backups[host] and data[host][APP]["problems"] == []
        assert data[host][APP]["size_bytes"] > 30000
        assert data[host][APP]["notes"] == ["restored and compared"], host
        assert data[host][DB]["notes"] == ["restored and compared"], host
        # One line per backup, under the step on screen and in the record (runbook_summary).
        assert f"  {host}: {APP}: ok (" in stderr and "h old, restored and compared)" in step["hosts"][host]["summary"]
    for host in HOSTS[1:]:
        assert _leftovers(fleet_hosts, host, SCRATCH) == "", host  # created for the run, then removed
    assert _leftovers(fleet_hosts, "fleet-01", SCRATCH) == f"{SCRATCH}\n{SCRATCH}/mine"


def test_corrupt_stale_and_missing_backups_fail_their_hosts(
        fleet_hosts: Any, backups: dict[str, str], tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    on_host(fleet_hosts, "fleet-02", f"printf '\\377\\377\\377\\377\\377\\377\\377\\377' "
                                     f"| dd of={APP} bs=1 seek=5000 conv=notrunc status=none")
    on_host(fleet_hosts, "fleet-03", f"touch -d '3 days ago' {APP}")
    on_host(fleet_hosts, "fleet-04", f"rm {DB}")

    code, record, stderr = _run(ws, fleet_hosts, "-p", "test_restore=true", "-p", f"scratch_dir={SCRATCH}")
    assert code == 1
    assert record["status"] == "failed"
    hosts = record["steps"][0]["hosts"]
    assert {h: r["failed"] for h, r in hosts.items()} == {"fleet-01": 0, "fleet-02": 1, "fleet-03": 1, "fleet-04": 1}

    corrupt = hosts["fleet-02"]["message"]
    assert f"fleet-02: {APP}: checksum mismatch (sha256 " in corrupt
    assert "app-2.tar.gz.sha256 says" in corrupt
    assert "integrity test failed (gzip: " in corrupt
    assert DB not in corrupt  # the host's good backup is not blamed
    stale = hosts["fleet-03"]["message"]
    assert f"fleet-03: {APP}: stale (modified " in stale and "h ago > 26 h)" in stale
    assert "checksum" not in stale
    assert f"fleet-04: {DB}: missing" in hosts["fleet-04"]["message"]
    for host, path in (("fleet-02", APP), ("fleet-03", APP), ("fleet-04", DB)):
        assert f"FAILED: {host}: {path}: " in stderr  # the host once, then the file
    assert "FAILED: fleet-01" not in stderr

    data = record["steps"][0]["data"]["backups"]
    assert data["fleet-01"][APP]["problems"] == [] and data["fleet-02"][DB]["problems"] == []
    assert data["fleet-02"][APP]["sha256"] != backups["fleet-02"]
    assert data["fleet-02"][APP]["notes"] == []  # a corrupt archive is never restored
    assert data["fleet-03"][APP]["age_hours"] >= 71
    for host in HOSTS:
        assert _leftovers(fleet_hosts, host, SCRATCH) == "", host
