"""How much time a step on a worker adds over the same step run locally.

Starts a one-host fleet (tests/fleet.py: an sshd in its own namespaces; needs root), makes that host
an execution node (ansible-runner copied into its overlay, as tests/test_workers.py does), then runs
the same runbook alternately on this machine and through the worker, on each side's own localhost,
and prints the median wall times, the difference per step and the ratio. The worker is measured twice:
with a plain ssh command (a handshake per step) and with ssh connection sharing (ControlMaster), as
README recommends. Goal: under 1 s per step.

    python bench/remote_overhead.py [--runs 5] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import fleet  # noqa: E402  tests/fleet.py
import workernode  # noqa: E402  tests/workernode.py

PLAYBOOK = """\
- name: Bench
  hosts: all
  gather_facts: false
  tasks:
    - name: Run a command
      ansible.builtin.command: "true"
      changed_when: false
    - name: Debug
      ansible.builtin.debug:
        msg: hello
"""


def runbook_text(steps: int) -> str:
    body = "".join(f"  - name: step{i}\n    playbook: bench.yml\n" for i in range(steps))
    return ("apiVersion: runbook/v1\nname: bench\ntitle: Bench\nversion: 1.0.0\nkind: operation\n"
            f"concurrency: parallel\nsteps:\n{body}")


def make_workspace(root: Path, steps: int, command: list[str], runner: str) -> None:
    for folder in ("runbooks", "playbooks", "roles", "inventories"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "runbooks" / "bench.yml").write_text(runbook_text(steps))
    (root / "playbooks" / "bench.yml").write_text(PLAYBOOK)
    (root / "inventories" / "local.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: /usr/bin/python3\n")
    shared = command[:-1] + ["-o", "ControlMaster=auto", "-o", "ControlPersist=60",
                             "-o", f"ControlPath={root}/cm-%C", command[-1]]
    (root / "runbook.toml").write_text(
        f"[workers.node]\ncommand = {json.dumps(command)}\nansible_runner = {json.dumps(runner)}\n\n"
        f"[workers.shared]\ncommand = {json.dumps(shared)}\nansible_runner = {json.dumps(runner)}\n")


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def timed_ssh(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    problem = fleet.unavailable_reason()
    if problem:
        raise SystemExit(f"remote_overhead: {problem}")
    runbook_bin = str(Path(sys.executable).parent / "runbook")
    with tempfile.TemporaryDirectory(prefix="runbook-bench-remote-") as tmp:
        root = Path(tmp)
        started = fleet.start_fleet(1, root / "fleet")
        try:
            host = started.hosts[0]

            def on_node(command: str) -> None:
                subprocess.run(started.ssh_argv(host, command), check=True, capture_output=True, timeout=300)

            runner = workernode.make_node(on_node)
            ws = root / "ws"
            make_workspace(ws, args.steps, started.ssh_argv(host, "")[:-1], runner)
            base = [runbook_bin, "-w", str(ws), "run", "bench", "--non-interactive", "-q"]
            local, remote, shared = [], [], []
            timed(base, ws)  # warm caches on both sides before measuring
            timed(base + ["--worker", "node"], ws)
            for _ in range(args.runs):
                local.append(timed(base, ws))
                remote.append(timed(base + ["--worker", "node"], ws))
                shared.append(timed(base + ["--worker", "shared"], ws))
            handshake = min(timed_ssh(started.ssh_argv(host, "true")) for _ in range(3))
        finally:
            started.stop()
    lm, rm, sm = statistics.median(local), statistics.median(remote), statistics.median(shared)
    print(f"runbook with {args.steps} playbook steps, {args.runs} runs each, medians:")
    print(f"  local                              {lm:6.2f} s")
    print(f"  through the worker, plain ssh      {rm:6.2f} s   ({rm / lm:.2f}x local, "
          f"{(rm - lm) / args.steps:+.2f} s per step)")
    print(f"  through the worker, shared ssh     {sm:6.2f} s   ({sm / lm:.2f}x local, "
          f"{(sm - lm) / args.steps:+.2f} s per step; goal: under 1 s)")
    print(f"  one ssh handshake (ssh host true)  {handshake:6.2f} s   (load average now: {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
