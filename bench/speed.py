"""The speed figures of README's "Speed" section, each run side by side in this one process and given
as the median of per-round ratios (>= 3 rounds after a warm-up):

- 10 SSH fleet hosts x 5 tasks (ping, command, copy, stat, shell; no facts): `runbook run` against
  stock ansible-playbook (goal <= 0.25) and against ansible-playbook on the same strategy (<= 1.05);
- localhost, 4 tasks: runbook against ansible-playbook (<= 1.10);
- 2,000 local-connection hosts x 1 task (debug, run on the controller): runbook's own peak RSS
  (<= 200 MB) and wall (<= 1.10x);
- `runbook list` (200 runbooks) and `runbook --help` against `ansible-playbook --version` (<= 0.25).

Starts its own fleet (tests/fleet.py, needs root) and stops it at the end.

    python bench/speed.py [--runs 5] [--hosts 10] [--local-hosts 2000] [--local-runs N] [--skip fleet|localhost|many|cli]
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

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import cli_latency  # noqa: E402  (bench/)
import fleet  # noqa: E402  (tests/fleet.py)
import overhead  # noqa: E402  (bench/)

FIVE_TASKS = """\
- name: Five tasks
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
    - name: Run a command
      ansible.builtin.command: uname -r
      changed_when: false
    - name: Copy a file
      ansible.builtin.copy:
        content: "bench\\n"
        dest: /tmp/bench-copy
        mode: "0644"
    - name: Stat it
      ansible.builtin.stat:
        path: /tmp/bench-copy
    - name: Run a shell line
      ansible.builtin.shell: set -o pipefail && cat /tmp/bench-copy | wc -c
      args:
        executable: /bin/bash
      changed_when: false
