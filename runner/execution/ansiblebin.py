"""Where the Ansible executables are: beside this Python (a virtual environment) or on PATH."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from runner.errors import RunbookError


def ansible_bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise RunbookError(f"{name} not found beside {sys.executable} or on PATH: install ansible-core")
    return found
