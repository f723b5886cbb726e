"""How much `runbook run` adds to the same playbook run by plain `ansible-playbook`.

Runs each command alternately, several times, on localhost and on N local-connection hosts, and
prints the median wall times and their ratios. Two baselines: plain ansible-playbook with Ansible's
defaults (what an operator runs by hand), and with the same forks runbook uses (the wrapper's own cost).

    python bench/overhead.py [--runs 5] [--hosts 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

PLAYBOOK = """\
- name: Bench
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
    - name: Run a command
      ansible.builtin.command: "true"
      changed_when: false
    - name: Set a fact
      ansible.builtin.set_fact:
        bench_value: "{{ inventory_hostname | length }}"
    - name: Debug
      ansible.builtin.debug:
        var: bench_value
"""

RUNBOOK = """\
apiVersion: runbook/v1
name: bench
title: Benchmark playbook
version: 1.0.0
kind: operation
concurrency: parallel
steps:
  - name: bench
    playbook: bench.yml
"""


def make_workspace(root: Path, hosts: int) -> None:
    for folder in ("runbooks", "playbooks", "roles", "inventories"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "runbooks" / "bench.yml").write_text(RUNBOOK)
    (root / "playbooks" / "bench.yml").write_text(PLAYBOOK)
    common = '    ansible_connection: local\n    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
    (root / "inventories" / "one.yml").write_text(f"all:\n  hosts:\n    localhost:\n  vars:\n{common}")
    names = "".join(f"        host{i:03d}:\n" for i in range(hosts))
    (root / "inventories" / "many.yml").write_text(f"all:\n  children:\n    fleet:\n      hosts:\n{names}  vars:\n{common}")


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def side_by_side(commands: dict[str, list[str]], runs: int, cwd: Path, env: dict[str, str],
                 warm: str | None = None, timer: Callable[[list[str], Path, dict[str, str]], float] | None = None,
                 ) -> dict[str, list[float]]:
    """Each command in turn, `runs` rounds (after one warm-up run of `warm`): wall seconds per command.
    Alternating spreads the machine's changing load over all commands alike."""
    timer = timer or timed
    times: dict[str, list[float]] = {name: [] for name in commands}
    if warm:
        timer(commands[warm], cwd, env)
    for _ in range(runs):
        for name, command in commands.items():
            times[name].append(timer(command, cwd, env))
    return times


def show(times: dict[str, list[float]]) -> None:
    for name, values in times.items():
        print(f"  {name:30s} median {statistics.median(values):6.2f}s  best {min(values):6.2f}s"
              f"  (runs: {', '.join(f'{v:.2f}' for v in values)})")


def ratio(times: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median of the per-round ratios: each round's pair ran side by side under the same load."""
    return statistics.median(a / b for a, b in zip(times[name], times[baseline]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=200, help="local-connection hosts (0: localhost only)")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    playbook_bin = str(bindir / "ansible-playbook")
    runbook_bin = str(bindir / "runbook")
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as tmp:
        root = Path(tmp)
        make_workspace(root, args.hosts)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env.update(RUNBOOK_STATE_DIR=str(root / "state"), ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"))
        scenarios = [("localhost", "one.yml")] + ([(f"{args.hosts} local hosts", "many.yml")] if args.hosts else [])
        for label, inventory in scenarios:
            inv = str(root / "inventories" / inventory)
            commands = {
                "ansible-playbook (defaults)": [playbook_bin, "-i", inv, "playbooks/bench.yml"],
                "ansible-playbook (same forks)": [playbook_bin, "-i", inv, "-f", "25", "playbooks/bench.yml"],
                "runbook run": [runbook_bin, "-w", str(root), "run", "bench", "-i", inv, "-q", "--non-interactive"],
            }
            times = side_by_side(commands, args.runs, root, env, warm="runbook run")
            print(f"{label}:")
            show(times)
            for baseline in ("same forks", "defaults"):
                for stat, pick in (("median", statistics.median), ("best", min)):
                    ratio = pick(times["runbook run"]) / pick(times[f"ansible-playbook ({baseline})"])
                    print(f"  ratio runbook / ansible-playbook ({baseline}, {stat}): {ratio:.3f} ({100 * (ratio - 1):+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
