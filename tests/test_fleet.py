"""The test fleet: real sshd hosts, isolated from each other and from the machine."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from tests import fleet
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    import fleet  # type: ignore[no-redef, unused-ignore]

FLEET_SCRIPT = Path(__file__).with_name("fleet.py")
# Read at import: fixtures may scrub CI from the environment before a test runs.
IN_CI = bool(os.environ.get("CI"))


def require(problem: str | None) -> None:
    """CI must have what the fleet needs; elsewhere a missing piece only skips."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fleet.Fleet]:
    require(fleet.unavailable_reason())
    started = fleet.start_fleet(3, tmp_path_factory.mktemp("fleet"))
    yield started
    started.stop()


def on_host(running: fleet.Fleet, host: fleet.Host, command: str) -> subprocess.CompletedProcess[str]:
    argv = running.ssh_argv(host, command)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def output_of(running: fleet.Fleet, host: fleet.Host, command: str) -> str:
    result = on_host(running, host, command)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def ansible_tool(name: str) -> str:
    """An Ansible command from the interpreter's own environment first, then from PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    require(None if found else f"{name} not found beside {sys.executable} nor on PATH")
    assert found is not None
    return found


def test_each_host_takes_root_logins_with_the_fleet_key(running: fleet.Fleet) -> None:
    for host in running.hosts:
        assert output_of(running, host, "id -u") == "0"


def test_each_host_has_its_own_hostname(running: fleet.Fleet) -> None:
    names = [output_of(running, host, "hostname") for host in running.hosts]
    assert names == ["fleet-01", "fleet-02", "fleet-03"]
    assert socket.gethostname() not in names


def test_a_file_written_on_one_host_stays_there(running: fleet.Fleet) -> None:
    first, second = running.hosts[:2]
    output_of(running, first, "echo written-on-fleet-01 > /etc/fleet-probe")
    assert output_of(running, first, "cat /etc/fleet-probe") == "written-on-fleet-01"
    assert on_host(running, second, "test -e /etc/fleet-probe").returncode == 1
    assert not Path("/etc/fleet-probe").exists()


PACKAGE_SCRIPT = """
set -e
mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/fleet-probe
printf 'Package: fleet-probe\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: tests <t@example.invalid>\\nDescription: fleet isolation probe\\n' > /tmp/pkg/DEBIAN/control
echo marker > /tmp/pkg/usr/share/fleet-probe/marker
dpkg-deb --root-owner-group --build /tmp/pkg /tmp/fleet-probe.deb >/dev/null
dpkg -i /tmp/fleet-probe.deb >/dev/null
"""
PACKAGE_PRESENT = "dpkg-query -W fleet-probe && test -e /usr/share/fleet-probe/marker"


def test_a_package_installed_on_one_host_stays_there(running: fleet.Fleet) -> None:
    first, second = running.hosts[:2]
    output_of(running, first, PACKAGE_SCRIPT)
    assert on_host(running, first, PACKAGE_PRESENT).returncode == 0
    assert on_host(running, second, PACKAGE_PRESENT).returncode != 0
    assert subprocess.run(["dpkg-query", "-W", "fleet-probe"], capture_output=True).returncode != 0
    assert not Path("/usr/share/fleet-probe").exists()
    output_of(running, first, "dpkg --purge fleet-probe >/dev/null")
    assert on_host(running, first, "test -e /usr/share/fleet-probe/marker").returncode == 1


def test_processes_of_one_host_are_invisible_to_another(running: fleet.Fleet) -> None:
    first, second = running.hosts[:2]
    output_of(running, first, "setsid sleep 4242 </dev/null >/dev/null 2>&1 &")
    assert output_of(running, first, "pgrep -fx 'sleep 4242'")
    assert on_host(running, second, "pgrep -fx 'sleep 4242'").returncode == 1
    assert output_of(running, second, "cat /proc/1/comm") == "sshd"


def test_hosts_mount_nothing_on_the_machine(running: fleet.Fleet) -> None:
    assert fleet.mount_points_under(running.workdir) == []
    assert " fleet-" not in Path("/proc/self/mountinfo").read_text()


PLAYBOOK = """
- hosts: fleet
  gather_facts: true
  tasks:
    - name: Facts come from the host itself
      ansible.builtin.assert:
        that:
          - ansible_facts.hostname == inventory_hostname
          - ansible_facts.python.executable == "/usr/bin/python3"
    - name: Ansible can change files
      ansible.builtin.copy:
        dest: /etc/fleet-ansible
        content: "{{ inventory_hostname }}\\n"
"""


def test_ansible_manages_every_host_from_the_inventory(
    running: fleet.Fleet, tmp_path: Path
) -> None:
    (tmp_path / "playbook.yml").write_text(PLAYBOOK)
    argv = [ansible_tool("ansible-playbook"), "-i", str(running.inventory_path), "playbook.yml"]
    # tmp_path as working folder keeps any ansible.cfg of the checkout out of this test.
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for host in running.hosts:
        assert f"{host.name} " in result.stdout.split("PLAY RECAP")[1]
        assert output_of(running, host, "cat /etc/fleet-ansible") == host.name


def test_ansible_ping_reaches_every_host(running: fleet.Fleet, tmp_path: Path) -> None:
    argv = [ansible_tool("ansible"), "fleet", "-i", str(running.inventory_path), "-m", "ping"]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(running.hosts)


def fleet_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(FLEET_SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def processes_of(workdir: Path) -> set[tuple[int, int]]:
    """Every process of the fleet's hosts, as (pid, start time) so a recycled pid is not counted."""
    namespaces = [host.pid_namespace for host in fleet.load_fleet(workdir).hosts]
    pids = [pid for namespace in namespaces for pid in fleet.processes_in_namespace(namespace)]
    return {(pid, fleet.start_time(pid)) for pid in pids}


def still_alive(processes: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(pid, started) for pid, started in processes if fleet.start_time(pid) == started}


@pytest.fixture
def cli_workdir(tmp_path: Path) -> Iterator[Path]:
    require(fleet.unavailable_reason())
    workdir = tmp_path / "cli"
    yield workdir
    fleet.stop_fleet(workdir)  # only does something when the test failed half way


def test_cli_up_replaces_a_running_fleet_and_down_leaves_nothing(cli_workdir: Path) -> None:
    assert fleet_cli("up", "2", "--dir", str(cli_workdir)) == str(cli_workdir / "inventory.yml")
    first = fleet.load_fleet(cli_workdir)
    # A daemon started over ssh must die with its host, like the host's sshd.
    daemon = "setsid sleep 4343 </dev/null >/dev/null 2>&1 &"
    subprocess.run(first.ssh_argv(first.hosts[0], daemon), check=True, timeout=60)
    old_processes = processes_of(cli_workdir)
    assert len(old_processes) >= 3  # two sshd and the daemon

    fleet_cli("up", "1", "--dir", str(cli_workdir))
    assert still_alive(old_processes) == set()
    new_processes = processes_of(cli_workdir)
    assert new_processes

    fleet_cli("down", "--dir", str(cli_workdir))
    assert still_alive(new_processes) == set()
    assert fleet.mount_points_under(cli_workdir) == []
    assert list(cli_workdir.iterdir()) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", first.hosts[0].port), timeout=5).close()
    fleet_cli("down", "--dir", str(cli_workdir))  # stopping a stopped fleet is harmless
