"""End to end: real ansible-playbook through ansible-runner, real SQLite, real files."""
from __future__ import annotations

import gzip
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import REPO, copy_workspace, runbook
from runner.store.ids import MARKER


def _records(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "runs").glob("*/run.json"))]


def _rows(state: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(state / "history.db") as db:
        return db.execute(sql).fetchall()


def test_health_check_passes_on_localhost_and_is_recorded(tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    # The load threshold is lifted: the test machine's load is not what this test is about.
    done = runbook("run", "health-check", "--json", "-p", "max_load_per_cpu=1000", cwd=ws, env={"RUNBOOK_USER": "alice"})
    assert done.returncode == 0, done.stderr
    assert "history index" not in done.stderr  # a first run makes a new index: nothing is damaged
    record = json.loads(done.stdout)
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["operator"] == "alice" and record["trigger"] == "cli"
    import hashlib

    assert record["version"] == yaml.safe_load((ws / "runbooks/health-check.yml").read_text())["version"]

    assert record["runbook_sha256"] == hashlib.sha256((ws / "runbooks/health-check.yml").read_bytes()).hexdigest()
    assert record["playbooks"]["health_check.yml"] == hashlib.sha256((ws / "playbooks/health_check.yml").read_bytes()).hexdigest()
    assert record["params"]["max_disk_pct"] == 90
    step = record["steps"][0]
    assert step["status"] == "succeeded" and step["hosts"]["localhost"]["failed"] == 0
    assert step["hosts"]["localhost"]["ok"] > 0
    # The figures are on screen under the step and in the record (runbook_summary), not only in the log.
    assert step["hosts"]["localhost"]["summary"].startswith("healthy: load ")
    assert "\n  localhost: healthy: load " in done.stderr and "worst disk /" in done.stderr
    assert _records(state_dir)[0]["id"] == record["id"]
    assert _rows(state_dir, "SELECT id, status, operator FROM runs") == [(record["id"], "succeeded", "alice")]
    assert _rows(state_dir, "SELECT host, failed FROM host_results") == [("localhost", 0)]
    history = runbook("history", "--json", cwd=ws)
    assert json.loads(history.stdout)[0]["id"] == record["id"]


def test_health_check_fails_naming_host_and_resource(tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("run", "health-check", "-p", "max_disk_pct=0", cwd=ws)
    assert done.returncode == 1
    assert "localhost" in done.stderr and "disk" in done.stderr
    record = _records(state_dir)[0]
    assert record["status"] == "failed"
    assert "disk /" in record["steps"][0]["hosts"]["localhost"]["message"]
    log = runbook("log", "last", "--host", "localhost", cwd=ws)
    assert "disk / at" in log.stdout


def test_git_commit_and_dirty_flag_recorded(tmp_path: Path, state_dir: Path) -> None:
    ws = copy_workspace("alien-workspace", tmp_path / "ws")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", str(ws)], check=True)
    subprocess.run([*git, "-C", str(ws), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(ws), "commit", "-qm", "ws"], check=True)
    head = subprocess.run(["git", "-C", str(ws), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert runbook("run", "conditional", cwd=ws).returncode == 0
    (ws / "playbooks" / "note.yml").write_text((ws / "playbooks" / "note.yml").read_text() + "\n# edited\n")
    assert runbook("run", "conditional", cwd=ws).returncode == 0
    first, second = _records(state_dir)
    assert (first["git_commit"], first["git_dirty"]) == (head, False)
    assert (second["git_commit"], second["git_dirty"]) == (head, True)
    assert first["playbooks"]["note.yml"] != second["playbooks"]["note.yml"]


def test_typed_parameters_reach_the_playbook(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "disk-report", "-v", "-p", "path=/tmp", "-p", "min_free_mb=5", "-p", "verbose=yes",
                   "-p", "extra_dirs=a,b", cwd=alien, env={"ALIEN_API_TOKEN": "tok-123456"})
    assert done.returncode == 0, done.stderr
    assert "types: int bool list mode=fast" in done.stderr
    assert "hello web1" in done.stderr  # the role's task ran
    record = _records(state_dir)[0]
    assert record["params"] == {"path": "/tmp", "min_free_mb": 5, "mode": "fast", "verbose": True,
                                "extra_dirs": ["a", "b"], "api_token": "***"}
    assert sorted(record["steps"][0]["hosts"]) == ["b1", "b2", "b3", "b4", "db1", "web1", "web2"]


def test_failing_host_named_in_record_log_and_exit_code(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "fail-on-host", cwd=alien)
    assert done.returncode == 1
    assert "FAILED: web2" in done.stderr
    record = _records(state_dir)[0]
    check, after = record["steps"]
    assert check["status"] == "failed" and after["status"] == "pending"  # abort: later steps never ran
    assert check["hosts"]["web2"]["failed"] == 1 and check["hosts"]["web1"]["failed"] == 0
    assert "web2 is broken" in check["hosts"]["web2"]["message"]
    assert _rows(state_dir, "SELECT hosts_failed FROM runs") == [("web2",)]
    log = runbook("log", record["id"][:20], "--step", "check", cwd=alien)
    assert "web2 is broken" in log.stdout and "step 1 check" in log.stdout


def test_limit_narrows_targets(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "fail-on-host", "-l", "web1", "--json", cwd=alien)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["limit"] == "web:&web1"
    assert all(list(s["hosts"]) == ["web1"] for s in record["steps"])
    none = runbook("run", "fail-on-host", "-l", "db1", cwd=alien)  # db1 is not a web host
    assert none.returncode == 1 and "no hosts matched" in none.stderr


def test_unreachable_exits_4(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "unreachable", cwd=alien)
    assert done.returncode == 4, done.stderr
    assert "UNREACHABLE: ghost" in done.stderr
    record = _records(state_dir)[0]
    assert record["status"] == "failed" and record["exit_code"] == 4
    assert record["steps"][0]["hosts"]["ghost"]["unreachable"] == 1


def test_step_timeout_exits_124_and_stops_the_playbook(alien: Path, state_dir: Path) -> None:
    started = time.monotonic()
    done = runbook("run", "slow", cwd=alien)
    assert done.returncode == 124
    assert time.monotonic() - started < 30
    record = _records(state_dir)[0]
    assert record["status"] == "timed_out" and record["steps"][0]["status"] == "timed_out"
    leftover = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_when_and_templated_vars(alien: Path, state_dir: Path) -> None:
    assert runbook("run", "conditional", "-p", "shout=true", "-p", "greeting=hi", cwd=alien).returncode == 0
    quiet, loud = _records(state_dir)[0]["steps"]
    assert quiet["status"] == "skipped" and loud["status"] == "succeeded"
    log = runbook("log", "last", "--step", "loud", cwd=alien)
    assert "note: HI" in log.stdout
    assert loud["data"] == {"notes": {"web1": "HI", "web2": "HI"}}  # set_stats figures kept in the record


# A token long enough to be a secret (MIN_SECRET_LENGTH), and found in no output by chance: a one-letter
# one was refused by nothing and scrubbed out of PATH, so ansible-playbook could not be found (issue 20).
ALIEN_TOKEN = "alien-report-token-7f3a"


def test_invalid_parameter_runs_nothing(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "disk-report", "-p", "path=relative", cwd=alien, env={"ALIEN_API_TOKEN": ALIEN_TOKEN})
    assert done.returncode == 3
    assert "runbooks/disk-report.yml:" in done.stderr and "parameters.path" in done.stderr
    assert not (state_dir / "runs").exists() or not any((state_dir / "runs").iterdir())


def test_check_mode_is_passed_and_recorded(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "disk-report", "--check", "-v", "-p", "path=/", cwd=alien, env={"ALIEN_API_TOKEN": ALIEN_TOKEN})
    assert done.returncode == 0, done.stderr
    assert "check=True" in done.stderr
    assert _records(state_dir)[0]["check"] is True


def test_state_is_private_and_events_are_compacted(alien: Path, state_dir: Path) -> None:
    assert runbook("run", "disk-report", "-p", "path=/", cwd=alien, env={"ALIEN_API_TOKEN": ALIEN_TOKEN}).returncode == 0
    for path in [state_dir, *state_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {oct(mode)}"
    step = next((state_dir / "runs").glob("*/steps/01-report"))
    names = sorted(p.name for p in step.iterdir())
    assert names == ["command.json", "events.jsonl.gz", "extravars.yml", "rc", "status", "stdout"]
    with gzip.open(step / "events.jsonl.gz", "rt") as handle:
        events = [json.loads(line) for line in handle]
    assert events[-1]["event"] == "playbook_on_stats"
    assert "env" not in json.loads((step / "command.json").read_text())  # the environment is never kept


def test_run_refs_resolve_last_and_prefix(alien: Path, state_dir: Path) -> None:
    for _ in range(2):
        assert runbook("run", "conditional", cwd=alien).returncode == 0
    ids = [r["id"] for r in _records(state_dir)]
    assert runbook("log", "last", cwd=alien).stderr.strip().endswith("succeeded (exit 0)")
    ambiguous = runbook("log", "2", cwd=alien)
    assert ambiguous.returncode == 2 and "several runs" in ambiguous.stderr
    assert runbook("log", ids[0][:-1], cwd=alien).returncode == 0
    assert runbook("log", "nope", cwd=alien).returncode == 2


SECRET = "Zq-7f3a-s3cr3t-VALUE"


def test_secret_never_kept_or_shown(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    """The careless playbook prints the secret; no file, output, history row or argv may hold it."""
    slow = alien / "playbooks" / "leaky.yml"
    slow.write_text(slow.read_text() + """
    - name: Linger so the test can inspect every process
      ansible.builtin.command: "sleep 3"
      changed_when: false
""")
    env = {"LEAKY_TOKEN": SECRET, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", "leaky", "-v", "--json"], cwd=alien,
                            env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_argv: list[bytes] = []
    seen_env: dict[int, bytes] = {}
    runbook_itself = _exec_image(proc.pid)
    while proc.poll() is None:
        for pid in _processes_of_run(proc.pid, state_dir):
            image = _exec_image(pid)
            if image is None or image == runbook_itself:
                continue  # forked by runbook, not exec'd yet: runbook's own block, which holds the variable
            argv, environ = image
            if SECRET.encode() in argv:
                seen_argv.append(argv)
            if SECRET.encode() in environ:
                seen_env[pid] = argv[:200]
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert not seen_argv, f"secret in argv: {seen_argv}"
    assert not seen_env, f"secret inherited by processes {seen_env}"
    assert SECRET not in out and SECRET not in err
    assert "the token is ***" in err
    leaks = [p for root in (state_dir, alien, tmp_path) for p in root.rglob("*")
             if p.is_file() and SECRET.encode() in _content(p)]
    assert not leaks, f"secret written to {leaks}"
    shm = [p for p in Path("/dev/shm").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not shm, f"secret left in /dev/shm: {shm}"
    record = json.loads(out)
    assert record["params"]["api_token"] == "***"


def _exec_image(pid: int) -> tuple[bytes, bytes] | None:
    """The argv and environment a process was exec'd with (a forked child shows its parent's until it execs)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes(), Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None


def _processes_of_run(root: int, state: Path) -> set[int]:
    """The descendants of the runbook process `root`, and any process carrying its run's marker (one
    that left the tree): never another user's or another test's process holding the same token."""
    parents, marked = {}, set()
    runs = [p.name for p in (state / "runs").iterdir()] if (state / "runs").is_dir() else []
    markers = [f"{MARKER}={run_id}".encode() for run_id in runs]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if markers and any(m in (entry / "environ").read_bytes() for m in markers):
                marked.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    family = {root}
    for pid in sorted(parents):
        chain, seen = pid, set()
        while chain in parents and chain not in family and chain not in seen:
            seen.add(chain)
            chain = parents[chain]
        if chain in family:
            family |= seen
    return (family | marked) - {root}


def _content(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def test_make_run_job_works_from_repo_layout(tmp_path: Path, state_dir: Path) -> None:
    """The README's main job: health-check on the embedded local inventory, then history."""
    done = runbook("-w", str(REPO), "run", "health-check", "--non-interactive", "-p", "max_load_per_cpu=1000")
    assert done.returncode == 0, done.stderr
    rows = runbook("-w", str(REPO), "history", "-n", "5")
    assert "health-check" in rows.stdout and "succeeded" in rows.stdout


def test_installed_ansible_runner_plugins_never_see_a_run(tmp_path: Path, state_dir: Path) -> None:
    """An `ansible_runner.plugins` entry point would get every event and the step's environment
    before runbook scrubs them: runbook loads none, even when one is installed."""
    site = tmp_path / "site"
    (site / "spy_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "spy_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: spy-plugin\nVersion: 1.0\n")
    (site / "spy_plugin-1.0.dist-info" / "entry_points.txt").write_text("[ansible_runner.plugins]\nspy = spy_plugin\n")
    seen = tmp_path / "seen"
    (site / "spy_plugin.py").write_text(
        "def _note(kind):\n"
        f"    with open({str(seen)!r}, 'a') as f:\n"
        "        f.write(kind + '\\n')\n"
        "def status_handler(config, data):\n    _note('status')\n"
        "def event_handler(config, data):\n    _note('event')\n")
    env = {"PYTHONPATH": str(site)}
    # The plugin is installed for real: ansible-runner's own import finds it.
    found = subprocess.run([sys.executable, "-c", "import ansible_runner; print(sorted(ansible_runner.plugins))"],
                           env=dict(os.environ, **env), capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == "['spy']", found.stderr
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("run", "health-check", "-p", "max_load_per_cpu=1000", cwd=ws, env=env)
    assert done.returncode == 0, done.stderr
    assert not seen.exists(), seen.read_text()


def test_inventory_plugin_config_still_reaches_its_plugin(tmp_path: Path, state_dir: Path) -> None:
    """The shipped ansible.cfg tries the `yaml` inventory plugin before `auto` (a YAML inventory is then
    parsed once): a plugin's config file, which `yaml` turns down, must still be read by its plugin."""
    ws = copy_workspace("repo", tmp_path / "ws")
    (ws / "inventories" / "generated.yml").write_text(
        "plugin: ansible.builtin.generator\n"
        "hosts:\n"
        '  name: "{{ machine }}"\n'
        "  parents:\n"
        "    - name: generated\n"
        "      vars: {ansible_connection: local, ansible_python_interpreter: " + json.dumps(sys.executable) + "}\n"
        "layers:\n"
        "  machine: [localhost]\n")
    done = runbook("run", "health-check", "--json", "-i", "generated", "-p", "max_load_per_cpu=1000", cwd=ws)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "succeeded" and list(record["steps"][0]["hosts"]) == ["localhost"]
    cfg = (state_dir / "runs" / record["id"] / "ansible.cfg").read_text()
    assert "enable_plugins = host_list, script, yaml, auto" in cfg
