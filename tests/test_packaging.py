"""The wheel carries the standard library, so `runbook init` works from an installed wheel."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_init_from_the_built_wheel(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel = next(dist.glob("runbook_runner-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "runner/library/runbooks/health-check.yml" in names
    assert "runner/library/inventories/local.yml" in names
    assert "runner/schema/runbook.schema.json" in names and "runner/reports/templates/run.html.j2" in names
    assert "runner/execution/callback_plugins/runbook_events.py" in names  # ansible-playbook loads it by path
    assert "runner/execution/vars_plugins/runbook_tmp.py" in names  # likewise
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # Only the wheel's own code on the path (the checkout is not), the dependencies from this environment.
    env = dict(os.environ, PYTHONPATH=str(unpacked))
    target = tmp_path / "new-workspace"
    done = subprocess.run([sys.executable, "-c", "import runner, sys; print(runner.__file__); "
                           "from runner.cli import main; main()", "init", str(target)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(unpacked))
    assert (target / "runbooks" / "health-check.yml").read_bytes() == (REPO / "runbooks" / "health-check.yml").read_bytes()
    assert (target / "inventories" / "local.yml").exists() and (target / "runbook.toml").exists()
    listed = subprocess.run([sys.executable, "-c", "from runner.cli import main; main()", "list"],
                            cwd=target, env=env, capture_output=True, text=True, timeout=120)
    assert "health-check" in listed.stdout
