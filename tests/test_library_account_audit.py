"""The account-audit runbook on the fleet: the baseline passes with the right allowed lists; an
unexpected account, sudo right or authorized key fails only its host, named."""
from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, on_host, runbook

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
# What the fleet's image has, read independently of the runbook: accounts whose shell gives a login.
LOGIN_ACCOUNTS = "awk -F: '$7 !~ /(nologin|false|sync|halt|shutdown)$/ || $3 == 0 {print $1}' /etc/passwd"


def _fingerprint(public_key: Path) -> str:
    done = subprocess.run(["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True)
    return done.stdout.split()[1]


@pytest.fixture
def baseline(fleet_hosts: Any) -> dict[str, list[str]]:
    """Allowed lists that describe the fleet as it is: its login accounts, no sudo, the fleet's own key."""
    users: set[str] = set()
    for host in HOSTS:
        users.update(on_host(fleet_hosts, host, LOGIN_ACCOUNTS).stdout.split())
    fleet_key = _fingerprint(Path(fleet_hosts.key_path).with_suffix(".pub"))
    return {"allowed_users": sorted(users), "allowed_sudo": [], "allowed_keys": [fleet_key]}


def _run(ws: Path, fleet: Any, allowed: dict[str, list[str]], *args: str) -> tuple[int, dict[str, Any], str]:
    params = ws / "baseline.yml"
    params.write_text(json.dumps(allowed))  # a params file, as the runbook's description recommends
    done = runbook("run", "account-audit", "--json", "-i", str(fleet.inventory_path), "--params-file", str(params),
                   *args, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def _failed(record: dict[str, Any]) -> dict[str, int]:
    return {host: result["failed"] for host, result in record["steps"][0]["hosts"].items()}


def test_baseline_passes_and_the_fleet_key_is_found(
        fleet_hosts: Any, baseline: dict[str, list[str]], tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, fleet_hosts, baseline)
    assert code == 0, stderr
    assert _failed(record) == dict.fromkeys(HOSTS, 0)
    findings = record["steps"][0]["data"]["account_audit"]
    assert sorted(findings) == HOSTS
    for host, found in findings.items():
        assert sorted(found["login_accounts"]) == baseline["allowed_users"], host
        assert found["sudo_accounts"] == [], host
        # The fleet's sshd reads /etc/ssh/fleet/authorized_keys (its -f config): found by asking that sshd.
        assert found["authorized_keys"] == [{
            "fingerprint": baseline["allowed_keys"][0], "type": "ssh-ed25519", "comment": "fleet-client",
            "file": "/etc/ssh/fleet/authorized_keys", "accounts": ["*"]}], host
        assert "/etc/ssh/fleet/authorized_keys" in found["authorized_keys_files"], host


@pytest.fixture
def mallory(fleet_hosts: Any) -> Iterator[str]:
    on_host(fleet_hosts, "fleet-02", "useradd -m -s /bin/bash mallory")
    try:
        yield "mallory"
    finally:
        on_host(fleet_hosts, "fleet-02", "userdel -r mallory", check=False)


def test_an_unexpected_login_account_fails_only_its_host(
        fleet_hosts: Any, baseline: dict[str, list[str]], mallory: str, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, fleet_hosts, baseline)
    assert code == 1
    assert _failed(record) == {"fleet-01": 0, "fleet-02": 1, "fleet-03": 0, "fleet-04": 0}
    uid = on_host(fleet_hosts, "fleet-02", "id -u mallory").stdout.strip()
    message = record["steps"][0]["hosts"]["fleet-02"]["message"]
    assert message.endswith(f"fleet-02: unexpected login account mallory (uid {uid}, shell /bin/bash)")
    assert re.search(r"FAILED: fleet-02: .*unexpected login account mallory", stderr)

    allowed = dict(baseline, allowed_users=baseline["allowed_users"] + ["mallory"])
    code, record, stderr = _run(ws, fleet_hosts, allowed, "-l", "fleet-02")
    assert code == 0, stderr


@pytest.fixture
def intruder_key(fleet_hosts: Any, tmp_path: Path) -> Iterator[Path]:
    """A key nobody allowed, in root's own authorized_keys on fleet-03."""
    key = tmp_path / "intruder"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "intruder@example", "-f", str(key)], check=True)
    public = key.with_suffix(".pub")
    on_host(fleet_hosts, "fleet-03", f"mkdir -p -m 700 /root/.ssh && echo 'no-pty {public.read_text().strip()}' "
                                     ">> /root/.ssh/authorized_keys")
    try:
        yield public
    finally:
        on_host(fleet_hosts, "fleet-03", "sed -i '/intruder@example/d' /root/.ssh/authorized_keys", check=False)


@pytest.fixture
def sudo_grants(fleet_hosts: Any) -> Iterator[None]:
    """On fleet-04: a sudoers.d rule for deploy, and a nologin service account in the sudo group."""
    had_sudoers = on_host(fleet_hosts, "fleet-04", "test -e /etc/sudoers", check=False).returncode == 0
    on_host(fleet_hosts, "fleet-04", """set -e
        test -e /etc/sudoers || printf 'root ALL=(ALL:ALL) ALL\\n@includedir /etc/sudoers.d\\n' > /etc/sudoers
        mkdir -p /etc/sudoers.d
        printf '# deploys\\nDefaults:deploy !requiretty\\ndeploy ALL=(ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/90-deploy
        echo 'ghost ALL=(ALL) ALL' > /etc/sudoers.d/README.txt  # holds a dot: sudo never reads it
        useradd -r -s /usr/sbin/nologin -G sudo svc-backup""")
    try:
        yield
    finally:
        on_host(fleet_hosts, "fleet-04", "userdel svc-backup; rm -f /etc/sudoers.d/90-deploy /etc/sudoers.d/README.txt"
                + ("" if had_sudoers else "; rm -f /etc/sudoers"), check=False)


def test_unexpected_keys_and_sudo_rights_are_named(
        fleet_hosts: Any, baseline: dict[str, list[str]], intruder_key: Path, sudo_grants: None,
        tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, fleet_hosts, baseline)
    assert code == 1
    assert _failed(record) == {"fleet-01": 0, "fleet-02": 0, "fleet-03": 1, "fleet-04": 1}
    hosts = record["steps"][0]["hosts"]
    fingerprint = _fingerprint(intruder_key)
    assert hosts["fleet-03"]["message"].endswith(
        f'fleet-03: unexpected authorized key ssh-ed25519 {fingerprint} "intruder@example" for root '
        f"in /root/.ssh/authorized_keys:1")
    message = hosts["fleet-04"]["message"]
    assert "fleet-04: unexpected sudo rights for deploy (/etc/sudoers.d/90-deploy:3)" in message
    assert "unexpected sudo rights for svc-backup (group sudo)" in message
    assert "ghost" not in message and "root" not in message  # skipped file; uid 0 is never a sudo finding
    assert "login account" not in message  # svc-backup has no login shell

    # Allowed by public key (fleet-03) and by name (fleet-04): both pass.
    allowed = dict(baseline, allowed_keys=baseline["allowed_keys"] + [intruder_key.read_text().strip()],
                   allowed_sudo=["deploy", "svc-backup"])
    code, record, stderr = _run(ws, fleet_hosts, allowed, "-l", "fleet-03,fleet-04")
    assert code == 0, stderr
    # Allowed by comment: the weak form still works for the key it names, and only for it.
    allowed = dict(baseline, allowed_keys=["fleet-client", "intruder@example"])
    code, record, stderr = _run(ws, fleet_hosts, allowed, "-l", "fleet-03")
    assert code == 0, stderr
