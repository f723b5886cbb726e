"""Secrets leave nothing and break nothing (issue 19, point 4; issue 20, point 9).

A real ansible-playbook on the local connection takes the secret as a module argument (`no_log: true`),
so Ansible writes it into the task's `AnsiballZ_*.py` in its remote temp folder; the runner is then
killed with SIGKILL, timed out, or canceled mid-task. Afterwards no file under ~/.ansible, the state dir,
the temp dir, /dev/shm or the workspace holds the secret in any form, and no process does either."""
from __future__ import annotations

import html
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import runbook
from test_hardening_values import _CARELESS, _INVENTORY, _files_holding, _processes_holding, _wait_for_step_output

# The careless playbook of the kill -9 test, its lingering task now holding the secret as an argument.
_LINGER = _CARELESS.replace("ansible.builtin.command: sleep 300\n",
                            'ansible.builtin.command: {cmd: sleep 300, stdin: "{{ token }}"}\n      no_log: true\n')
assert _LINGER != _CARELESS


def _runbook(name: str, step: str = "", vars_: str = "") -> str:
    return (f"apiVersion: runbook/v1\nname: {name}\ntitle: {name}\nversion: 1.0.0\nkind: operation\nowner: t\n"
            "targets: all\ninventory: local\nparameters:\n  token: {type: secret, env: TRACE_TOKEN, required: true}\n"
            f"steps:\n  - name: linger\n    playbook: linger.yml\n{step}{vars_}")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for folder in ("runbooks", "playbooks", "inventories"):
        (root / folder).mkdir(parents=True)
    (root / "inventories" / "local.yml").write_text(_INVENTORY)
    (root / "playbooks" / "linger.yml").write_text(_LINGER)
    (root / "runbooks" / "linger.yml").write_text(_runbook("linger"))
    (root / "runbooks" / "linger-timeout.yml").write_text(_runbook("linger-timeout", "    timeout: 15s\n"))
    crash = "    vars:\n      looked_up: \"{{ params[params.token] }}\"\n"
    (root / "runbooks" / "crash.yml").write_text(_runbook("crash", vars_=crash))
    return root


def _secret() -> str:
    return "S3cr&t<" + secrets.token_hex(10) + ">"


def _forms(secret: str) -> list[bytes]:
    """The secret as a file could hold it: plain, HTML-escaped, JSON-escaped, URL-encoded."""
    return [f.encode() for f in {secret, html.escape(secret), json.dumps(secret)[1:-1], quote(secret, safe="")}]


def _roots(ws: Path) -> list[Path]:
    home = Path(os.path.expanduser("~")) / ".ansible"
    return [ws, Path(os.environ["RUNBOOK_STATE_DIR"]), Path(tempfile.gettempdir()), Path("/dev/shm"), home]


def _start(ws: Path, name: str, secret: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "runner", "run", name], cwd=ws,
                            env=dict(os.environ, TRACE_TOKEN=secret, **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _lingering(ws: Path, proc: subprocess.Popen[bytes], secret: str) -> str:
    """The run's id once its module, holding the secret, rests in the step's scratch folder."""
    state = Path(os.environ["RUNBOOK_STATE_DIR"])
    _wait_for_step_output(state, "TASK [linger]", proc)
    run_id = next((state / "runs").iterdir()).name
    scratch = [Path("/dev/shm"), Path(tempfile.gettempdir())]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        folders = [path for root in scratch for path in root.glob(f"runbook-{run_id}-*")]
        if _files_holding(secret.encode(), folders):  # Ansible's AnsiballZ_command.py, in the run's own folder
            assert _files_holding(secret.encode(), [Path(os.path.expanduser("~")) / ".ansible"]) == []
            return run_id
        time.sleep(0.1)
    raise AssertionError(f"the linger task's module never reached the run's scratch folder (exit {proc.poll()})")


def _assert_no_trace(ws: Path, run_id: str, secret: str) -> None:
    from runner.execution.processes import marked

    assert marked(run_id) == []
    for form in _forms(secret):
        assert _processes_holding(form) == []
        assert _files_holding(form, _roots(ws)) == []
    assert [p for root in (Path("/dev/shm"), Path(tempfile.gettempdir())) for p in root.glob(f"runbook-{run_id}-*")] == []


def test_kill_9_mid_task_leaves_no_module_holding_the_secret(ws: Path) -> None:
    secret = _secret()
    proc = _start(ws, "linger", secret)
    try:
        run_id = _lingering(ws, proc, secret)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    history = runbook("history", "--json", cwd=ws)  # the next command reaps the dead run
    assert json.loads(history.stdout)[0]["status"] == "aborted", history.stderr
    _assert_no_trace(ws, run_id, secret)


def test_step_timeout_mid_task_leaves_no_module_holding_the_secret(ws: Path) -> None:
    secret = _secret()
    proc = _start(ws, "linger-timeout", secret)
    run_id = _lingering(ws, proc, secret)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 124, err
    assert secret.encode() not in out + err
    _assert_no_trace(ws, run_id, secret)


def test_cancel_mid_task_leaves_no_module_holding_the_secret(ws: Path) -> None:
    secret = _secret()
    proc = _start(ws, "linger", secret)
    run_id = _lingering(ws, proc, secret)
    done = runbook("cancel", run_id, cwd=ws)
    assert done.returncode == 0, done.stderr
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    _assert_no_trace(ws, run_id, secret)


def test_secret_inside_path_and_the_state_dir_breaks_nothing(ws: Path, tmp_path: Path) -> None:
    """The secret is a piece of PATH and of RUNBOOK_STATE_DIR: both reach ansible-playbook whole (it is
    found, the run's marker is there), and a cancel still stops every process of the run."""
    from runner.execution.processes import marked

    secret = "trace-" + secrets.token_hex(6)
    state = tmp_path / f"states-{secret}-here"
    bin_dir = tmp_path / f"tools-{secret}" / "bin"
    bin_dir.mkdir(parents=True)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    proc = _start(ws, "linger", secret, {"RUNBOOK_STATE_DIR": str(state), "PATH": path})
    try:
        _wait_for_step_output(state, "TASK [linger]", proc)
        run_id = next((state / "runs").iterdir()).name
        environs = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in marked(run_id)]
        assert environs, "ansible-playbook should be running the linger task"
        # (The interpreter started ahead shows the start-up environment it was given: no RUNBOOK_STATE_DIR;
        # the task's own processes show the step's, whose PATH puts ansible-playbook's folder first.)
        assert all(f"RUNBOOK_RUN_MARKER={run_id}".encode() in env and _path_of(env) >= set(path.split(os.pathsep))
                   for env in environs), [_path_of(env) for env in environs]
        done = runbook("cancel", run_id, cwd=ws, env={"RUNBOOK_STATE_DIR": str(state)})
        assert done.returncode == 0, done.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert marked(run_id) == []
    assert secret.encode() not in out + err


