"""The interpreter `runbook run` starts ahead for its first playbook step (runner/execution/ahead.py and
launcher.py): the step runs ansible-playbook in it, every other case gets a process of its own, and no
interpreter outlives the run that started it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, runbook

# What the playbook prints: the command line of the process that forked the worker running the lookup,
# i.e. ansible-playbook's main process (`launcher.py ...` when it was started ahead).
WHO = """\
- name: Which process runs ansible-playbook
  hosts: all
  gather_facts: false
  tasks:
    - name: The main process
      ansible.builtin.debug:
        msg: "main process: {{ lookup('ansible.builtin.pipe', 'tr \\"\\\\0\\" \\" \\" < /proc/$PPID/cmdline') }}"
"""

RUNBOOK = """\
apiVersion: runbook/v1
name: {name}
title: Start-ahead probe
version: 1.0.0
kind: operation
concurrency: parallel
steps:
{steps}
"""


def _workspace(root: Path) -> Path:
    for folder in ("runbooks", "playbooks", "inventories"):
        (root / folder).mkdir(parents=True)
    (root / "playbooks" / "who.yml").write_text(WHO)
    (root / "inventories" / "local.yml").write_text(
        "all:\n  hosts:\n    localhost:\n  vars:\n    ansible_connection: local\n"
        "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n")
    steps = {
        "two-steps": "  - {name: first, playbook: who.yml}\n  - {name: second, playbook: who.yml}\n",
        "manual-first": "  - {name: look, manual: Look at the dashboard.}\n  - {name: then, playbook: who.yml}\n",
        "needs-param": "  - {name: first, playbook: who.yml}\nparameters:\n  target: {type: string, required: true}\n",
    }
    for name, text in steps.items():
        (root / "runbooks" / f"{name}.yml").write_text(RUNBOOK.format(name=name, steps=text.rstrip("\n")))
    return root


def _main_processes(state: Path, run_id: str) -> list[str]:
    """The main-process line each step printed, in step order."""
    lines = []
    for stdout in sorted((state / "runs" / run_id / "steps").glob("*/stdout")):
        found = [line for line in stdout.read_text().splitlines() if "main process:" in line]
        assert len(found) == 1, stdout.read_text()
        lines.append(found[0].split("main process:", 1)[1].strip().rstrip('"'))
    return lines


def _launchers(run_id: str) -> list[int]:
    """Live processes running the launcher for `run_id`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"launcher.py") for a in argv) and run_id.encode() in b" ".join(argv):
                found.append(int(entry.name))
    return found


