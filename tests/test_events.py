"""How a step's events reach runbook: whole, as JSON lines through a pipe in the run's scratch folder
(callback_plugins/runbook_events.py, fifos.receiving), never through the pty as base64 unless there is
no pipe, and never through a file."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, runbook

PLAYBOOK = """\
- name: Events
  hosts: all
  gather_facts: false
  tasks:
    - name: Say something
      ansible.builtin.debug:
        msg: "hello from {{ inventory_hostname }}"
    - name: Say it again
      ansible.builtin.debug:
        msg: again
"""


def _callback_env(tmp_path: Path) -> dict[str, str]:
    spec = importlib.util.find_spec("ansible_runner")
    assert spec is not None and spec.submodule_search_locations
    awx = Path(list(spec.submodule_search_locations)[0]) / "display_callback" / "callback"
    ours = REPO / "runner" / "execution" / "callback_plugins"
    return dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=f"{ours}:{awx}", ANSIBLE_STDOUT_CALLBACK="runbook_events",
                ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))


def _playbook(tmp_path: Path) -> list[str]:
    (tmp_path / "events.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.ini").write_text("alpha ansible_connection=local\nbeta ansible_connection=local\n")
    ansible_playbook = str(Path(sys.executable).parent / "ansible-playbook")
    return [ansible_playbook, "-i", str(tmp_path / "hosts.ini"), str(tmp_path / "events.yml")]


def test_callback_sends_whole_events_through_the_pipe_and_nothing_to_the_terminal(tmp_path: Path) -> None:
    from runner.execution import fifos

    lines: list[bytes] = []
    env = _callback_env(tmp_path)
    with fifos.receiving(tmp_path / "events", lines.append) as pipe:
        env["RUNBOOK_EVENTS_PIPE"] = str(pipe)
        done = subprocess.run(_playbook(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\x1b[K" not in done.stdout and "TASK [" not in done.stdout  # not in-band: nothing for the pty
    events = [json.loads(line) for line in lines]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "playbook_on_start" and kinds[-1] == "playbook_on_stats"
    assert kinds.count("runner_on_ok") == 4 and kinds.count("runner_on_start") == 4
    ok = [e for e in events if e["event"] == "runner_on_ok"]
    assert {e["event_data"]["host"] for e in ok} == {"alpha", "beta"}
    said = next(e for e in ok if e["event_data"]["task"] == "Say something" and e["event_data"]["host"] == "beta")
    # the text the default callback displays for the event comes with it, whole, newline included
    assert said["stdout"].startswith("ok: [beta] => {") and '"msg": "hello from beta"' in said["stdout"]
    assert said["stdout"].endswith("\n")
    assert "PLAY RECAP" in events[-1]["stdout"] and events[-1]["event_data"]["ok"] == {"alpha": 2, "beta": 2}
    assert not (tmp_path / "events").exists()


def test_callback_falls_back_in_band_when_nobody_reads_the_pipe(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "orphan", 0o600)  # named, but runbook is not reading it: opening must not block
    env = dict(_callback_env(tmp_path), RUNBOOK_EVENTS_PIPE=str(tmp_path / "orphan"))
    done = subprocess.run(_playbook(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\x1b[K") >= 2 * 8 and "TASK [Say something]" in done.stdout


def test_step_events_are_kept_whole_numbered_and_in_step_with_stdout(alien: Path, state_dir: Path) -> None:
    done = runbook("run", "leaky", cwd=alien, env={"LEAKY_TOKEN": "Qx-not-a-real-secret-81"})
    assert done.returncode == 0, done.stderr
    step = next((state_dir / "runs").glob("*/steps/01-leak"))
    with gzip.open(step / "events.jsonl.gz", "rt") as handle:
        events = [json.loads(line) for line in handle]
    assert [e["counter"] for e in events] == list(range(1, len(events) + 1))
    for before, after in zip(events, events[1:]):
        assert after["start_line"] == before["end_line"]
    assert {e["runner_ident"] for e in events} == {"ansible"}
    texts = [e["stdout"] for e in events if e["stdout"]]
    assert (step / "stdout").read_text() == "".join(t + "\n" for t in texts)
    assert '"msg": "the token is ***"' in (step / "stdout").read_text()  # scrubbed before kept, as ever
    assert any(e["event"] == "runner_on_ok" and e["event_data"]["task"] == "Echo the token from a command (careless)"
               for e in events)
    assert not list(step.glob("**/*partial*")) and not (step / "job_events").exists()


# -- fifos.receiving ---------------------------------------------------------------------------------
def test_receiving_pipe_delivers_lines_cut_anywhere(tmp_path: Path) -> None:
    from runner.execution import fifos

    big = b"x" * 300_000  # several 64 KiB reads
    got: list[bytes] = []
    with fifos.receiving(tmp_path / "lines", got.append) as path:
        fd = os.open(path, os.O_WRONLY)
        for piece in (b"one\ntw", b"o\n", big[:100_000], big[100_000:] + b"\n\nthree", b"\nlast-without-newline"):
            os.write(fd, piece)
            time.sleep(0.01)
        os.close(fd)
    assert got == [b"one", b"two", big, b"three", b"last-without-newline"]
    assert not path.exists()


def test_receiving_pipe_does_not_wait_for_processes_that_inherited_it(tmp_path: Path) -> None:
    from runner.execution import fifos

    got: list[bytes] = []
    with fifos.receiving(tmp_path / "lines", got.append) as path:
        stray = os.open(path, os.O_WRONLY)  # as a killed playbook's worker still holds it
        os.write(stray, b"before\n")
        time.sleep(0.3)
        started = time.monotonic()
    assert time.monotonic() - started < 1.5
    assert got == [b"before"]
    os.close(stray)


def test_receiving_pipe_keeps_draining_after_its_reader_fails(tmp_path: Path) -> None:
    from runner.execution import fifos

    calls: list[bytes] = []

    def deliver(line: bytes) -> None:
        calls.append(line)
        raise ValueError("broken")

    writer_done = threading.Event()
    with pytest.raises(ValueError, match="broken"):
        with fifos.receiving(tmp_path / "lines", deliver) as path:
            def write() -> None:
                with open(path, "wb") as handle:
                    handle.write(b"y" * 100 + b"\n")
                    for _ in range(2_000):
                        handle.write(b"z" * 1000 + b"\n")  # 2 MB: far more than the pipe holds
                writer_done.set()

            threading.Thread(target=write, daemon=True).start()
            assert writer_done.wait(30), "the writer blocked on a pipe nobody drained"
    assert calls == [b"y" * 100]
