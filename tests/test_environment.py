"""A damaged environment gets a clear one-line refusal, nothing half-made and nothing lost: a full disk
under the state dir, a missing ansible-playbook, an unwritable output path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import IN_CI, runbook

FILLER_RUNBOOK = """\
apiVersion: runbook/v1
name: filler
title: Writes a note, then fills the disk
version: 0.1.0
kind: operation
targets: db
concurrency: parallel
parameters:
  fill: {type: string, required: true}
steps:
  - name: note
    playbook: note.yml
    vars: {message: written before the disk filled}
  - name: fill
    playbook: fill.yml
  - name: after
    playbook: note.yml
    vars: {message: never}
"""

FILL_PLAYBOOK = """
- name: Fill the disk
  hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.shell: "dd if=/dev/zero of={{ fill }} bs=64k || true"
      changed_when: false
    - ansible.builtin.debug: {msg: "{{ 'output that no longer fits ' * 200 }}"}
      loop: "{{ range(20) | list }}"
"""


def _need_root() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("mounting a small tmpfs needs root", pytrace=False)
        pytest.skip("mounting a small tmpfs needs root")


@pytest.fixture
def small_state_dir(state_dir: Path) -> Iterator[Path]:
    """The state dir on a 2 MB tmpfs of its own."""
    _need_root()
    state_dir.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(state_dir)], check=True)
    try:
        yield state_dir
    finally:
        subprocess.run(["umount", "-l", str(state_dir)], check=False)


def _fill(path: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64k"], capture_output=True)


def test_full_disk_before_start_refuses_clearly_and_leaves_no_run(alien: Path, small_state_dir: Path) -> None:
    assert runbook("run", "conditional", cwd=alien).returncode == 0  # history.db and one run exist
    before = sorted(p.name for p in (small_state_dir / "runs").iterdir())
    record = (small_state_dir / "runs" / before[0] / "run.json").read_bytes()
    _fill(small_state_dir / "filler")
    done = runbook("run", "conditional", cwd=alien)
    assert done.returncode == 3, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("runbook: no space left on the disk holding the state dir")
    assert "nothing was run" in lines[-1]
    assert sorted(p.name for p in (small_state_dir / "runs").iterdir()) == before  # no empty run folder
    assert (small_state_dir / "runs" / before[0] / "run.json").read_bytes() == record


def test_playbook_filling_the_disk_stops_the_run_clearly_and_keeps_what_was_written(
        alien: Path, small_state_dir: Path) -> None:
    (alien / "runbooks" / "filler.yml").write_text(FILLER_RUNBOOK)
    (alien / "playbooks" / "fill.yml").write_text(FILL_PLAYBOOK)
    filler = small_state_dir / "filler"
    done = runbook("run", "filler", "-p", f"fill={filler}", cwd=alien)
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("runbook: no space left on the disk holding the state dir"), done.stderr
    [run_dir] = list((small_state_dir / "runs").iterdir())
    assert f"run {run_dir.name} was stopped" in last
    record = json.loads((run_dir / "run.json").read_text())  # still whole: written atomically
    assert record["steps"][0]["status"] == "succeeded"
    assert record["steps"][2]["status"] == "pending"  # the run did not go on unrecorded
    assert "written before the disk filled" in (run_dir / "steps" / "01-note" / "stdout").read_text()
    assert not list(run_dir.rglob(".private")), "the step's private data dir (ansible-runner's own files) is left"
    still_full = runbook("history", cwd=alien)  # reaping the dead run has to write
    assert "internal error" not in still_full.stderr and "Traceback" not in still_full.stderr
    assert still_full.returncode == 0 or "no space left" in still_full.stderr
    filler.unlink()
    history = runbook("history", "--json", cwd=alien)
    assert history.returncode == 0, history.stderr
    [row] = json.loads(history.stdout)
    assert row["id"] == run_dir.name and row["status"] in ("failed", "aborted")
    log = runbook("log", run_dir.name, cwd=alien)
    assert log.returncode == 0 and "written before the disk filled" in log.stdout


def test_missing_ansible_playbook_is_refused_before_any_record(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    # A Python of the same virtual environment whose folder holds no ansible-playbook, with a bare PATH.
    venv = Path(sys.prefix)
    other = tmp_path / "venv"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    (other / "lib").symlink_to(venv / "lib")
    (other / "pyvenv.cfg").write_text((venv / "pyvenv.cfg").read_text())
    env = dict(os.environ, PATH="/usr/bin:/bin")
    done = subprocess.run([str(other / "bin" / "python"), "-m", "runner", "run", "conditional"], cwd=alien, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("runbook: ansible-playbook not found")
    assert "nothing was run" in done.stderr
    assert not (state_dir / "runs").exists() or not any((state_dir / "runs").iterdir())
    history = runbook("history", "--json", cwd=alien)
    assert json.loads(history.stdout) == []
