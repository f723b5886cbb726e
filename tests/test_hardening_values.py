"""Parameters are data (issue 8, F1), secrets leave no trace (F2), paths may hold spaces (F5).

Every value a caller supplies reaches the playbook as the literal text, whatever template syntax it
holds and whichever way it came in; a playbook writes what it received with `copy: content=` and the
files must hold exactly the payloads, while the lookups inside the payloads must never have run. The
workspace and the state dir of these tests both sit in folders whose names hold a space."""
from __future__ import annotations

import json
import os
import shutil
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import runbook

# -- the workspace -------------------------------------------------------------------------------------
_INVENTORY = """\
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""

# check_mode: false so that `--check` runs write the files too.
_ECHO = """\
- name: Write every value as received
  hosts: all
  gather_facts: false
  tasks:
    - name: text
      ansible.builtin.copy: {content: "{{ text }}", dest: "{{ out }}/text", mode: "0600"}
      check_mode: false
    - name: list
      ansible.builtin.copy: {content: "{{ paths | to_json }}", dest: "{{ out }}/paths.json", mode: "0600"}
      check_mode: false
    - name: first list item
      ansible.builtin.copy: {content: "{{ paths[0] }}", dest: "{{ out }}/paths0", mode: "0600"}
      check_mode: false
    - name: env value
      ansible.builtin.copy: {content: "{{ envtext }}", dest: "{{ out }}/envtext", mode: "0600"}
      check_mode: false
    - name: step var built from a parameter
      ansible.builtin.copy: {content: "{{ derived }}", dest: "{{ out }}/derived", mode: "0600"}
      check_mode: false
    - name: mapping value built from parameters
      ansible.builtin.copy: {content: "{{ nested.k[0] }}", dest: "{{ out }}/nested0", mode: "0600"}
      check_mode: false
    - name: mapping built from parameters
      ansible.builtin.copy: {content: "{{ nested | to_json }}", dest: "{{ out }}/nested.json", mode: "0600"}
      check_mode: false
    - name: secret
      ansible.builtin.copy: {content: "{{ token }}", dest: "{{ out }}/token", mode: "0600"}
      check_mode: false
      no_log: true
    - name: built-in
      ansible.builtin.copy: {content: "{{ runbook_name }}", dest: "{{ out }}/runbook_name", mode: "0600"}
      check_mode: false
"""

_FAIL = """\
- name: Fail naming the value
  hosts: all
  gather_facts: false
  tasks:
    - name: fail on purpose
      ansible.builtin.fail: {msg: "failed on purpose: {{ text }}"}
"""

_PARAMS = """\
parameters:
  out: {type: string, required: true}
  text: {type: string, default: plain}
  paths: {type: list, default: [plain]}
  envtext: {type: string, env: HV_ENVTEXT, default: plain}
  token: {type: secret, env: HV_TOKEN, required: true}
"""

_ECHO_STEP = """\
  - name: echo
    playbook: echo.yml
    vars:
      derived: "d:{{ params.text }}"
      nested: {k: ["{{ params.paths[0] }}", x]}
"""


def _runbook(name: str, steps: str, extra: str = "") -> str:
    return (f"apiVersion: runbook/v1\nname: {name}\ntitle: {name}\nversion: 1.0.0\nkind: operation\n"
            f"owner: test\ntargets: all\nconcurrency: parallel\n{_PARAMS}steps:\n{steps}{extra}")


@pytest.fixture
def spaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace at `.../work space` with its state in `.../state dir`."""
    ws = tmp_path / "work space"
    for folder in ("runbooks", "playbooks", "inventories"):
        (ws / folder).mkdir(parents=True)
    (ws / "inventories" / "local.yml").write_text(_INVENTORY)
    (ws / "playbooks" / "echo.yml").write_text(_ECHO)
    (ws / "playbooks" / "fail.yml").write_text(_FAIL)
    (ws / "runbooks" / "echo.yml").write_text(_runbook("echo", _ECHO_STEP))
    confirm = "  - name: confirm\n    manual: Confirm before the echo.\n"
    (ws / "runbooks" / "echo-after-confirm.yml").write_text(_runbook("echo-after-confirm", confirm + _ECHO_STEP))
    (ws / "runbooks" / "fails.yml").write_text(_runbook("fails", "  - name: fail\n    playbook: fail.yml\n"))
    monkeypatch.setenv("RUNBOOK_STATE_DIR", str(tmp_path / "state dir"))
    return ws


