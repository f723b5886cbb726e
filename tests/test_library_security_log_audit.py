"""The security-log-audit runbook on the fleet: synthetic auth logs with current and old timestamps;
only the host with recent activity over the thresholds fails, named with its counts."""
from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, on_host, runbook

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
CLEANUP = "rm -f /var/log/auth.log /var/log/auth.log.1 /var/log/auth.log.2.gz /usr/local/bin/journalctl " \
          "/tmp/journalctl.argv; rm -rf /var/log/journal/fake"


def _rfc3339(when: datetime) -> str:
    """Debian 12 rsyslog's high-precision timestamp."""
    return when.isoformat(timespec="microseconds")


def _bsd(when: datetime) -> str:
    """The classic syslog timestamp: no year, host local time."""
    return when.astimezone().strftime("%b %e %H:%M:%S")


def _failed(stamp: str, host: str, n: int, user: str, address: str) -> list[str]:
    return [f"{stamp} {host} sshd[{2000 + i}]: Failed password for invalid user {user} from {address} "
            f"port {40000 + i} ssh2" for i in range(n)]


def _sudo(stamp: str, host: str, n: int, user: str) -> list[str]:
    return [f"{stamp} {host} sudo:    {user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/id -{i}"
            for i in range(n)]


def _key_only_probes(stamp: str, host: str) -> list[str]:
    """What a key-only sshd logs for guesses: no "Failed" line, one refusal per connection (4 here)."""
    lines = []
    for i in range(3):
        lines += [f"{stamp} {host} sshd[{5000 + i}]: Invalid user test from 198.51.100.20 port {50000 + i}",
                  f"{stamp} {host} sshd[{5000 + i}]: Connection closed by invalid user test 198.51.100.20 "
                  f"port {50000 + i} [preauth]"]
    return lines + [f"{stamp} {host} sshd[6000]: Connection closed by authenticating user root 198.51.100.30 "
                    f"port 60000 [preauth]"]


def _new_user(stamp: str, host: str, name: str, uid: int) -> str:
    return (f"{stamp} {host} useradd[3000]: new user: name={name}, UID={uid}, GID={uid}, home=/home/{name}, "
            f"shell=/bin/bash, from=/dev/pts/0")


def _benign(stamp: str, host: str) -> list[str]:
    """A quiet day: a login, two mistyped passwords, one sudo command; all below the thresholds."""
    return [f"{stamp} {host} sshd[1000]: Accepted publickey for root from 127.0.0.1 port 50000 ssh2: ED25519 SHA256:x",
            *_failed(stamp, host, 2, "root", "127.0.0.1"), *_sudo(stamp, host, 1, "ops")]


def _write(fleet: Any, host: str, path: str, lines: list[str], compress: bool = False) -> None:
    data = ("\n".join(lines) + "\n").encode()
    payload = base64.b64encode(gzip.compress(data) if compress else data).decode()
    on_host(fleet, host, f"echo {payload} | base64 -d > {path} && chmod 640 {path}")