def _path_of(environ: list[bytes]) -> set[str]:
    """The folders of a process's PATH (each one whole: a folder cut where the secret sat would be missing)."""
    found = next((e for e in environ if e.startswith(b"PATH=")), b"PATH=")
    return set(found[len(b"PATH="):].decode().split(os.pathsep))


@pytest.mark.parametrize("length", [1, 4, 7])
def test_a_secret_too_short_to_scrub_is_refused(ws: Path, length: int) -> None:
    from runner.definition.params import MIN_SECRET_LENGTH

    done = runbook("run", "linger", cwd=ws, env={"TRACE_TOKEN": "x" * length})
    assert done.returncode == 3
    assert (f"runbooks/linger.yml:10: parameters.token: *** is too short: a secret needs at least "
            f"{MIN_SECRET_LENGTH} characters") in done.stderr
    assert not (Path(os.environ["RUNBOOK_STATE_DIR"]) / "runs").exists()


def test_crash_message_and_error_log_are_scrubbed(ws: Path) -> None:
    """A template error names the value it failed on (`'dict object' has no attribute '<secret>'`)."""
    secret = _secret()
    done = runbook("run", "crash", cwd=ws, env={"TRACE_TOKEN": secret})
    assert done.returncode == 1
    assert "has no attribute '***'" in done.stderr and secret not in done.stderr
    log = Path(done.stderr.rsplit("(traceback in ", 1)[1].split(")")[0])
    text = log.read_text()
    log.unlink()
    assert "UndefinedError" in text and "***" in text and secret not in text
    record = json.loads(runbook("history", "--json", cwd=ws).stdout)[0]
    assert secret not in json.dumps(record)


def test_vars_plugins_of_the_workspace_still_load_beside_runbooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Naming our plugin folder in ANSIBLE_VARS_PLUGINS must not hide the ones Ansible would have found."""
    from runner.execution.ansible_step import temp_folders

    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nforks = 5\n")
    monkeypatch.delenv("ANSIBLE_VARS_PLUGINS", raising=False)
    monkeypatch.delenv("ANSIBLE_HOME", raising=False)
    paths = temp_folders(tmp_path / "scratch", cfg)["ANSIBLE_VARS_PLUGINS"].split(os.pathsep)
    assert paths[0].endswith("runner/execution/vars_plugins")
    assert paths[1:] == ["~/.ansible/plugins/vars", "/usr/share/ansible/plugins/vars"]
    cfg.write_text("[defaults]\nvars_plugins = /srv/plugins/vars\n")
    assert temp_folders(tmp_path / "scratch", cfg)["ANSIBLE_VARS_PLUGINS"].split(os.pathsep)[1:] == ["/srv/plugins/vars"]
    monkeypatch.setenv("ANSIBLE_VARS_PLUGINS", "/opt/vars")
    assert temp_folders(tmp_path / "scratch", cfg)["ANSIBLE_VARS_PLUGINS"].split(os.pathsep)[1:] == ["/opt/vars"]
