"""The shipped playbooks and roles stay clean under ansible-lint's strictest profile (production)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_playbooks_and_roles_pass_ansible_lint_production(tmp_path: Path) -> None:
    lint = Path(sys.executable).parent / "ansible-lint"
    assert lint.is_file(), "ansible-lint is missing: it is in the test extra (pip install -e '.[test]')"
    env = dict(os.environ, NO_COLOR="1", XDG_CACHE_HOME=str(tmp_path / "cache"),
               PATH=os.pathsep.join([str(lint.parent), os.environ.get("PATH", "")]))
    done = subprocess.run([str(lint), "--profile", "production", "--offline", "--nocolor", "-f", "pep8",
                           "playbooks", "roles"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    findings = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 0 and not findings, "\n".join(findings) + done.stderr[-2000:]