def test_the_first_step_runs_in_the_interpreter_started_ahead_and_the_next_one_on_its_own(
        tmp_path: Path, state_dir: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    done = runbook("run", "two-steps", "-i", "local", "--json", cwd=ws)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    first, second = _main_processes(state_dir, record["id"])
    launcher = str(REPO / "runner" / "execution" / "launcher.py")
    # Started for this very run (its id in the pipe's folder), for the ansible-playbook beside this Python.
    assert launcher in first and f"runbook-{record['id']}-" in first, first
    assert first.endswith(str(Path(sys.executable).parent / "ansible-playbook"))
    assert launcher not in second and "ansible-playbook -e @" in second, second
    assert [s["status"] for s in record["steps"]] == ["succeeded", "succeeded"]
    assert not list(Path("/dev/shm").glob(f"runbook-{record['id']}-*"))

    # Turned off: the first step is a process of its own too, with the same outcome.
    off = runbook("run", "two-steps", "-i", "local", "--json", cwd=ws, env={"RUNBOOK_START_AHEAD": "0"})
    assert off.returncode == 0, off.stderr
    first_off, _ = _main_processes(state_dir, json.loads(off.stdout)["id"])
    assert launcher not in first_off and "ansible-playbook -e @" in first_off, first_off


def test_no_interpreter_outlives_a_run_that_did_not_take_it(tmp_path: Path, state_dir: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    # The first step is a checklist: the run waits there (exit 5) and its interpreter is gone at once.
    waiting = runbook("run", "manual-first", "-i", "local", "--non-interactive", "--json", cwd=ws)
    assert waiting.returncode == 5, waiting.stderr
    run_id = json.loads(waiting.stdout)["id"]
    assert not _launchers(run_id)
    assert not list(Path("/dev/shm").glob(f"runbook-{run_id}-*"))
    # Resumed, the playbook step gets a process of its own (nothing is started ahead for resume).
    resumed = runbook("resume", run_id, "--confirm", cwd=ws)
    assert resumed.returncode == 0, resumed.stderr
    (line,) = _main_processes(state_dir, run_id)
    assert "launcher.py" not in line and "ansible-playbook -e @" in line

    # Refused before anything runs (a missing parameter: exit 3): no run, no interpreter left behind.
    before = {p for p in Path("/proc").iterdir() if p.name.isdigit()}
    refused = runbook("run", "needs-param", "-i", "local", cwd=ws)
    assert refused.returncode == 3, refused.stderr
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and p not in before
                 and b"launcher.py" in _cmdline(p) and b"-needs-param-" in _cmdline(p)]
    assert not leftovers
    assert not list(Path("/dev/shm").glob("runbook-*-needs-param-*"))
    # A usage error (exit 2) stops it before the run command is even called.
    folders = set(Path("/dev/shm").glob("runbook-*-two-steps-*"))
    usage = runbook("run", "two-steps", "--no-such-option", cwd=ws)
    assert usage.returncode == 2, usage.stderr
    assert set(Path("/dev/shm").glob("runbook-*-two-steps-*")) == folders


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_the_interpreter_dies_with_a_runbook_killed_before_its_first_step(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: the interpreter must not wait forever on its pipe."""
    code = ("import os, sys; from runner.execution import ahead; ahead.start('probe'); "
            "print(ahead._ahead.pid, ahead._ahead.run_id, flush=True); sys.stdin.read()")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid, run_id = parent.stdout.readline().split()
    deadline = time.monotonic() + 10
    while not _launchers(run_id) and time.monotonic() < deadline:
        time.sleep(0.02)  # forked, not yet exec'd
    assert _launchers(run_id) == [int(pid)]
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _launchers(run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _launchers(run_id)
    # Its pipe's folder stays (empty: no record names this run, so no reaper looks for it): tidy up.
    for folder in Path("/dev/shm").glob(f"runbook-{run_id}-*"):
        shutil.rmtree(folder)


def _hand_over_directly(tmp_path: Path, env_change: dict[str, str], path_first: Path | None = None) -> str:
    """Start an interpreter ahead, hand it a playbook run with `env_change` applied to the environment,
    and return what the run printed on its pty."""
    probe = tmp_path / "who.yml"
    probe.write_text(WHO)
    code = f"""
import json, os, sys
from runner.execution import ahead, spawn
ahead.start("probe")
started = ahead.take(ahead._ahead.run_id)
env = dict(os.environ, **json.loads(sys.argv[1]))
env["PATH"] = os.pathsep.join(p for p in (sys.argv[2], os.path.dirname(sys.executable), env["PATH"]) if p)
argv = ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable, {str(probe)!r}]
assert spawn._hand_over(started, argv, env, {str(tmp_path)!r})
started.remove_folder()
out = b""
while True:
    try:
        chunk = os.read(started.fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(started.pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
"""
    done = subprocess.run([sys.executable, "-c", code, json.dumps(env_change), str(path_first or "")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if "main process:" in x]
    return line


def test_the_interpreter_execs_the_command_whenever_running_it_in_place_could_differ(tmp_path: Path) -> None:
    # The same start-up environment and the same ansible-playbook: run in place.
    assert "launcher.py" in _hand_over_directly(tmp_path, {"SOME_SETTING": "1"})
    # A variable Python reads at start (or cryptography at import) differs: exec'd, as a fresh spawn.
    for change in ({"PYTHONHASHSEED": "123"}, {"CRYPTOGRAPHY_OPENSSL_NO_LEGACY": "1"}, {"LC_ALL": "C.UTF-8"}):
        line = _hand_over_directly(tmp_path, change)
        assert "launcher.py" not in line and "ansible-playbook -i localhost," in line, (change, line)
    # Another ansible-playbook comes first on the step's PATH: that one runs.
    other = tmp_path / "other-bin"
    other.mkdir()
    wrapper = other / "ansible-playbook"
    wrapper.write_text(f"#!/bin/sh\nexec {Path(sys.executable).parent / 'ansible-playbook'} \"$@\"\n")
    wrapper.chmod(0o755)
    line = _hand_over_directly(tmp_path, {}, path_first=other)
    assert "launcher.py" not in line and "ansible-playbook -i localhost," in line, line


def test_a_run_canceled_during_its_first_step_stops_every_process_of_it(tmp_path: Path, state_dir: Path) -> None:
    """The interpreter carries the run's marker from its start: cancel finds it and what it forked."""
    ws = _workspace(tmp_path / "ws")
    (ws / "playbooks" / "slow.yml").write_text(
        "- name: Slow\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Wait\n      ansible.builtin.command: sleep 300\n      changed_when: false\n")
    (ws / "runbooks" / "slow.yml").write_text(RUNBOOK.format(name="slow", steps="  - {name: wait, playbook: slow.yml}"))
    started = subprocess.Popen([sys.executable, "-m", "runner", "run", "slow", "-i", "local", "--json"], cwd=ws,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    run_id = ""
    while time.monotonic() < deadline and not run_id:
        runs = list((state_dir / "runs").glob("*-slow-*")) if (state_dir / "runs").is_dir() else []
        run_id = runs[0].name if runs else ""
        time.sleep(0.1)
    marker = f"RUNBOOK_RUN_MARKER={run_id}".encode()
    while time.monotonic() < deadline and not _sleeping(marker):
        time.sleep(0.1)
    assert _launchers(run_id), "the step's ansible-playbook is not the interpreter started ahead"
    canceled = runbook("cancel", run_id, cwd=ws)
    assert canceled.returncode == 0, canceled.stderr
    out, err = started.communicate(timeout=60)
    assert started.returncode == 130, err
    assert not _launchers(run_id)
    assert not _marked(marker)


def _marked(marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _sleeping(marker: bytes) -> bool:
    """The step's `sleep 300` runs (a process of the run)."""
    return any(_cmdline(Path(f"/proc/{pid}")).startswith(b"sleep\x00300") for pid in _marked(marker))


def test_the_runbook_to_run_is_read_from_the_command_line_as_click_reads_it() -> None:
    from runner.main import runbook_to_run

    assert runbook_to_run(["run", "health-check"]) == "health-check"
    assert runbook_to_run(["-w", "ws", "run", "-p", "a=1", "-i", "local", "--check", "patch", "-l", "web"]) == "patch"
    assert runbook_to_run(["--workspace=ws", "run", "--junit", "out.xml", "--", "odd"]) == "odd"
    # Not a run, or one whose steps run elsewhere, or help: nothing is started.
    for args in (["list"], ["show", "run"], ["run"], ["--help"], ["run", "x", "--help"],
                 ["run", "x", "--worker", "bastion"], ["run", "--worker=bastion", "x"], []):
        assert runbook_to_run(args) is None, args
