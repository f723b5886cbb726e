"""The accelerator: mitogen_linear by default, Ansible's own linear when turned off or when the step
needs it, and the record saying which ran. Real ansible-playbook, real mitogen, real fleet hosts."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_workspace, on_host, runbook
from runner.execution import accelerate

PLAYBOOK = """\
- name: Touch a file
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the marker
      ansible.builtin.copy:
        content: "{{ runbook_run_id }}\\n"
        dest: /tmp/accelerate-marker
        mode: "0644"
"""

RUNBOOK = """\
apiVersion: runbook/v1
name: {name}
title: Accelerator test
version: 1.0.0
kind: operation
concurrency: parallel
{extra}steps:
  - name: touch
    playbook: touch.yml
"""


@pytest.fixture(autouse=True)
def _default_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests set the mode themselves, also in a job that runs the suite with RUNBOOK_ACCELERATE=none."""
    monkeypatch.delenv("RUNBOOK_ACCELERATE", raising=False)


def _workspace(root: Path, inventory: str, playbook: str = PLAYBOOK) -> Path:
    for folder in ("runbooks", "playbooks", "roles", "inventories"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "playbooks" / "touch.yml").write_text(playbook)
    (root / "inventories" / "hosts.yml").write_text(inventory)
    (root / "runbooks" / "fast.yml").write_text(RUNBOOK.format(name="fast", extra=""))
    (root / "runbooks" / "plain.yml").write_text(RUNBOOK.format(name="plain", extra="accelerate: false\n"))
    return root


ALL_LOCAL = 'all:\n  hosts:\n    localhost:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
# The connection as a template: only Ansible knows it is local, so auto runs mitogen (as on SSH hosts).
LOCAL = ALL_LOCAL.replace("ansible_connection: local", "ansible_connection: \"{{ 'local' }}\"")


