"""The failure-signs runbook on the fleet: synthetic kernel logs (recent and old lines), a fake smartctl
reporting a failing disk and a pending reboot give each host its verdict; a critical host fails the run,
warnings do not unless fail_on says so."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import copy_workspace, on_host, runbook

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
LOGS = "/var/log/failure-signs-test"
# smartctl(8): exit bit 3 (8) means "SMART status check returned DISK FAILING"
FAKE_SMARTCTL = """#!/bin/sh
case "$1" in
  --scan) echo '/dev/sda -d sat # /dev/sda [SAT], ATA device' ;;
  -H) echo 'SMART overall-health self-assessment test result: FAILED!'; exit 8 ;;
esac
"""
# journalctl as the module calls it (kernel messages as JSON since a time), from a file of the test's
FAKE_JOURNALCTL = f"""#!/bin/sh
echo "$@" > /tmp/journalctl.argv
cat {LOGS}/journal.json
"""
CLEANUP = (f"rm -rf {LOGS} /usr/local/sbin/smartctl /usr/local/sbin/journalctl /tmp/journalctl.argv "
           "/run/reboot-required /run/reboot-required.pkgs")


def _line(when: datetime, host: str, message: str, bsd: bool = False) -> str:
    stamp = when.astimezone().strftime("%b %e %H:%M:%S") if bsd else when.isoformat(timespec="microseconds")
    return f"{stamp} {host} kernel: [12345.678901] {message}"


def _put(fleet: Any, host: str, path: str, text: str, mode: str = "644") -> None:
    payload = base64.b64encode(text.encode()).decode()
    on_host(fleet, host, f"mkdir -p {LOGS} && echo {payload} | base64 -d > {path} && chmod {mode} {path}")


@pytest.fixture
def signs(fleet_hosts: Any) -> Iterator[None]:
    """fleet-01: an OOM kill three days ago; fleet-02: a failing disk and recent I/O errors; fleet-03: a
    recent OOM kill, a segfault and a pending reboot (in its journal too); fleet-04: nothing."""
    now = datetime.now(timezone.utc)
    recent, old = now - timedelta(hours=1), now - timedelta(days=3)
    benign = "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex"
    logs = {
        "fleet-01": [_line(old, "fleet-01", "Out of memory: Killed process 4242 (java) total-vm:9000kB", bsd=True),
                     _line(recent, "fleet-01", benign)],
        "fleet-02": [_line(recent, "fleet-02", f"I/O error, dev sdb, sector {n} op 0x0:(READ) flags 0x0")
                     for n in (100, 200, 300)] + [_line(recent, "fleet-02", benign)],
        "fleet-03": [_line(recent, "fleet-03", "Out of memory: Killed process 777 (python3) total-vm:1kB"),
                     _line(recent, "fleet-03", "nginx[901]: segfault at 0 ip 00007f error 4 in libc.so.6")],
        "fleet-04": [_line(recent, "fleet-04", benign)],
    }
    try:
        for host, lines in logs.items():
            _put(fleet_hosts, host, f"{LOGS}/kern.log", "\n".join(lines) + "\n")
        _put(fleet_hosts, "fleet-02", "/usr/local/sbin/smartctl", FAKE_SMARTCTL, mode="755")
        journal = {"fleet-03": [json.dumps({"MESSAGE": m, "_TRANSPORT": "kernel"}) for m in (
                       "Out of memory: Killed process 778 (postgres) total-vm:1kB", "sshd[5]: segfault at 8 ip 0")],
                   "fleet-04": []}
        for host, entries in journal.items():
            _put(fleet_hosts, host, f"{LOGS}/journal.json", "".join(e + "\n" for e in entries))
            _put(fleet_hosts, host, "/usr/local/sbin/journalctl", FAKE_JOURNALCTL, mode="755")
        on_host(fleet_hosts, "fleet-03", "echo '*** System restart required ***' > /run/reboot-required && "
                                         "echo linux-image-6.1.0-28-amd64 > /run/reboot-required.pkgs")
        yield
    finally:
        for host in HOSTS:
            on_host(fleet_hosts, host, CLEANUP, check=False)


@pytest.fixture
def inventory(fleet_hosts: Any, tmp_path: Path) -> Path:
    """The fleet's inventory reading the test's kernel log (the machine's own /var/log shows through)."""
    data = yaml.safe_load(Path(fleet_hosts.inventory_path).read_text())
    data["all"]["children"]["fleet"].setdefault("vars", {})["failure_signs_log_files"] = [f"{LOGS}/kern.log*"]
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(ws: Path, inventory: Path, *args: str, source: str = "files") -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "failure-signs", "--json", "-i", str(inventory), "-p", f"log_source={source}", *args, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def test_a_failing_disk_and_io_errors_make_the_host_critical_and_fail_the_run(
        signs: None, inventory: Path, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, inventory)
    assert code == 1, stderr
    step = record["steps"][0]
    assert {h: r["failed"] for h, r in step["hosts"].items()} == {
        "fleet-01": 0, "fleet-02": 1, "fleet-03": 0, "fleet-04": 0}
    found = step["data"]["failure_signs"]
    assert {h: f["verdict"] for h, f in found.items()} == {
        "fleet-01": "ok", "fleet-02": "critical", "fleet-03": "warning", "fleet-04": "ok"}
    assert found["fleet-02"]["critical"] == ["3 I/O errors (sdb 3)", "disk /dev/sda: SMART health FAILED!"]
    assert ("fleet-02: critical: 3 I/O errors (sdb 3); disk /dev/sda: SMART health FAILED!"
            in step["hosts"]["fleet-02"]["message"])
    assert step["hosts"]["fleet-02"]["summary"].startswith(
        "critical: 3 I/O errors (sdb 3); disk /dev/sda: SMART health FAILED!")
    assert step["hosts"]["fleet-01"]["summary"].startswith("ok: no sign of failure since ")
    assert found["fleet-03"]["warning"] == [
        "1 OOM kills (python3 1)", "1 segfaults (nginx 1)",
        "reboot pending (/var/run/reboot-required: linux-image-6.1.0-28-amd64)"]
    assert found["fleet-03"]["examples"]["segfaults"].startswith("nginx[901]: segfault at 0")
    # the OOM kill three days ago is outside the default 24 hours
    assert found["fleet-01"]["counts"] == {} and "no smartctl: disk health not checked" in found["fleet-01"]["notes"]
    log = runbook("log", record["id"], cwd=ws).stdout
    assert "fleet-03: warning: 1 OOM kills (python3 1); 1 segfaults (nginx 1); reboot pending" in log
    assert "fleet-04: ok: no sign of failure since " in log


def test_warnings_pass_unless_fail_on_says_so_and_since_reaches_back(
        fleet_hosts: Any, signs: None, inventory: Path, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, inventory, "-l", "fleet-01,fleet-03,fleet-04", "-p", "since=7d")
    assert code == 0, stderr
    found = record["steps"][0]["data"]["failure_signs"]
    assert {h: f["verdict"] for h, f in found.items()} == {"fleet-01": "warning", "fleet-03": "warning", "fleet-04": "ok"}
    assert found["fleet-01"]["warning"] == ["1 OOM kills (java 1)"]

    # the journal's kernel messages this time
    code, record, stderr = _run(ws, inventory, "--check", "-l", "fleet-03,fleet-04", "-p", "fail_on=warning",
                                source="journal")
    assert code == 1, stderr
    assert {h: r["failed"] for h, r in record["steps"][0]["hosts"].items()} == {"fleet-03": 1, "fleet-04": 0}
    found = record["steps"][0]["data"]["failure_signs"]
    assert found["fleet-03"]["log_source"] == "journal"
    assert found["fleet-03"]["warning"][:2] == ["1 OOM kills (postgres 1)", "1 segfaults (sshd 1)"]
    argv = on_host(fleet_hosts, "fleet-03", "cat /tmp/journalctl.argv").stdout.split()
    assert "_TRANSPORT=kernel" in argv and any(a.startswith("--since=@") for a in argv)
