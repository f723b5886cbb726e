"""The disk-cleanup runbook on the fleet: old files under the named folders are removed, older-than-a-day
ones compressed, fresh ones kept, and nothing behind a symlink is touched; a path outside the allowed
folders is refused before anything runs, and a path that is a symlink fails that host untouched."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, on_host, runbook

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
CANARY = "/etc/disk-cleanup-canary"
# Per host: /var/tmp/dc/app holds two old files (10 days), a 3-day-old log and .gz, a fresh log; a
# symlink to /etc and one to an old file in /etc; an old log a process holds open; /var/log/dc holds
# one old file.
LAYOUT = f"""set -e
    mkdir -p /var/tmp/dc/app/sub /var/log/dc
    head -c 200000 /dev/urandom > /var/tmp/dc/app/old.log
    head -c 100000 /dev/urandom > /var/tmp/dc/app/sub/old.bin
    yes 'GET /index.html 200' | head -n 20000 > /var/tmp/dc/app/recent.log
    echo fresh > /var/tmp/dc/app/today.log
    head -c 5000 /dev/urandom | gzip > /var/tmp/dc/app/older.log.1.gz
    head -c 50000 /dev/urandom > /var/log/dc/old.log
    echo keep > {CANARY}
    ln -s /etc /var/tmp/dc/app/etc-link
    ln -s {CANARY} /var/tmp/dc/app/canary-link
    touch -d '10 days ago' /var/tmp/dc/app/old.log /var/tmp/dc/app/sub/old.bin /var/log/dc/old.log \
        {CANARY}
    touch -h -d '10 days ago' /var/tmp/dc/app/etc-link /var/tmp/dc/app/canary-link
    touch -d '3 days ago' /var/tmp/dc/app/recent.log /var/tmp/dc/app/older.log.1.gz
    echo 'still written' > /var/tmp/dc/app/held.log && touch -d '10 days ago' /var/tmp/dc/app/held.log
    cp /bin/sleep /var/tmp/dc-holder
    (setsid /var/tmp/dc-holder 600 3>>/var/tmp/dc/app/held.log </dev/null >/dev/null 2>&1 &)"""
DEB = "/var/cache/apt/archives/demo-tool_1.0_amd64.deb"
CLEANUP = f"rm -f {DEB}; pkill -x dc-holder; rm -rf /var/tmp/dc /var/log/dc /var/tmp/dc-link /var/tmp/dc-holder {CANARY}"


@pytest.fixture
def old_files(fleet_hosts: Any) -> Iterator[None]:
    try:
        for host in HOSTS:
            on_host(fleet_hosts, host, LAYOUT)
        yield
    finally:
        for host in HOSTS:
            on_host(fleet_hosts, host, CLEANUP, check=False)


def _blocks(fleet: Any, host: str, *paths: str) -> int:
    return sum(int(n) * 512 for n in on_host(fleet, host, "stat -c %b " + " ".join(paths)).stdout.split())


def _run(ws: Path, fleet: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "disk-cleanup", "--json", "--yes", "-i", str(fleet.inventory_path), *args, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def test_removes_and_compresses_old_files_and_never_follows_a_symlink(
        fleet_hosts: Any, old_files: None, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    paths = ("-p", "paths=/var/tmp/dc,/var/log/dc", "-l", "fleet-01,fleet-02", "-p", "clean_package_cache=true")
    # a downloaded package in apt's cache (apt-get clean removes it)
    on_host(fleet_hosts, "fleet-01", f"mkdir -p {DEB.rsplit('/', 1)[0]} && head -c 300000 /dev/urandom > {DEB}")
    deb = _blocks(fleet_hosts, "fleet-01", DEB)
    removed = _blocks(fleet_hosts, "fleet-01", "/var/tmp/dc/app/old.log", "/var/tmp/dc/app/sub/old.bin")
    recent = on_host(fleet_hosts, "fleet-01", "md5sum < /var/tmp/dc/app/recent.log").stdout

    code, record, stderr = _run(ws, fleet_hosts, "--check", *paths)
    assert code == 0, stderr
    would = record["steps"][0]["data"]["disk_cleanup"]["fleet-01"]["paths"][0]
    assert (would["removed_files"], would["compressed_files"], would["removed_bytes"]) == (2, 1, removed)
    on_host(fleet_hosts, "fleet-01", f"test -f /var/tmp/dc/app/old.log && test -f /var/tmp/dc/app/recent.log && test -f {DEB}")

    code, record, stderr = _run(ws, fleet_hosts, *paths)
    assert code == 0, stderr
    figures = record["steps"][0]["data"]["disk_cleanup"]
    assert sorted(figures) == ["fleet-01", "fleet-02"]
    tmp, log = figures["fleet-01"]["paths"]
    assert (tmp["path"], tmp["removed_files"], tmp["compressed_files"], tmp["removed_bytes"]) == (
        "/var/tmp/dc", 2, 1, removed)
    assert tmp["compressed_bytes_saved"] > 0 and (log["path"], log["removed_files"]) == ("/var/log/dc", 1)
    assert figures["fleet-01"]["package_cache_freed"] >= deb
    on_host(fleet_hosts, "fleet-01", f"test ! -e {DEB}")
    assert figures["fleet-01"]["freed_bytes"] == (
        tmp["freed_bytes"] + log["freed_bytes"] + figures["fleet-01"]["package_cache_freed"])
    summary = record["steps"][0]["hosts"]["fleet-01"]["summary"]  # on screen under the step, and in the record
    assert summary.startswith("freed ") and f"({figures['fleet-01']['freed_bytes']} bytes)" in summary
    log_text = runbook("log", record["id"], cwd=ws).stdout
    assert f"({figures['fleet-01']['freed_bytes']} bytes): /var/tmp/dc 2 removed, 1 compressed" in log_text

    listing = on_host(fleet_hosts, "fleet-01", "cd /var/tmp/dc/app && find . | sort").stdout.split()
    # the open log is kept (removing it would free nothing while the process holds it)
    assert listing == [".", "./canary-link", "./etc-link", "./held.log", "./older.log.1.gz", "./recent.log.gz",
                       "./sub", "./today.log"]
    # compressed in place: same content, same modification time
    assert on_host(fleet_hosts, "fleet-01", "gunzip -c /var/tmp/dc/app/recent.log.gz | md5sum").stdout == recent
    age = on_host(fleet_hosts, "fleet-01", "echo $(( $(date +%s) - $(stat -c %Y /var/tmp/dc/app/recent.log.gz) ))")
    assert 2 * 86400 < int(age.stdout) < 4 * 86400
    # the old file behind the symlinks, and /etc itself, are untouched
    for host in ("fleet-01", "fleet-02"):
        on_host(fleet_hosts, host, f"test \"$(cat {CANARY})\" = keep && test -L /var/tmp/dc/app/canary-link "
                                   "&& test -f /etc/passwd && test ! -e /var/log/dc/old.log")
    on_host(fleet_hosts, "fleet-03", "test -f /var/tmp/dc/app/old.log")  # not targeted


def test_refuses_paths_outside_the_allowed_folders_and_through_symlinks(
        fleet_hosts: Any, old_files: None, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    for outside in ("/etc", "/var/tmp/../../etc", "/var/lib/mysql", "/var/logs"):
        done = runbook("run", "disk-cleanup", "--yes", "-i", str(fleet_hosts.inventory_path),
                       "-p", f"paths=/var/tmp/dc,{outside}", cwd=ws)
        assert done.returncode == 3, (outside, done.stderr)
        assert f"{outside!r} does not match the pattern" in done.stderr
    on_host(fleet_hosts, "fleet-01", "test -f /var/tmp/dc/app/old.log")

    # fleet-03: the path is a symlink to /etc; fleet-04: the same path is a real folder
    on_host(fleet_hosts, "fleet-03", "ln -s /etc /var/tmp/dc-link")
    on_host(fleet_hosts, "fleet-04", "mkdir /var/tmp/dc-link && cp -p /var/tmp/dc/app/old.log /var/tmp/dc-link/")
    code, record, stderr = _run(ws, fleet_hosts, "-l", "fleet-03,fleet-04", "-p", "paths=/var/tmp/dc-link,/var/tmp/dc")
    assert code == 1, stderr
    step = record["steps"][0]
    assert {h: r["failed"] for h, r in step["hosts"].items()} == {"fleet-03": 1, "fleet-04": 0}
    assert ("fleet-03: /var/tmp/dc-link: goes through a symlink (resolves to /etc): refused: nothing was touched"
            in step["hosts"]["fleet-03"]["message"])
    on_host(fleet_hosts, "fleet-03", f"test -f {CANARY} && test -f /var/tmp/dc/app/old.log")  # nothing at all
    on_host(fleet_hosts, "fleet-04", "test ! -e /var/tmp/dc-link/old.log && test ! -e /var/tmp/dc/app/old.log")
    assert step["data"]["disk_cleanup"]["fleet-04"]["paths"][0]["removed_files"] == 1