@pytest.fixture
def auth_logs(fleet_hosts: Any) -> Iterator[datetime]:
    """fleet-02: heavy recent activity; fleet-03: the same activity two days old (in the current file, a
    rotated one and a gzipped one); fleet-01 and fleet-04: a quiet day."""
    now = datetime.now(timezone.utc)
    recent, old, older = _rfc3339(now - timedelta(minutes=30)), _bsd(now - timedelta(hours=48)), now - timedelta(hours=72)
    for host in ("fleet-01", "fleet-04"):
        _write(fleet_hosts, host, "/var/log/auth.log", _benign(recent, host))
    _write(fleet_hosts, "fleet-02", "/var/log/auth.log", [
        *_failed(old, "fleet-02", 50, "root", "198.51.100.7"),  # old: must not count
        *_benign(recent, "fleet-02"),
        # the first connection of these 28 guesses also says "Invalid user": still one failure per guess
        f"{recent} fleet-02 sshd[2000]: Invalid user admin from 203.0.113.9 port 40000",
        *_failed(recent, "fleet-02", 28, "admin", "203.0.113.9"),
        *_key_only_probes(recent, "fleet-02"),
        *_sudo(recent, "fleet-02", 3, "mallory"),
        _new_user(recent, "fleet-02", "mallory", 1077),
    ])
    _write(fleet_hosts, "fleet-03", "/var/log/auth.log", [
        *_failed(old, "fleet-03", 40, "admin", "203.0.113.9"), _new_user(old, "fleet-03", "olduser", 1066),
        *_benign(recent, "fleet-03"),
    ])
    _write(fleet_hosts, "fleet-03", "/var/log/auth.log.1", [
        *_failed(old, "fleet-03", 40, "root", "203.0.113.9"), *_sudo(old, "fleet-03", 80, "ops")])
    _write(fleet_hosts, "fleet-03", "/var/log/auth.log.2.gz", [
        *_failed(_rfc3339(older), "fleet-03", 40, "root", "203.0.113.9"),
        _new_user(_rfc3339(older), "fleet-03", "older", 1055)], compress=True)
    try:
        yield now
    finally:
        for host in HOSTS:
            on_host(fleet_hosts, host, CLEANUP, check=False)


