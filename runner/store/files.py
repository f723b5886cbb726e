"""Private files: folders 0700, files 0600, written atomically (a crash leaves the old or the new file)."""
from __future__ import annotations

import errno
import os
import pwd
import secrets
import stat
from pathlib import Path
from typing import Any

from runner.errors import InvalidError


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
    """Create `path` and any missing parents with mode 0700; refuse a folder someone else could change."""
    if not path.parent.exists():
        make_private_dir(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)
    mode = check_private_dir(path)
    if mode & 0o077:
        path.chmod(0o700)
    return path


def make_private_dir_within(root: Path, path: Path) -> Path:
    """make_private_dir for a folder under the state dir `root`, walked one component at a time from it:
    refused (InvalidError, nothing made or changed) when a component is `..` or a link, or the folder
    would resolve outside `root`."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = ("..",)
    if ".." in parts:
        raise InvalidError(f"refusing to make {path}: it is not a folder inside the state dir {root}")
    make_private_dir(root)
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink() or not current.resolve().is_relative_to(root.resolve()):
            raise InvalidError(f"refusing to make {path}: {current} leads outside the state dir {root}")
        make_private_dir(current)
    return current


def check_private_dir(path: Path) -> int:
    """`path`'s mode, or InvalidError when another user owns it or group or others may write to it:
    they could swap the records or plant links that make the runner overwrite files."""
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise InvalidError(f"refusing to use {path}: it belongs to {_user(info.st_uid)}, not to you "
                           f"({_user(os.geteuid())}); run as its owner or use a state dir of your own "
                           "(RUNBOOK_STATE_DIR or state_dir in runbook.toml)")
    if info.st_mode & 0o022:
        raise InvalidError(f"refusing to use {path}: group or others may write to it (mode "
                           f"{stat.S_IMODE(info.st_mode):04o}); check nothing in it was changed, then: chmod 700 {path}")
    return info.st_mode


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT from a write, or SQLite's "database or disk is full"."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return getattr(exc, "sqlite_errorcode", None) == 13  # SQLITE_FULL


def open_private(path: Path, mode: str = "a") -> Any:
    """`path` opened for appending, created 0600 if new (logs, step output); never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, mode)