@pytest.fixture
def markers() -> Iterator[Path]:
    """A short folder (the payloads must fit a crontab line) where a rendered payload would leave a file."""
    folder = Path(tempfile.mkdtemp(prefix="hv"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class Payloads:
    """Values holding each kind of template syntax; rendering any of them leaves a file in `markers`."""

    def __init__(self, markers: Path) -> None:
        self.markers = markers
        self.text = (f"a {{{{ lookup('pipe', 'touch {markers}/expr') }}}} "
                     f"b {{% set x = lookup('pipe', 'touch {markers}/stmt') %}}{{{{ x }}}} c {{# note #}}{{{{ 7 * 7 }}}}")
        self.paths = [f"{{{{ lookup('pipe', 'touch {markers}/item') }}}}", "{% if true %}yes{% endif %}", "{# c #}"]
        self.envtext = f"{{{{ lookup('pipe', 'touch {markers}/env') }}}}"
        self.token = f"{{{{ lookup('pipe', 'touch {markers}/secret') }}}}"

    def assert_received(self, out: Path, envtext: str | None = None) -> None:
        assert (out / "text").read_text() == self.text
        assert json.loads((out / "paths.json").read_text()) == self.paths
        assert (out / "paths0").read_text() == self.paths[0]
        assert (out / "envtext").read_text() == (self.envtext if envtext is None else envtext)
        assert (out / "derived").read_text() == "d:" + self.text
        assert (out / "nested0").read_text() == self.paths[0]
        assert json.loads((out / "nested.json").read_text()) == {"k": [self.paths[0], "x"]}
        assert (out / "token").read_text() == self.token
        assert (out / "runbook_name").read_text() in ("echo", "echo-after-confirm")
        self.assert_nothing_rendered()

    def assert_nothing_rendered(self) -> None:
        assert sorted(p.name for p in self.markers.iterdir()) == [], "a payload was rendered as a template"


def _out(spaced: Path, name: str = "out") -> Path:
    out = spaced.parent / "received values" / name
    out.mkdir(parents=True)
    return out


def _cli_params(p: Payloads, out: Path) -> list[str]:
    return ["-p", f"out={out}", "-p", f"text={p.text}", "-p", f"paths={json.dumps(p.paths)}"]


# -- F1: every entry path ----------------------------------------------------------------------------
@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
def test_cli_env_secret_and_step_vars_arrive_literally(spaced: Path, markers: Path, check: bool) -> None:
    p, out = Payloads(markers), _out(spaced)
    done = runbook("run", "echo", *_cli_params(p, out), *(["--check"] if check else []),
                   cwd=spaced, env={"HV_TOKEN": p.token, "HV_ENVTEXT": p.envtext})
    assert done.returncode == 0, done.stderr
    p.assert_received(out)


def test_params_file_arrives_literally(spaced: Path, markers: Path, tmp_path: Path) -> None:
    p, out = Payloads(markers), _out(spaced)
    params = tmp_path / "params file.yml"
    params.write_text(yaml.safe_dump({"out": str(out), "text": p.text, "paths": p.paths, "envtext": p.envtext,
                                      "token": p.token}))
    done = runbook("run", "echo", "--params-file", str(params), cwd=spaced)
    assert done.returncode == 0, done.stderr
    p.assert_received(out)


def test_schedule_entry_arrives_literally(spaced: Path, markers: Path) -> None:
    """The command line `schedule install` would put in the crontab, run by sh as cron would."""
    from runner.definition.workspace import open_workspace
    from runner.schedule.schedule import cron_command, entries, log_path, scheduled_runbooks

    p, out = Payloads(markers), _out(spaced)
    schedule = yaml.safe_dump({"schedule": [{"cron": "0 3 * * *", "params": {
        "out": str(out), "text": p.text, "paths": p.paths, "envtext": p.envtext}}]}, width=1 << 20)
    path = spaced / "runbooks" / "echo.yml"
    path.write_text(path.read_text() + schedule)
    ws = open_workspace(str(spaced))
    runbooks, problems = scheduled_runbooks(ws)
    assert not problems
    (entry,) = entries(ws, runbooks)
    log_path(ws).parent.mkdir(mode=0o700, parents=True)  # as `schedule install` does
    done = subprocess.run(["/bin/sh", "-c", cron_command(entry.line)], cwd="/", capture_output=True, text=True,
                          env={"HOME": os.environ.get("HOME", "/root"), "HV_TOKEN": p.token}, timeout=300)
    assert done.returncode == 0, done.stderr + _read(log_path(ws))
    p.assert_received(out)


def test_resume_rereads_values_literally(spaced: Path, markers: Path) -> None:
    p, out = Payloads(markers), _out(spaced)
    env = {"HV_TOKEN": p.token, "HV_ENVTEXT": p.envtext}
    waiting = runbook("run", "echo-after-confirm", "--non-interactive", *_cli_params(p, out), cwd=spaced, env=env)
    assert waiting.returncode == 5, waiting.stderr
    assert not any(out.iterdir())
    # The env: value is not a secret: resume takes it from the record, not from the environment again.
    done = runbook("resume", "last", "--confirm", cwd=spaced, env={"HV_TOKEN": p.token})
    assert done.returncode == 0, done.stderr
    p.assert_received(out)


def test_failure_message_keeps_the_literal_value(spaced: Path, markers: Path) -> None:
    p, out = Payloads(markers), _out(spaced)
    done = runbook("run", "fails", "--json", *_cli_params(p, out), cwd=spaced, env={"HV_TOKEN": "t0ken-value"})
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    assert record["steps"][0]["hosts"]["localhost"]["message"] == f"fail on purpose: failed on purpose: {p.text}"
    p.assert_nothing_rendered()


def test_extra_vars_file_marks_every_string_unsafe() -> None:
    """What ansible-core itself loads from the file: the same values, no string trusted as a template."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import is_trusted_as_template

    from runner.execution.extravars import unsafe_yaml

    awkward = ["{{ x }}", "{% x %}", "{# x #}", "", " lead", "trail ", "a\nb\r\nc", 'q"\'\\', "é ü 日本",
               "\x00\x07\x1b[31m\x7f", "\x85\u2028\u2029\ufeff", "null", "true", "1e3", "- x", "#x", "&a *a !t",
               "%x", "@x", "`x`", "x" * 5000]
    values = {"s": awkward, "{{ key }}": {"{{ k }}": awkward, "n": [1, 2.5, True, None]}, "runbook_name": "r"}
    path = Path(tempfile.mkdtemp()) / "vars.yml"
    try:
        path.write_bytes(unsafe_yaml(values))
        loaded = DataLoader().load_from_file(str(path), trusted_as_template=True)
    finally:
        shutil.rmtree(path.parent)
    assert loaded == values

    def strings(value: object) -> Iterator[object]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    found = list(strings(loaded))
    assert len(found) > 2 * len(awkward)
    assert not [s for s in found if is_trusted_as_template(s)]


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


# -- F2: a runner killed with SIGKILL mid-step ---------------------------------------------------------
_CARELESS = """\
- name: Print the secret, then linger
  hosts: all
  gather_facts: false
  tasks:
    - name: print the token (careless)
      ansible.builtin.debug: {msg: "the token is {{ token }}"}
    - name: linger
      ansible.builtin.command: sleep 300
      changed_when: false
"""


def test_secret_leaves_no_trace_after_kill_9(spaced: Path, tmp_path: Path) -> None:
    """While the step runs and after a SIGKILL of the runner and the reaping by the next command, no file
    under the workspace, the state dir, /tmp or /dev/shm and no process's argv or environment holds it."""
    from runner.execution.processes import marked

    secret = "S3cr3t-" + secrets.token_hex(12)
    (spaced / "playbooks" / "careless.yml").write_text(_CARELESS)
    (spaced / "runbooks" / "careless.yml").write_text(
        "apiVersion: runbook/v1\nname: careless\ntitle: careless\nversion: 1.0.0\nkind: operation\nowner: t\n"
        "targets: all\nparameters:\n  token: {type: secret, required: true}\n"
        "steps:\n  - name: leak\n    playbook: careless.yml\n")
    params = tmp_path / "params.yml"
    params.write_text(f"token: {secret}\n")
    state = Path(os.environ["RUNBOOK_STATE_DIR"])
    roots = [spaced, state, Path("/tmp"), Path("/dev/shm")]
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", "careless", "--params-file", str(params)],
                            cwd=spaced, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout = _wait_for_step_output(state, "TASK [linger]", proc)
        params.unlink()  # the operator's own file: the runner has read it long ago
        assert "the token is ***" in stdout and secret not in stdout
        run_id = next((state / "runs").iterdir()).name
        live = marked(run_id)
        assert live, "ansible-playbook should be running the linger task"
        assert _processes_holding(secret.encode()) == []
        assert _files_holding(secret.encode(), roots) == []  # nothing at rest even while the step runs
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    assert secret not in out.decode() + err.decode()
    assert marked(run_id), "ansible-playbook outlives its killed runner until the reaper comes"

    history = runbook("history", "--json", cwd=spaced)  # the next command reaps the dead run
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)[0]["status"] == "aborted"
    assert marked(run_id) == []
    leftovers = [p for root in (Path("/dev/shm"), Path(tempfile.gettempdir())) for p in root.glob(f"runbook-{run_id}-*")]
    assert leftovers == []
    assert _processes_holding(secret.encode()) == []
    assert _files_holding(secret.encode(), roots) == []


def _wait_for_step_output(state: Path, needle: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        for path in state.glob("runs/*/steps/*/stdout"):
            text = path.read_text(errors="replace")
            if needle in text:
                return text
        time.sleep(0.2)
    raise AssertionError(f"the step never printed {needle!r} (runner exit {proc.poll()})")


def _processes_holding(secret: bytes) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                if secret in (entry / part).read_bytes():
                    found.append(f"{entry.name}/{part}")
            except OSError:
                continue
    return found


def _files_holding(secret: bytes, roots: list[Path]) -> list[Path]:
    """Regular files (never pipes: reading one could block) holding `secret`, .gz files decompressed."""
    found = []
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                try:
                    if not stat.S_ISREG(path.lstat().st_mode):
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                if secret in data or (path.suffix == ".gz" and secret in _gunzip(data)):
                    found.append(path)
    return found


def _gunzip(data: bytes) -> bytes:
    """Every member of a gzip stream, as far as it goes (a killed writer leaves it truncated)."""
    out = b""
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data)
        except zlib.error:
            break
        data = inflater.unused_data
    return out


def test_bytes_that_are_not_text_are_refused(spaced: Path, markers: Path) -> None:
    """A value with no UTF-8 form cannot reach Ansible literally: exit 3, nothing run, nothing altered."""
    p, out = Payloads(markers), _out(spaced)
    done = runbook("run", "echo", "-p", f"out={out}", "-p", "text=a\udcff{{ 7 * 7 }}", cwd=spaced,
                   env={"HV_TOKEN": p.token})
    assert done.returncode == 3, done.stderr
    assert "parameters.text:" in done.stderr and "is not valid UTF-8 text" in done.stderr
    assert not any(out.iterdir())


def test_extra_vars_for_ansible_core_before_2_19_tag_every_string() -> None:
    """Older releases wrap only the node the tag sits on (verified by hand with ansible-core 2.18.19)."""
    from runner.execution.extravars import unsafe_yaml

    values = {"s": "{{ x }}", "{{ k }}": ["", "true", {"{{ k }}": "{% x %}"}], "n": [1, 2.5, True, None]}
    root = yaml.compose(unsafe_yaml(values, propagating=False))

    def scalars(node: yaml.Node) -> Iterator[yaml.ScalarNode]:
        if isinstance(node, yaml.ScalarNode):
            yield node
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                yield from scalars(child)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                yield from scalars(key)
                yield from scalars(value)

    tags = {(n.value, n.tag) for n in scalars(root) if n.tag != "tag:yaml.org,2002:int"}
    strings = {value for value, tag in tags if tag == "!unsafe"}
    assert strings == {"s", "{{ x }}", "{{ k }}", "", "true", "{% x %}", "n"}
    assert {tag for _, tag in tags} == {"!unsafe", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                                        "tag:yaml.org,2002:null"}


# -- the pipes ---------------------------------------------------------------------------------------
def test_fed_pipe_gives_the_payload_once_and_never_blocks_its_owner(tmp_path: Path) -> None:
    from runner.execution import fifos

    payload = os.urandom(200_000)  # more than a pipe's buffer
    with fifos.feeding(tmp_path / "read", payload) as path:
        assert stat.S_ISFIFO(path.stat().st_mode)
        assert path.read_bytes() == payload
    assert not path.exists()
    started = time.monotonic()
    with fifos.feeding(tmp_path / "unread", payload) as path:
        pass  # ansible-playbook failed before reading: the writer must not hang the step
    assert time.monotonic() - started < 2 and not path.exists()


def test_discarding_pipe_swallows_any_amount(tmp_path: Path) -> None:
    from runner.execution import fifos

    with fifos.discarding(tmp_path / "command") as path:
        with open(path, "w") as handle:  # what ansible-runner does with its `command` artifact
            handle.write("x" * 500_000)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_scratch_folders_of_dead_runners_are_discarded(tmp_path: Path) -> None:
    from runner.execution.scratch import discard_orphans, scratch_dir

    run_id = "20990101T000000Z-scratch-test-" + secrets.token_hex(3)
    with scratch_dir(run_id) as live:
        assert discard_orphans(run_id) == [] and live.is_dir()  # its owner (this process) is alive
        dead = live.with_name(live.name + "-dead")
        dead.mkdir(mode=0o700)
        (dead / ".owner").touch()  # nobody holds its lock: the runner that made it was killed
        assert discard_orphans(run_id) == [dead] and live.is_dir()
    assert not live.exists()