def _run(ws: Path, fleet: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "security-log-audit", "--json", "-i", str(fleet.inventory_path), *args, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def test_recent_activity_over_thresholds_fails_only_that_host(
        fleet_hosts: Any, auth_logs: datetime, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, fleet_hosts, "-p", "max_sudo=3")
    assert code == 1, stderr
    step = record["steps"][0]
    assert {h: r["failed"] for h, r in step["hosts"].items()} == {
        "fleet-01": 0, "fleet-02": 1, "fleet-03": 0, "fleet-04": 0}
    message = step["hosts"]["fleet-02"]["message"]
    assert ("fleet-02: 34 failed logins in the last 24h > 20 (users: admin 28, root 3, test 3; "
            "from: 203.0.113.9 28, 198.51.100.20 3, 127.0.0.1 2)") in message
    assert "4 sudo commands in the last 24h > 3 (users: mallory 3, ops 1)" in message
    assert "new accounts in the last 24h: mallory (uid 1077, shell /bin/bash" in message
    # the operator sees the host and its finding as it happens
    assert re.search(r"FAILED: fleet-02: .*34 failed logins in the last 24h", stderr)

    figures = step["data"]["security_log_audit"]
    assert sorted(figures) == HOSTS  # failed hosts are recorded too
    assert figures["fleet-02"]["failed_logins"] == 34 and figures["fleet-02"]["new_accounts"] == ["mallory"]
    assert figures["fleet-02"]["sudo_by_user"] == {"mallory": 3, "ops": 1}
    # fleet-03 holds 120 failed logins, 80 sudo commands and 2 new accounts, all older than the window
    old_host = figures["fleet-03"]
    assert (old_host["failed_logins"], old_host["sudo_commands"], old_host["new_accounts"]) == (2, 1, [])
    assert old_host["problems"] == [] and old_host["source"] == "files"
    for quiet in ("fleet-01", "fleet-04"):
        assert (figures[quiet]["failed_logins"], figures[quiet]["sudo_commands"]) == (2, 1), quiet


def test_a_wider_window_reaches_the_old_activity_and_check_mode_reads_the_same(
        fleet_hosts: Any, auth_logs: datetime, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, fleet_hosts, "--check", "-l", "fleet-03", "-p", "window_hours=60",
                                "-p", "alert_on_new_accounts=false", "-p", "max_sudo=-1")
    assert code == 1, stderr
    assert record["check"] is True
    fleet_03 = record["steps"][0]["data"]["security_log_audit"]["fleet-03"]
    # 48 hours old: the current file and auth.log.1 count; the 72-hour-old .gz lines do not
    assert (fleet_03["failed_logins"], fleet_03["sudo_commands"], fleet_03["new_accounts"]) == (82, 81, ["olduser"])
    assert fleet_03["problems"] == [
        "82 failed logins in the last 60h > 20 (users: root 42, admin 40; from: 203.0.113.9 80, 127.0.0.1 2)"]

    code, record, stderr = _run(ws, fleet_hosts, "-l", "fleet-03", "-p", "window_hours=100",
                                "-p", "max_failed_logins=1000", "-p", "max_sudo=-1")
    assert code == 1, stderr
    message = record["steps"][0]["hosts"]["fleet-03"]["message"]
    assert "new accounts in the last 100h: olduser (uid 1066" in message and "older (uid 1055" in message
    assert "failed logins" not in message and "sudo" not in message


def test_quiet_hosts_pass_with_a_summary(fleet_hosts: Any, auth_logs: datetime, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("run", "security-log-audit", "-v", "-i", str(fleet_hosts.inventory_path),
                   "-l", "fleet-01,fleet-03,fleet-04", cwd=ws)
    assert done.returncode == 0, done.stderr
    for host in ("fleet-01", "fleet-03", "fleet-04"):
        assert (f"{host}: ok in the last 24h: 2 failed logins (max 20), 1 sudo commands (max 50), "
                f"0 new accounts; source /var/log/auth.log") in done.stderr


def test_a_host_without_any_auth_log_fails(fleet_hosts: Any, auth_logs: datetime, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    on_host(fleet_hosts, "fleet-04", "rm /var/log/auth.log")
    code, record, stderr = _run(ws, fleet_hosts, "-l", "fleet-04")
    assert code == 1
    assert "fleet-04: no auth log: no file matches /var/log/auth.log*, /var/log/secure*" in \
        record["steps"][0]["hosts"]["fleet-04"]["message"]


FAKE_JOURNALCTL = """#!/bin/sh
# Stands in for journald's reader: records its arguments, prints what `journalctl -o json` would.
echo "$@" > /tmp/journalctl.argv
cat <<'EOF'
{ENTRIES}
EOF
"""


def test_journal_is_read_where_there_are_no_auth_log_files(
        fleet_hosts: Any, auth_logs: datetime, tmp_path: Path) -> None:
    """The fleet runs no journald: a stand-in journalctl proves the query and the parsing of its JSON."""
    now = auth_logs

    def usec(when: datetime) -> str:
        return str(int(when.timestamp() * 1e6))

    entries = [
        *[{"__REALTIME_TIMESTAMP": usec(now - timedelta(minutes=5)), "SYSLOG_IDENTIFIER": "sshd-session",
           "MESSAGE": f"Failed publickey for deploy from 192.0.2.{i} port 5{i} ssh2: ED25519 SHA256:k"}
          for i in range(25)],
        {"__REALTIME_TIMESTAMP": usec(now - timedelta(hours=30)), "SYSLOG_IDENTIFIER": "sshd",
         "MESSAGE": "Failed password for root from 192.0.2.1 port 1 ssh2"},  # outside the window
        {"__REALTIME_TIMESTAMP": usec(now), "SYSLOG_IDENTIFIER": "sudo",
         "MESSAGE": "    ops : TTY=pts/1 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/true"},
    ]
    script = FAKE_JOURNALCTL.replace("{ENTRIES}", "\n".join(json.dumps(e) for e in entries))
    payload = base64.b64encode(script.encode()).decode()
    on_host(fleet_hosts, "fleet-04", f"rm /var/log/auth.log; mkdir -p /var/log/journal/fake && "
            f": > /var/log/journal/fake/system.journal && echo {payload} | base64 -d > /usr/local/bin/journalctl "
            f"&& chmod 755 /usr/local/bin/journalctl")
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, fleet_hosts, "-l", "fleet-04")
    assert code == 1, stderr
    figures = record["steps"][0]["data"]["security_log_audit"]["fleet-04"]
    assert figures["source"] == "journal"
    assert (figures["failed_logins"], figures["sudo_commands"]) == (25, 1)
    assert "25 failed logins in the last 24h > 20 (users: deploy 25" in record["steps"][0]["hosts"]["fleet-04"]["message"]
    argv = on_host(fleet_hosts, "fleet-04", "cat /tmp/journalctl.argv").stdout
    assert "--output=json" in argv and "--since=@" in argv and "SYSLOG_IDENTIFIER=sudo" in argv
