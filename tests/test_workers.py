"""Execution nodes: a fleet host with ansible-runner in its own overlay (no checkout, no runbook) runs
playbook steps sent over ssh with ansible-runner's transmit/worker/process stream."""
from __future__ import annotations

import gzip
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import workernode
from conftest import on_host, runbook

NODE = "fleet-04"  # the worker; fleet-01..03 are the hosts it reaches
TARGETS = ["fleet-01", "fleet-02", "fleet-03"]

HELLO = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Where am I
      command: uname -n
      register: where
      changed_when: false
    - name: Say where
      debug:
        msg: "running on node {{ where.stdout }}"
    - name: Where Ansible keeps modules on the node's local connection (its job folder)
      debug:
        msg: "remote temp {{ ansible_remote_tmp | default('~/.ansible/tmp') }}"
    - name: A careless task that prints the secret
      debug:
        msg: "the token is {{ api_token }}"
    - name: A careless command that takes the secret as an argument
      shell: "test -n '{{ api_token }}'"
      changed_when: false
"""

SLEEP = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Sleep for a long time
      command: sleep 300
"""


def _runbook_file(name: str, playbook: str, extra: str = "") -> str:
    return f"""apiVersion: runbook/v1
name: {name}
title: {name}
version: 1.0.0
kind: operation
owner: test
targets: all
parameters:
  api_token: {{type: secret, env: API_TOKEN}}
steps:
  - name: main
    playbook: {playbook}
{extra}"""


@pytest.fixture(scope="module")
def node(fleet_hosts: Any) -> Iterator[dict[str, Any]]:
    """fleet-04 made a worker: its venv, the fleet key to reach the others, the checkout hidden."""
    runner = workernode.make_node(lambda command: on_host(fleet_hosts, NODE, command))
    key = Path(fleet_hosts.key_path).read_text()
    host = next(h for h in fleet_hosts.hosts if h.name == NODE)
    subprocess.run(fleet_hosts.ssh_argv(host, "umask 077; cat > /root/.ssh/id_ed25519"), input=key, text=True,
                   check=True, capture_output=True, timeout=60)
    command = fleet_hosts.ssh_argv(host, "")[:-1]
    yield {"runner": runner, "command": command, "host": host}
    on_host(fleet_hosts, NODE, workernode.UNDO, check=False)


