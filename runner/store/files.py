"""Private files: folders 0700, files 0600, written atomically (a crash leaves the old or the new file)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a crash leaves the old or the new file) with mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_private_dir(path: Path) -> Path:
    """Create `path` and any missing parents with mode 0700."""
    if not path.parent.exists():
        make_private_dir(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def open_private(path: Path, mode: str = "a") -> Any:
    """`path` opened for appending, created 0600 if new (logs, step output)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, mode)
