"""What a step may be named: 1 to 64 printable characters in any script (`ディスク確認`, `restart`), no space
at either end and no `/` or `\\`. The loader holds runbooks to it and the store holds records read back to it;
the step's folder is derived from the name (runner/store/step_folders.py), never the name itself."""
from __future__ import annotations

import re

# The same as runbook.schema.json's $defs.step.name pattern.
STEP_NAME = re.compile(r"[^\s/\\](?:[^/\\]{0,62}[^\s/\\])?")


def is_step_name(name: object) -> bool:
    return isinstance(name, str) and name.isprintable() and STEP_NAME.fullmatch(name) is not None
