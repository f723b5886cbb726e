from __future__ import annotations

import shutil
import sys
from pathlib import Path

from runner.errors import UsageError

FOLDERS = ("runbooks", "playbooks", "roles", "inventories")

CONFIG = """\
# runbook.toml: workspace settings, all optional.
# inventory = "local"          # default inventory name (inventories/<name>)
# state_dir = ".runbook"       # where run logs and history.db live
# forks = 25                   # Ansible forks (Ansible uses min(forks, hosts))
#
# [notify]
# webhook = "https://chat.example/hooks/ops"
# on = ["failed", "waiting", "timed_out"]
#
# [ansible]
# accelerate = "auto"          # mitogen_linear where it works (auto), always (mitogen), never (none)
#
# [ansible_cfg.defaults]        # merged over the shipped ansible.cfg
# timeout = 30
"""


def library_root() -> Path:
    """The standard library shipped in the wheel (runner/library), or the checkout it comes from."""
    packaged = Path(__file__).resolve().parent.parent / "library"
    if (packaged / "runbooks").is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "runbooks").is_dir():
        return checkout
    raise UsageError("the standard library of runbooks is missing from this installation")


def init(directory: str) -> int:
    try:
        return _init(directory)
    except OSError as exc:
        raise UsageError(f"init {directory}: cannot create the workspace: {exc.strerror or exc}") from None


def _init(directory: str) -> int:
    target = Path(directory).expanduser().resolve()
    if (target / "runbooks").exists():
        raise UsageError(f"{target} is already a workspace (it has runbooks/)")
    source = library_root()
    target.mkdir(parents=True, exist_ok=True)
    for folder in FOLDERS:
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (target / folder).mkdir()
    if not (target / "runbook.toml").exists():
        (target / "runbook.toml").write_text(CONFIG, encoding="utf-8")
    gitignore = target / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".runbook/\n", encoding="utf-8")
    count = len(list((target / "runbooks").glob("*.y*ml")))
    print(f"created workspace {target} with {count} runbooks", file=sys.stderr)
    print(f"next: cd {target} && runbook list && runbook run health-check", file=sys.stderr)
    return 0