"""

# A task Ansible runs on the controller: what this case measures is the wrapper's own cost per host
# (events, progress, memory). A module task (ping) adds ~0.25 s of Ansible's own CPU per host on 2
# cores, which only dilutes that cost towards 1.0x and makes one run take 8 minutes.
ONE_TASK = """\
- name: One task
  hosts: all
  gather_facts: false
  tasks:
    - name: Say which host
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }}"
"""

# Runs the CLI and, at exit, writes this process's own peak RSS (KiB; children not included).
RSS_WRAPPER = """\
import atexit, os, resource, runpy, sys
atexit.register(lambda: open(os.environ["BENCH_RSS_FILE"], "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
sys.argv[0] = "runbook"
runpy.run_module("runner", run_name="__main__")
"""

GOALS: list[tuple[str, float, float, str]] = []  # (label, value, goal, unit)


def add_runbook(root: Path, name: str, playbook: str, text: str) -> None:
    (root / "playbooks" / f"{name}.yml").write_text(text)
    (root / "runbooks" / f"{name}.yml").write_text(overhead.RUNBOOK.replace("name: bench", f"name: {name}")
                                                   .replace("playbook: bench.yml", f"playbook: {name}.yml"))


def mitogen_env() -> dict[str, str]:
    from runner.execution.accelerate import CONNECT_TIMEOUT, MITOGEN, availability

    plugins, why_not = availability()
    if plugins is None:
        raise SystemExit(f"the accelerator is not available: {why_not}")
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": MITOGEN, "ANSIBLE_TIMEOUT": str(CONNECT_TIMEOUT)}


def goal(label: str, value: float, limit: float, unit: str = "x") -> None:
    GOALS.append((label, value, limit, unit))
    print(f"  => {label}: {value:.3f}{unit} (goal <= {limit}{unit}) {'ok' if value <= limit else 'MISSED'}", flush=True)


def bench_fleet(root: Path, env: dict[str, str], bins: dict[str, str], hosts: int, runs: int) -> None:
    print(f"== {hosts} SSH hosts x 5 tasks", flush=True)
    started = fleet.start_fleet(hosts, root / "fleet")
    try:
        inv = str(started.inventory_path)
        book = str(root / "playbooks" / "five.yml")
        commands = {
            "ansible-playbook (stock)": [bins["playbook"], "-i", inv, book],
            "ansible-playbook (mitogen_linear)": ["env", *(f"{k}={v}" for k, v in mitogen_env().items()),
                                                  bins["playbook"], "-i", inv, "-f", "25", book],
            "runbook run": [bins["runbook"], "-w", str(root), "run", "five", "-i", inv, "-q", "--non-interactive"],
        }
        times = overhead.side_by_side(commands, runs, root, env, warm="runbook run")
        overhead.show(times)
        goal("fleet: runbook / stock ansible-playbook", overhead.ratio(times, "runbook run", "ansible-playbook (stock)"), 0.25)
        goal("fleet: runbook / ansible-playbook, same strategy",
             overhead.ratio(times, "runbook run", "ansible-playbook (mitogen_linear)"), 1.05)
    finally:
        started.stop()


def bench_localhost(root: Path, env: dict[str, str], bins: dict[str, str], runs: int) -> None:
    print("== localhost x 4 tasks", flush=True)
    inv = str(root / "inventories" / "one.yml")
    commands = {
        "ansible-playbook": [bins["playbook"], "-i", inv, "playbooks/bench.yml"],
        "runbook run": [bins["runbook"], "-w", str(root), "run", "bench", "-i", inv, "-q", "--non-interactive"],
    }
    times = overhead.side_by_side(commands, max(runs, 10), root, env, warm="runbook run")
    overhead.show(times)
    goal("localhost: runbook / ansible-playbook", overhead.ratio(times, "runbook run", "ansible-playbook"), 1.10)


def bench_many_local(root: Path, env: dict[str, str], bins: dict[str, str], hosts: int, runs: int) -> None:
    print(f"== {hosts} local-connection hosts x 1 task", flush=True)
    names = "".join(f"        host{i:04d}:\n" for i in range(hosts))
    inv = root / "inventories" / "local-many.yml"
    inv.write_text("all:\n  children:\n    fleet:\n      hosts:\n" + names + "  vars:\n    ansible_connection: local\n"
                   '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n')
    rss_file = root / "rss"
    wrapper = root / "runbook_rss.py"
    wrapper.write_text(RSS_WRAPPER)
    commands = {
        "ansible-playbook (same forks)": [bins["playbook"], "-i", str(inv), "-f", "25", "playbooks/one.yml"],
        "runbook run": [sys.executable, str(wrapper), "-w", str(root), "run", "one", "-i", str(inv), "-q", "--non-interactive"],
    }
    peaks: list[int] = []

    def timer(command: list[str], cwd: Path, environment: dict[str, str]) -> float:
        elapsed = overhead.timed(command, cwd, dict(environment, BENCH_RSS_FILE=str(rss_file)))
        if command[0] == sys.executable:
            peaks.append(int(rss_file.read_text()))
        return elapsed

    times = overhead.side_by_side(commands, runs, root, env, timer=timer)
    overhead.show(times)
    goal("2,000 local hosts: runbook's own peak RSS", max(peaks) / 1024, 200, " MB")
    goal("2,000 local hosts: runbook / ansible-playbook", overhead.ratio(times, "runbook run", "ansible-playbook (same forks)"), 1.10)


def bench_cli(root: Path, env: dict[str, str], bins: dict[str, str]) -> None:
    print("== CLI start-up", flush=True)
    ws = root / "catalog"
    ws.mkdir()
    cli_latency.make_workspace(ws, 200)
    repeat = 10
    version = statistics.median(cli_latency.latencies([bins["playbook"], "--version"], ws, env, repeat))
    for label, argv in (("runbook --help", ["--help"]), ("runbook list (200 runbooks)", ["list"])):
        median = statistics.median(cli_latency.latencies([bins["runbook"], *argv], ws, env, repeat))
        print(f"  {label:30s} median {1000 * median:5.0f} ms; ansible-playbook --version {1000 * version:5.0f} ms")
        goal(f"{label} / ansible-playbook --version", median / version, 0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="rounds per case (>= 3; localhost runs >= 10)")
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--local-hosts", type=int, default=2000)
    parser.add_argument("--local-runs", type=int, default=None, help="rounds for the many-hosts case (default: --runs)")
    parser.add_argument("--skip", action="append", default=[], choices=("fleet", "localhost", "many", "cli"))
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs: the figures are medians of at least 3 pairs")
    problem = fleet.unavailable_reason()
    if problem and "fleet" not in args.skip:
        raise SystemExit(problem)
    bindir = Path(sys.executable).parent
    bins = {"playbook": str(bindir / "ansible-playbook"), "runbook": str(bindir / "runbook")}
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="runbook-bench-fleet-") as tmp:
        root = Path(tmp)
        overhead.make_workspace(root, 0)
        add_runbook(root, "five", "five.yml", FIVE_TASKS)
        add_runbook(root, "one", "one.yml", ONE_TASK)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "RUNBOOK_"))}
        env.update(RUNBOOK_STATE_DIR=str(root / "state"), ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"))
        if "fleet" not in args.skip:
            bench_fleet(root, env, bins, args.hosts, args.runs)
        if "localhost" not in args.skip:
            bench_localhost(root, env, bins, args.runs)
        if "cli" not in args.skip:
            bench_cli(root, env, bins)
        if "many" not in args.skip:
            bench_many_local(root, env, bins, args.local_hosts, args.local_runs or args.runs)
    load = os.getloadavg()
    print(f"\nload at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for label, value, limit, unit in GOALS:
        print(f"  {label:55s} {value:8.3f}{unit:3s} goal <= {limit}{unit:3s} {'ok' if value <= limit else 'MISSED'}")
    return 0 if all(value <= limit for _, value, limit, _ in GOALS) else 1


if __name__ == "__main__":
    sys.exit(main())
