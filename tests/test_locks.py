"""Run locks and the state dir: a lock file is never opened through a link or truncated on open, and a
state dir someone else could change is refused before anything runs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import IN_CI, runbook


def _prepared(state_dir: Path) -> Path:
    locks = state_dir / "locks"
    locks.mkdir(parents=True, mode=0o700)
    state_dir.chmod(0o700)
    return locks


def _no_run_started(state_dir: Path) -> bool:
    runs = state_dir / "runs"
    return not runs.exists() or not any(runs.iterdir())


def test_symlinked_lock_file_is_refused_and_its_target_untouched(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "precious.conf"
    victim.write_text("do not truncate me\n")
    lock = _prepared(state_dir) / "conditional.lock"
    lock.symlink_to(victim)
    done = runbook("run", "conditional", cwd=alien)
    assert done.returncode == 3, done.stderr
    assert victim.read_text() == "do not truncate me\n"
    message = done.stderr.strip().splitlines()[-1]
    assert f"lock file {lock} is a symbolic link" in message and f"rm {lock}" in message
    assert _no_run_started(state_dir)
    lock.unlink()
    assert runbook("run", "conditional", cwd=alien).returncode == 0  # as told: removed, and it runs


def test_a_fifo_or_hard_link_as_lock_file_is_refused_without_hanging(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    lock = _prepared(state_dir) / "conditional.lock"
    os.mkfifo(lock, 0o600)
    done = runbook("run", "conditional", cwd=alien, timeout=60)
    assert done.returncode == 3 and "is not a regular file" in done.stderr
    lock.unlink()
    other = tmp_path / "linked.txt"
    other.write_text("keep\n")
    os.link(other, lock)
    done = runbook("run", "conditional", cwd=alien)
    assert done.returncode == 3 and "has other hard links" in done.stderr
    assert other.read_text() == "keep\n"


def test_a_lock_file_left_by_an_earlier_run_is_reused(alien: Path, state_dir: Path) -> None:
    lock = _prepared(state_dir) / "conditional.lock"
    lock.write_text("20250101T000000Z-conditional-dead 1\n")
    lock.chmod(0o600)
    assert runbook("run", "conditional", cwd=alien).returncode == 0
    assert lock.read_text() == ""  # released: no holder named


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_state_dir_others_can_write_is_refused(alien: Path, state_dir: Path, mode: int) -> None:
    state_dir.mkdir()
    state_dir.chmod(mode)
    done = runbook("run", "conditional", cwd=alien)
    assert done.returncode == 3, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message == (f"runbook: refusing to use {state_dir}: group or others may write to it (mode {mode:04o}); "
                       f"check nothing in it was changed, then: chmod 700 {state_dir}")
    assert _no_run_started(state_dir)
    assert state_dir.stat().st_mode & 0o777 == mode  # not silently "fixed"


def test_a_state_dir_owned_by_another_user_is_refused(alien: Path, state_dir: Path) -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("chown to another user needs root", pytrace=False)
        pytest.skip("chown to another user needs root")
    state_dir.mkdir(mode=0o700)
    os.chown(state_dir, 54321, 54321)
    done = runbook("run", "conditional", cwd=alien)
    assert done.returncode == 3, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert f"refusing to use {state_dir}: it belongs to uid 54321, not to you" in message
    assert "RUNBOOK_STATE_DIR" in message
    assert _no_run_started(state_dir)


def test_list_still_works_on_a_refused_state_dir(alien: Path, state_dir: Path) -> None:
    # The catalog cache is only a speed-up: a state dir we may not write to must not hide the catalog.
    (state_dir / "cache").mkdir(parents=True)
    for folder in (state_dir, state_dir / "cache"):
        folder.chmod(0o777)
    done = runbook("list", cwd=alien)
    assert done.returncode == 0, done.stderr
    assert "conditional" in done.stdout
