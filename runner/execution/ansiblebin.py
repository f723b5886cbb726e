"""Where the Ansible executables are: beside this Python (a virtual environment) or on PATH."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from runner.errors import InvalidError


def ansible_bin(name: str) -> str:
    """The path of `name`; InvalidError (exit 3: nothing was run) when there is none."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise InvalidError(f"{name} not found beside {sys.executable} or on PATH: install ansible-core "
                           f"in this environment ({sys.executable} -m pip install ansible-core) or put "
                           f"{name} on PATH; nothing was run")
    return found
