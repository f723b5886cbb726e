"""The cert-expiry-check runbook on the fleet: a certificate file about to expire fails its host,
named with the file and the date; TLS endpoints are checked from the hosts."""
from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, on_host, runbook

HOSTS = ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]
FOLDER = "/etc/ssl/ce-test"
CERT = f"{FOLDER}/app.pem"
COMBINED = f"{FOLDER}/combined.pem"  # certificate and private key in one file, as haproxy wants it


def _make_cert(days: int, name: str) -> str:
    """Shell: a self-signed certificate valid for `days` at CERT, its key, and both in COMBINED."""
    return (f"mkdir -p {FOLDER} && cd {FOLDER} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
            f" -nodes -keyout app.key -out app.pem -days {days} -subj /CN={name} 2>/dev/null"
            f" && cat app.pem app.key > combined.pem")


def _expiry(fleet: Any, host: str, path: str) -> str:
    """The certificate's notAfter as the runbook prints it (UTC, minutes)."""
    line = on_host(fleet, host, f"LC_ALL=C openssl x509 -noout -enddate -in {path}").stdout.strip()
    when = datetime.strptime(line.removeprefix("notAfter="), "%b %d %H:%M:%S %Y GMT")
    return when.replace(tzinfo=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@pytest.fixture
def certs(fleet_hosts: Any) -> Iterator[None]:
    """On every host a certificate valid for a year, except fleet-03's: two days."""
    for host in HOSTS:
        on_host(fleet_hosts, host, _make_cert(2 if host == "fleet-03" else 365, f"app.{host}"))
    try:
        yield
    finally:
        for host in HOSTS:
            on_host(fleet_hosts, host, f"rm -rf {FOLDER}", check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tls_server(fleet_hosts: Any) -> Iterator[str]:
    """`openssl s_server` on fleet-02 (hosts share the loopback network) with a certificate that
    expires in 5 days; yields its host:port. Stopped by its pid afterwards."""
    port = _free_port()
    on_host(fleet_hosts, "fleet-02", _make_cert(5, "endpoint.test").replace(FOLDER, "/run/ce-server"))
    pid = on_host(fleet_hosts, "fleet-02", f"cd /run/ce-server || exit 1; setsid openssl s_server -accept 127.0.0.1:{port} "
                                           "-cert app.pem -key app.key -www >/dev/null 2>&1 </dev/null & echo $!"
                  ).stdout.strip()
    try:
        assert _wait(lambda: _listening(port)), f"s_server on fleet-02 did not start listening on {port}"
        yield f"127.0.0.1:{port}"
    finally:
        on_host(fleet_hosts, "fleet-02", f"kill {pid}; rm -rf /run/ce-server", check=False)
        assert _wait(lambda: not _listening(port)), f"s_server (pid {pid} on fleet-02) still listens on {port}"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _run(ws: Path, fleet: Any, *params: str) -> tuple[int, dict[str, Any], str]:
    done = runbook("run", "cert-expiry-check", "--json", "-i", str(fleet.inventory_path), *params, cwd=ws)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def _kept_text(state: Path) -> str:
    parts = []
    for path in state.rglob("*"):
        if path.is_file() and path.suffix != ".db":
            data = path.read_bytes()
            parts.append((gzip.decompress(data) if path.suffix == ".gz" else data).decode(errors="replace"))
    return "\n".join(parts)


def test_expiring_file_fails_its_host_with_file_and_date(
        fleet_hosts: Any, certs: None, tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    files = f"cert_files={CERT},{COMBINED}"
    code, record, stderr = _run(ws, fleet_hosts, "-p", files)
    assert code == 1
    step = record["steps"][0]
    assert {h: r["failed"] for h, r in step["hosts"].items()} == {
        "fleet-01": 0, "fleet-02": 0, "fleet-03": 1, "fleet-04": 0}
    expires = _expiry(fleet_hosts, "fleet-03", CERT)
    message = step["hosts"]["fleet-03"]["message"]
    assert f"fleet-03: {CERT}: CN=app.fleet-03 expires in " in message
    assert f"({expires} < 30 days)" in message
    assert f"{COMBINED}: CN=app.fleet-03 expires in " in message  # the key beside it is skipped, not an error
    assert "FAILED: fleet-03" in stderr and CERT in stderr and "FAILED: fleet-01" not in stderr

    found = step["data"]["certificates"]
    assert sorted(found) == HOSTS
    assert [c["source"] for c in found["fleet-01"]["certificates"]] == [CERT, COMBINED]
    assert found["fleet-01"]["problems"] == []
    assert 364 <= found["fleet-01"]["certificates"][0]["days_left"] <= 365
    assert found["fleet-03"]["certificates"][0]["not_after"] == expires
    assert 1.9 <= found["fleet-03"]["certificates"][0]["days_left"] <= 2

    key = on_host(fleet_hosts, "fleet-01", f"sed -n 2p {FOLDER}/app.key").stdout.strip()
    kept = _kept_text(state_dir)
    assert "PRIVATE KEY" not in kept and key not in kept  # keys in combined PEM files are never read

    # After the renewal, every host passes.
    on_host(fleet_hosts, "fleet-03", _make_cert(365, "app.fleet-03"))
    code, record, stderr = _run(ws, fleet_hosts, "-p", files)
    assert code == 0, stderr
    assert all(r["failed"] == 0 for r in record["steps"][0]["hosts"].values())


def test_endpoint_checked_from_every_host(fleet_hosts: Any, tls_server: str, tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    code, record, stderr = _run(ws, fleet_hosts, "-p", f"endpoints={tls_server}", "-p", "warn_days=3")
    assert code == 0, stderr
    found = record["steps"][0]["data"]["certificates"]
    assert sorted(found) == HOSTS
    for host in HOSTS:
        [cert] = found[host]["certificates"]
        assert cert["source"] == f"endpoint {tls_server}" and cert["subject"] == "CN=endpoint.test", host
        assert 4.9 <= cert["days_left"] <= 5, host

    closed = f"127.0.0.1:{_free_port()}"
    code, record, stderr = _run(ws, fleet_hosts, "-p", f"endpoints={tls_server},{closed}", "-p", "connect_timeout=5")
    assert code == 1
    expires = _expiry(fleet_hosts, "fleet-02", "/run/ce-server/app.pem")
    for host, result in record["steps"][0]["hosts"].items():
        assert result["failed"] == 1, host
        assert f"{host}: endpoint {tls_server}: CN=endpoint.test expires in " in result["message"]
        assert f"({expires} < 30 days)" in result["message"]
        assert f"endpoint {closed}: Connection refused" in result["message"]