def _run(ws: Path, name: str, *args: str, env: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    done = runbook("run", name, "-i", "hosts", "--json", *args, cwd=ws, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    return done, json.loads(done.stdout)


def test_installed_mitogen_supports_installed_ansible_core() -> None:
    """mitogen is a regular dependency with checked bounds: the accelerator is available here."""
    plugins, why_not = accelerate.availability()
    assert why_not == "" and plugins is not None
    assert (plugins / "mitogen_linear.py").is_file()


def test_runs_accelerated_by_default_and_says_so(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", LOCAL)
    done, record = _run(ws, "fast")
    step = record["steps"][0]
    assert step["status"] == "succeeded" and step["strategy"] == accelerate.MITOGEN and step["strategy_reason"] == ""
    # ansible-core 2.19's notice about third-party strategies stays out of the output and the log.
    log = runbook("log", "last", cwd=ws)
    assert "Write the marker" in log.stdout and "(playbook on mitogen_linear): succeeded" in log.stdout
    for text in (done.stderr, log.stdout):
        assert "DEPRECATION" not in text and "deprecation_warnings" not in text
    report = json.loads(runbook("report", "last", "--format", "json", cwd=ws).stdout)
    assert report["steps"][0]["strategy"] == accelerate.MITOGEN


def test_turned_off_by_runbook_by_config_and_by_env(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", LOCAL)
    done, record = _run(ws, "plain")
    step = record["steps"][0]
    assert step["strategy"] == accelerate.ANSIBLE and "accelerate: false" in step["strategy_reason"]
    assert "own strategy" not in done.stderr  # a deliberate choice: no line about it
    assert "(playbook on linear): succeeded" in runbook("log", "last", cwd=ws).stdout
    (ws / "runbook.toml").write_text('[ansible]\naccelerate = "none"\n')
    _, record = _run(ws, "fast")
    assert record["steps"][0]["strategy"] == accelerate.ANSIBLE
    assert 'accelerate = "none"' in record["steps"][0]["strategy_reason"]
    (ws / "runbook.toml").write_text('[ansible]\naccelerate = "mitogen"\n')
    _, record = _run(ws, "fast", env={"RUNBOOK_ACCELERATE": "none"})
    assert record["steps"][0]["strategy"] == accelerate.ANSIBLE


def test_falls_back_automatically_when_the_playbook_needs_ansible(tmp_path: Path) -> None:
    """A become method mitogen lacks (runas) would fail under mitogen_linear: auto sees it first."""
    playbook = PLAYBOOK.replace("  tasks:\n", "  become_method: runas\n  tasks:\n")
    ws = _workspace(tmp_path / "ws", LOCAL, playbook)
    done, record = _run(ws, "fast")
    step = record["steps"][0]
    assert step["strategy"] == accelerate.ANSIBLE
    assert step["strategy_reason"] == "become_method 'runas' in touch.yml is not one mitogen supports"
    assert done.stderr.count("on Ansible's own strategy: become_method 'runas'") == 1


def test_an_all_local_inventory_runs_on_linear_without_a_word(tmp_path: Path) -> None:
    """On the local connection mitogen has nothing to save (it measured slower): auto picks linear."""
    ws = _workspace(tmp_path / "ws", ALL_LOCAL)
    done, record = _run(ws, "fast")
    step = record["steps"][0]
    assert step["strategy"] == accelerate.ANSIBLE and "local connection" in step["strategy_reason"]
    assert "own strategy" not in done.stderr
    (ws / "inventories" / "hosts.yml").unlink()
    (ws / "inventories" / "hosts.ini").write_text("localhost\n[all:vars]\nansible_connection=local\n")
    assert not accelerate.choose("auto", True, ws / "playbooks" / "touch.yml", ws / "inventories" / "hosts.ini",
                                 ws / "roles").accelerated
    (ws / "inventories" / "hosts.ini").write_text("localhost ansible_connection=local\nweb1\n")
    assert accelerate.choose("auto", True, ws / "playbooks" / "touch.yml", ws / "inventories" / "hosts.ini",
                             ws / "roles").accelerated


def test_bad_accelerate_settings_are_refused_before_anything_runs(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", LOCAL)
    (ws / "runbook.toml").write_text('[ansible]\naccelerate = "fast"\n')
    done = runbook("run", "fast", "-i", "hosts", cwd=ws)
    assert done.returncode == 3 and "ansible.accelerate" in done.stderr and "'fast'" in done.stderr
    (ws / "runbook.toml").unlink()
    done = runbook("run", "fast", "-i", "hosts", cwd=ws, env={"RUNBOOK_ACCELERATE": "turbo"})
    assert done.returncode == 2 and "RUNBOOK_ACCELERATE" in done.stderr
    (ws / "runbooks" / "fast.yml").write_text(RUNBOOK.format(name="fast", extra="accelerate: yes-please\n"))
    done = runbook("validate", "fast", cwd=ws)
    assert done.returncode == 3 and "accelerate" in done.stderr
    assert not (tmp_path / "state" / "runs").exists() or not any((tmp_path / "state" / "runs").iterdir())


@pytest.mark.parametrize(("where", "text", "reason"), [
    ("playbook", "- hosts: all\n  connection: winrm\n  tasks: []\n", "connection 'winrm' in touch.yml"),
    ("playbook", "- hosts: all\n  strategy: free\n  tasks: []\n", "touch.yml sets its own strategy (free)"),
    ("role", "- name: X\n  ansible.builtin.command: id\n  become: true\n  become_method: ansible.builtin.runas\n",
     "become_method 'ansible.builtin.runas' in main.yml"),
    ("inventory", "[web]\nw1 ansible_connection=psrp\n", "connection 'psrp' in hosts.ini"),
])
def test_blockers_are_found_in_playbook_roles_and_inventory(tmp_path: Path, where: str, text: str, reason: str) -> None:
    playbook, inventory, roles = tmp_path / "touch.yml", tmp_path / "hosts.ini", tmp_path / "roles"
    playbook.write_text("- hosts: all\n  roles: [web]\n  tasks:\n    - name: \"Check the connection: now\"\n      ansible.builtin.ping:\n")
    inventory.write_text("[web]\nw1 ansible_connection=ssh\n")
    (roles / "web" / "tasks").mkdir(parents=True)
    (roles / "web" / "tasks" / "main.yml").write_text("- name: Y\n  ansible.builtin.ping:\n")
    assert accelerate.choose("auto", True, playbook, inventory, roles).accelerated
    target = {"playbook": playbook, "inventory": inventory, "role": roles / "web" / "tasks" / "main.yml"}[where]
    target.write_text(text)
    strategy = accelerate.choose("auto", True, playbook, inventory, roles)
    assert not strategy.accelerated and strategy.reason.startswith(reason)
    # "mitogen" is the operator's word that it works: no detection, no fallback.
    assert accelerate.choose("mitogen", True, playbook, inventory, roles).accelerated


def test_templated_values_are_left_to_run_time(tmp_path: Path) -> None:
    playbook = tmp_path / "touch.yml"
    playbook.write_text("- hosts: all\n  become_method: \"{{ how }}\"\n  tasks: []\n")
    assert accelerate.choose("auto", True, playbook, tmp_path / "none.yml", tmp_path).accelerated


def test_fleet_runs_accelerated_and_falls_back_with_accelerate_false(tmp_path: Path, fleet_hosts: Any) -> None:
    """Over real SSH: the default run uses mitogen_linear, `accelerate: false` uses linear; both work."""
    ws = _workspace(tmp_path / "ws", fleet_hosts.inventory_path.read_text())
    _, fast = _run(ws, "fast")
    _, plain = _run(ws, "plain")
    assert [s["strategy"] for s in fast["steps"]] == [accelerate.MITOGEN]
    assert [s["strategy"] for s in plain["steps"]] == [accelerate.ANSIBLE]
    for record in (fast, plain):
        assert sorted(record["steps"][0]["hosts"]) == [h.name for h in fleet_hosts.hosts]
    for host in fleet_hosts.hosts:
        assert on_host(fleet_hosts, host.name, "cat /tmp/accelerate-marker").stdout.strip() == plain["id"]