@pytest.fixture
def ws(tmp_path: Path, node: dict[str, Any], fleet_hosts: Any) -> Path:
    root = tmp_path / "ws"
    for folder in ("runbooks", "playbooks", "inventories"):
        (root / folder).mkdir(parents=True)
    repo = Path(__file__).resolve().parent.parent
    for name in ("health_check.yml",):
        (root / "playbooks" / name).write_text((repo / "playbooks" / name).read_text())
    (root / "runbooks" / "health-check.yml").write_text((repo / "runbooks" / "health-check.yml").read_text())
    (root / "playbooks" / "hello.yml").write_text(HELLO)
    (root / "playbooks" / "sleep.yml").write_text(SLEEP)
    (root / "runbooks" / "hello.yml").write_text(_runbook_file("hello", "hello.yml", "    worker: node\n"))
    (root / "runbooks" / "sleep.yml").write_text(_runbook_file("sleep", "sleep.yml").replace("targets: all", "targets: all\nworker: node"))
    (root / "inventories" / "local.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n      ansible_python_interpreter: /usr/bin/python3\n")
    # The inventory as the node sees it: the key the node holds, not this machine's path.
    fleet_inventory = Path(fleet_hosts.inventory_path).read_text().splitlines()
    (root / "inventories" / "fleet.yml").write_text("\n".join(
        line for line in fleet_inventory if "ansible_ssh_private_key_file" not in line) + "\n")
    ghost_port = _closed_port()
    workers = {
        "node": (node["command"], node["runner"]),
        "ghost": (["ssh", "-p", str(ghost_port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@127.0.0.1"],
                  "ansible-runner"),
        "bare": (fleet_hosts.ssh_argv(next(h for h in fleet_hosts.hosts if h.name == "fleet-01"), "")[:-1],
                 "ansible-runner"),
        "old": (node["command"], "/opt/old-runner/ansible-runner"),
    }
    (root / "runbook.toml").write_text("".join(
        f"[workers.{name}]\ncommand = {json.dumps(command)}\nansible_runner = {json.dumps(runner)}\n\n"
        for name, (command, runner) in workers.items()))
    return root


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _record(ws: Path, done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.stdout, done.stderr
    return dict(json.loads(done.stdout))


def _node_processes(fleet: Any) -> list[str]:
    """The node's processes other than its sshd and the ps that lists them."""
    out = on_host(fleet, NODE, "ps -eo pid=,args=").stdout
    return [line.strip() for line in out.splitlines()
            if line.strip() and not any(word in line for word in ("sshd", "ps -eo", "sh -c ps", "bash -c ps"))]


def _files_holding(text: str, roots: list[Path]) -> list[str]:
    """Files under `roots` (gzip files decompressed) that contain `text`."""
    found = []
    for root in roots:
        for path in [root] if root.is_file() else _walk(root):
            try:
                data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            except OSError:
                continue
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            if text.encode() in data:
                found.append(str(path))
    return found


def test_a_playbook_runs_on_the_node_and_its_secret_rests_nowhere(ws: Path, fleet_hosts: Any, tmp_path: Path) -> None:
    token = "tok-" + secrets.token_hex(12)
    started = time.time()
    done = runbook("run", "hello", "--json", cwd=ws, env={"API_TOKEN": token})
    assert done.returncode == 0, done.stderr
    record = _record(ws, done)
    step = record["steps"][0]
    assert step["worker"] == "node" and step["status"] == "succeeded"
    assert list(step["hosts"]) == ["localhost"]
    log = runbook("log", "last", cwd=ws).stdout
    assert f"running on node {NODE}" in log  # the playbook ran there, not here
    assert "the token is ***" in log and token not in log
    assert "remote temp /dev/shm/runbook-worker." in log
    assert "| main (worker node) |" in runbook("report", "last", "--format", "md", cwd=ws).stdout
    folder = next((tmp_path / "state" / "runs").iterdir()) / "steps" / "01-main"
    described = json.loads((folder / "worker.json").read_text())
    assert described["node"] == NODE and described["worker"] == "node"
    # The controller: the workspace, the state dir, memory-backed files, and anything new in /tmp.
    fresh = [p for p in _walk(Path("/tmp")) if _newer(p, started) and tmp_path not in p.parents]
    leaks = _files_holding(token, [tmp_path, Path("/dev/shm"), *fresh])
    assert leaks == []
    # The node: every place the job can write (its tmpfs mounts, home, the venv, /etc, /var) read whole.
    search = (f"grep -rl {shlex.quote(token)} /root /tmp /var/tmp /var/log /var/spool /dev/shm /run /etc /opt/runbook-node /work 2>/dev/null; "
              "echo searched")
    out = on_host(fleet_hosts, NODE, search, check=False).stdout
    assert out.strip() == "searched", out
    assert on_host(fleet_hosts, NODE, "ls -A /dev/shm").stdout.strip() == ""
    assert _node_processes(fleet_hosts) == []


def _walk(root: Path) -> Iterator[Path]:
    """Files under `root`; folders that vanish while walked (other programs' temp files) are skipped."""
    for folder, _, files in os.walk(root, onerror=lambda _: None):
        yield from (Path(folder) / name for name in files)


def _newer(path: Path, since: float) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_mtime >= since
    except OSError:
        return False


def test_cancel_stops_the_job_on_the_node(ws: Path, fleet_hosts: Any) -> None:
    env = dict(os.environ, API_TOKEN="x" * 12)
    run = subprocess.Popen([sys.executable, "-m", "runner", "run", "sleep", "--non-interactive"], cwd=ws, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any("sleep 300" in p for p in _node_processes(fleet_hosts)):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.5)
        follow = subprocess.Popen([sys.executable, "-m", "runner", "log", "last", "--follow"], cwd=ws,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        canceled_at = time.monotonic()
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
        left = _node_processes(fleet_hosts)
        elapsed = time.monotonic() - canceled_at
        followed, _ = follow.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, stderr
    assert elapsed < 15  # the bound is 10 s; ps over ssh on a loaded machine takes its share
    assert left == [], left
    assert on_host(fleet_hosts, NODE, "ls -A /dev/shm").stdout.strip() == ""
    assert "Sleep for a long time" in followed  # log --follow showed the remote step as it ran
    record = json.loads(runbook("history", "-n", "1", "--json", cwd=ws).stdout)[0]
    assert record["status"] == "canceled"


def test_a_worker_that_cannot_be_reached_ends_the_step_with_exit_4(ws: Path) -> None:
    done = runbook("run", "health-check", "--worker", "ghost", "--non-interactive", cwd=ws)
    assert done.returncode == 4, done.stderr
    assert "worker 'ghost' cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_without_ansible_runner_ends_the_step_with_exit_4(ws: Path) -> None:
    done = runbook("run", "health-check", "--worker", "bare", "--non-interactive", cwd=ws)
    assert done.returncode == 4, done.stderr
    assert "worker 'bare' lacks ansible-runner: ansible-runner is not installed on fleet-01" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_version_mismatch_is_explained(ws: Path, fleet_hosts: Any, node: dict[str, Any]) -> None:
    shim = ("#!/bin/sh\n"
            "[ \"${1:-}\" = --version ] && { echo 2.3.0; exit 0; }\n"
            f"exec {node['runner']} \"$@\"\n")
    on_host(fleet_hosts, NODE, f"mkdir -p /opt/old-runner && printf %s {shlex.quote(shim)} > /opt/old-runner/ansible-runner"
            f" && chmod 755 /opt/old-runner/ansible-runner && ln -sf {workernode.NODE_VENV}/bin/ansible-playbook /opt/old-runner/")
    try:
        done = runbook("run", "hello", "--worker", "old", "--non-interactive", cwd=ws, env={"API_TOKEN": "t" * 12})
    finally:
        on_host(fleet_hosts, NODE, "rm -rf /opt/old-runner", check=False)
    assert done.returncode == 4, done.stderr
    assert "worker 'old' runs ansible-runner 2.3.0 and this controller 2.4.3" in done.stderr
    assert "install ansible-runner 2.4.x on the node" in done.stderr
    assert _node_processes(fleet_hosts) == []


def test_the_health_check_runs_through_the_worker_against_the_other_hosts(ws: Path, fleet_hosts: Any) -> None:
    done = runbook("run", "health-check", "--worker", "node", "-i", "fleet", "-l", ",".join(TARGETS),
                   "-p", "max_load_per_cpu=1000", "--json", cwd=ws)
    record = _record(ws, done)
    assert done.returncode == 0, done.stderr
    step = record["steps"][0]
    assert step["worker"] == "node" and record["worker"] == "node"
    assert sorted(step["hosts"]) == TARGETS
    assert all(h["failed"] == 0 and h["unreachable"] == 0 and h["ok"] > 0 for h in step["hosts"].values())


def _start_sleep(ws: Path, fleet: Any) -> subprocess.Popen[str]:
    """`runbook run sleep` on the worker, returned once `sleep 300` runs on the node."""
    env = dict(os.environ, API_TOKEN="x" * 12)
    run = subprocess.Popen([sys.executable, "-m", "runner", "run", "sleep", "--non-interactive"], cwd=ws, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any("sleep 300" in p for p in _node_processes(fleet)):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.5)
    return run


def _transport_of(pid: int) -> int:
    """The ssh the run process started for its worker."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return next(int(c) for c in children if Path(f"/proc/{c}/comm").read_text().strip() == "ssh")


def _node_is_clean(fleet: Any, within: float) -> list[str]:
    deadline = time.monotonic() + within
    left = _node_processes(fleet)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _node_processes(fleet)
    return left


def test_a_lost_connection_is_said_plainly_and_the_node_stops_the_job(ws: Path, fleet_hosts: Any) -> None:
    run = _start_sleep(ws, fleet_hosts)
    try:
        os.kill(_transport_of(run.pid), signal.SIGKILL)  # the link dies under the running job
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 4, stderr
    assert "lost the connection to worker 'node'" in stderr
    assert f"the playbook may still be running on node {NODE}" in stderr
    assert _node_is_clean(fleet_hosts, 10) == []
    assert on_host(fleet_hosts, NODE, "ls -A /dev/shm").stdout.strip() == ""


def test_a_killed_controller_is_reaped_on_the_node_too(ws: Path, fleet_hosts: Any) -> None:
    run = _start_sleep(ws, fleet_hosts)
    os.kill(run.pid, signal.SIGKILL)
    run.communicate(timeout=60)
    assert _node_is_clean(fleet_hosts, 10) == []  # its stdin closed: the node stopped the job
    assert on_host(fleet_hosts, NODE, "ls -A /dev/shm").stdout.strip() == ""
    record = json.loads(runbook("history", "-n", "1", "--json", cwd=ws).stdout)[0]
    assert record["status"] == "aborted"  # the next command reaps the dead run
    assert not any(Path(f"/proc/{p}").exists() for p in [run.pid])


# -- without the fleet: configuration, references, and a worker reached with `sh -c` on this machine --

def _plain_ws(tmp_path: Path, toml: str, runbook_text: str) -> Path:
    root = tmp_path / "plain"
    for folder in ("runbooks", "playbooks", "inventories"):
        (root / folder).mkdir(parents=True)
    (root / "playbooks" / "hello.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Hello\n      debug:\n        msg: hello\n")
    (root / "inventories" / "local.yml").write_text(
        f"all:\n  hosts:\n    localhost:\n      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n")
    (root / "runbooks" / "hello.yml").write_text(runbook_text)
    (root / "runbook.toml").write_text(toml)
    return root


_HELLO_RUNBOOK = _runbook_file("hello", "hello.yml").replace("parameters:\n  api_token: {type: secret, env: API_TOKEN}\n", "")


def test_worker_tables_are_checked(tmp_path: Path) -> None:
    toml = ('[workers.BAD]\ncommand = ["ssh"]\n\n[workers.empty]\ncommand = []\n\n'
            '[workers.typo]\ncommand = ["ssh", "x"]\nansible-runner = "/x"\n')
    done = runbook("run", "hello", cwd=_plain_ws(tmp_path, toml, _HELLO_RUNBOOK))
    assert done.returncode == 3, done.stderr
    assert "workers.BAD: is not a worker name" in done.stderr
    assert "workers.empty.command: expected a list of words" in done.stderr
    assert "workers.typo.ansible-runner: unknown key" in done.stderr


def test_an_unknown_worker_is_refused_before_anything_runs(tmp_path: Path) -> None:
    ws = _plain_ws(tmp_path, '[workers.dmz]\ncommand = ["sh", "-c"]\n', _HELLO_RUNBOOK + "    worker: dzm\n")
    done = runbook("run", "hello", cwd=ws)
    assert done.returncode == 3, done.stderr
    assert "step 'main': no worker 'dzm' in runbook.toml [workers] (known: dmz)" in done.stderr
    done = runbook("run", "hello", "--worker", "nope", cwd=ws)
    assert done.returncode == 3 and "--worker: no worker 'nope'" in done.stderr
    done = runbook("validate", "hello", "--no-syntax-check", cwd=ws)
    assert done.returncode == 3
    assert "runbooks/hello.yml:11: steps[0].worker: no worker 'dzm' in runbook.toml [workers] (known: dmz)" in done.stderr


def test_a_worker_belongs_to_playbook_steps(tmp_path: Path) -> None:
    text = _HELLO_RUNBOOK + "  - name: look\n    manual: Look at it.\n    worker: dmz\n"
    done = runbook("validate", "hello", "--no-syntax-check",
                   cwd=_plain_ws(tmp_path, '[workers.dmz]\ncommand = ["sh", "-c"]\n', text))
    assert done.returncode == 3
    assert "steps[1].worker: worker belongs to playbook steps" in done.stderr


def test_a_worker_reached_through_sh_runs_the_step(tmp_path: Path) -> None:
    """The transport is any command taking a shell command line: here `sh -c` on this machine."""
    runner = str(Path(sys.executable).parent / "ansible-runner")
    ws = _plain_ws(tmp_path, f'[workers.here]\ncommand = ["sh", "-c"]\nansible_runner = {json.dumps(runner)}\n',
                   _HELLO_RUNBOOK)
    done = runbook("run", "hello", "--worker", "here", "--json", "--check", cwd=ws)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["worker"] == "here" and record["steps"][0]["worker"] == "here"
    assert record["steps"][0]["hosts"]["localhost"]["ok"] == 1
    folder = next((tmp_path / "state" / "runs").iterdir()) / "steps" / "01-main"
    command = json.loads((folder / "command.json").read_text())["command"]
    assert "--check" in command and command[0] == "ansible-playbook"
    assert any(part.startswith("@/dev/shm/runbook-worker.") for part in command)  # extra vars on the tmpfs
    assert "hello" in (folder / "stdout").read_text()


def test_retries_and_handlers_run_on_the_worker_too(tmp_path: Path) -> None:
    """A step that fails once is retried on its failed host, and on_failure handlers run there as well."""
    runner = str(Path(sys.executable).parent / "ansible-runner")
    marker = tmp_path / "failed-once"
    text = _HELLO_RUNBOOK.replace("    playbook: hello.yml\n", "    playbook: flaky.yml\n    retries: 1\n") + (
        "  - name: broken\n    playbook: broken.yml\non_failure:\n  - name: cleanup\n    playbook: hello.yml\n")
    ws = _plain_ws(tmp_path, f'[workers.here]\ncommand = ["sh", "-c"]\nansible_runner = {json.dumps(runner)}\n', text)
    (ws / "playbooks" / "flaky.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Fail the first time\n"
        f"      shell: test -e {marker} || {{ touch {marker}; exit 1; }}\n")
    (ws / "playbooks" / "broken.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Fail\n      fail:\n        msg: broken\n")
    done = runbook("run", "hello", "--worker", "here", "--json", cwd=ws)
    assert done.returncode == 1, done.stderr
    steps = {s["name"]: s for s in json.loads(done.stdout)["steps"]}
    assert steps["main"]["status"] == "succeeded" and steps["main"]["attempts"] == 2
    assert steps["broken"]["status"] == "failed" and steps["broken"]["hosts"]["localhost"]["failed"] == 1
    assert steps["cleanup"]["handler"] and steps["cleanup"]["status"] == "succeeded"
    assert {s["worker"] for s in steps.values()} == {"here"}


def test_a_node_without_a_tmpfs_is_not_sent_the_job(ws: Path, fleet_hosts: Any) -> None:
    """Secrets must not rest on a disk: a /dev/shm that is a folder of the overlay gets no job."""
    on_host(fleet_hosts, NODE, "mkdir -p /var/lib/not-a-tmpfs && mount --bind /var/lib/not-a-tmpfs /dev/shm")
    try:
        done = runbook("run", "hello", "--non-interactive", cwd=ws, env={"API_TOKEN": "t" * 12})
        left = on_host(fleet_hosts, NODE, "ls -A /var/lib/not-a-tmpfs").stdout.strip()
    finally:
        on_host(fleet_hosts, NODE, "umount /dev/shm; rm -rf /var/lib/not-a-tmpfs", check=False)
    assert done.returncode == 4, done.stderr
    assert f"worker 'node': /dev/shm on {NODE} is not a tmpfs" in done.stderr
    assert left == ""  # nothing of the job was unpacked there


def test_runs_share_a_worker_at_once(ws: Path, fleet_hosts: Any) -> None:
    """Two runs on the same node at the same time: each job in its own folder, each recorded."""
    env = dict(os.environ, API_TOKEN="t" * 12)
    commands = [["run", "hello", "--json"],
                ["run", "health-check", "--worker", "node", "-i", "fleet", "-l", "fleet-01",
                 "-p", "max_load_per_cpu=1000", "--json"]]
    runs = [subprocess.Popen([sys.executable, "-m", "runner", *c], cwd=ws, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for c in commands]
    results = [r.communicate(timeout=300) for r in runs]
    for run, (out, err) in zip(runs, results):
        assert run.returncode == 0, err
        assert json.loads(out)["steps"][0]["worker"] == "node"
    assert _node_is_clean(fleet_hosts, 10) == []
    assert on_host(fleet_hosts, NODE, "ls -A /dev/shm").stdout.strip() == ""


def test_caller_values_reach_the_node_as_literal_text(tmp_path: Path) -> None:
    """A parameter holding a template is not rendered on the node: it arrives marked unsafe."""
    runner = str(Path(sys.executable).parent / "ansible-runner")
    text = _HELLO_RUNBOOK.replace("targets: all\n", "targets: all\nparameters:\n  note: {type: string}\n")
    ws = _plain_ws(tmp_path, f'[workers.here]\ncommand = ["sh", "-c"]\nansible_runner = {json.dumps(runner)}\n', text)
    (ws / "playbooks" / "hello.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  serial: \"{{ runbook_serial }}\"\n  tasks:\n"
        "    - name: Echo\n      debug:\n        msg: \"note={{ note }}\"\n")
    done = runbook("run", "hello", "--worker", "here", "-p", "note={{ 7 * 6 }}", cwd=ws)
    assert done.returncode == 0, done.stderr
    log = runbook("log", "last", cwd=ws).stdout
    assert "note={{ 7 * 6 }}" in log and "note=42" not in log
