#!/usr/bin/python3
"""Ansible module: free space under given folders only, never following a symlink out of them.

Removes regular files older than `remove_after_days`, gzips the remaining ones older than
`compress_after_days`, optionally cleans the package manager's cache and vacuums the systemd journal,
and reports the bytes freed per folder. Supports check mode (counts what it would free).

Safety: every path must be a real folder (no symlink anywhere along it) under one of `allowed_roots`,
otherwise nothing at all is touched on the host. The walk uses directory file descriptors
(os.fwalk without following symlinks), opens and unlinks relative to them with O_NOFOLLOW, never
crosses into another filesystem, and skips anything that is not a regular file with a single link.
Files some process holds open are skipped too (removing them frees nothing until the process closes
them, compressing them loses what it writes next), and so are the login records (wtmp, btmp, lastlog)
and journal files (journald's own; `journal: true` vacuums them).
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: disk_cleanup
short_description: Remove and compress old files under allowed folders, report bytes freed
options:
  paths: {description: Folders to clean., type: list, elements: str, required: true}
  allowed_roots: {description: Folders the paths must lie under., type: list, elements: str, required: true}
  remove_after_days: {description: Remove regular files older than this., type: int, required: true}
  compress_after_days: {description: Gzip files older than this (0 = no compression)., type: int, default: 0}
  package_cache: {description: Clean the package manager's download cache., type: bool, default: false}
  journal: {description: Vacuum the systemd journal to remove_after_days., type: bool, default: false}
"""

import gzip
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4", ".zip", ".tgz", ".7z", ".lzma")
PACKAGE_CACHES = (("apt-get", ["apt-get", "clean"], "/var/cache/apt/archives"),
                  ("dnf", ["dnf", "clean", "packages"], "/var/cache/dnf"),
                  ("yum", ["yum", "clean", "packages"], "/var/cache/yum"),
                  ("zypper", ["zypper", "--non-interactive", "clean", "--all"], "/var/cache/zypp/packages"))
JOURNALS = ("/var/log/journal", "/run/log/journal")
Found = dict[str, Any]  # one folder's figures, as the module returns them
KEPT_NAMES = ("wtmp", "btmp", "lastlog", "faillog", "utmp")
KEPT_SUFFIXES = (".journal", ".journal~")


def open_files() -> set[tuple[int, int]]:
    """(device, inode) of every file a process on this host holds open."""
    held = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to see
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            held.add((st.st_dev, st.st_ino))
    return held


def refusal(path: str, roots: list[str]) -> str | None:
    """Why this path may not be cleaned, or None."""
    if not os.path.isabs(path):
        return f"{path}: not an absolute path"
    norm = os.path.normpath(path)
    if not any(norm == r or norm.startswith(r.rstrip("/") + "/") for r in roots):
        return f"{path}: outside the allowed folders ({', '.join(roots)})"
    if not os.path.lexists(norm):
        return None  # nothing to clean there; reported as missing
    real = os.path.realpath(norm)
    if real != norm:
        return f"{path}: goes through a symlink (resolves to {real}): refused"
    if not stat.S_ISDIR(os.lstat(norm).st_mode):
        return f"{path}: not a folder"
    return None


def allocated(st: os.stat_result) -> int:
    return st.st_blocks * 512


def tree_bytes(path: str) -> int:
    """Bytes allocated to regular files under path (no symlink followed, one filesystem)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return 0
    total, dev = 0, os.lstat(path).st_dev
    for _, dirs, files, dirfd in os.fwalk(path, follow_symlinks=False):
        dirs[:] = [d for d in dirs if same_device(d, dirfd, dev)]
        for name in files:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += allocated(st)
    return total


def same_device(name: str, dirfd: int, dev: int) -> bool:
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_dev == dev


def compress(name: str, dirfd: int, st: os.stat_result) -> int | None:
    """Gzip one file next to itself (name.gz), keeping mode, owner and times; returns bytes saved."""
    target = name + ".gz"
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    try:
        now = os.fstat(src)
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(now.st_mode):
            return None  # replaced since the walk saw it
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dirfd)
        try:
            with os.fdopen(os.dup(src), "rb") as inp, os.fdopen(os.dup(dst), "wb") as raw:
                # level 6 (gzip's default): a multi-gigabyte log must not take the whole emergency
                with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=int(st.st_mtime), compresslevel=6) as out:
                    shutil.copyfileobj(inp, out, 1 << 20)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.fchown(dst, st.st_uid, st.st_gid)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            written = os.fstat(dst)
        except BaseException:
            os.unlink(target, dir_fd=dirfd)
            raise
        finally:
            os.close(dst)
    finally:
        os.close(src)
    os.unlink(name, dir_fd=dirfd)
    return allocated(st) - allocated(written)


class Cleaner:
    """Removes (first, in every folder: it frees the room compression needs), then compresses."""

    def __init__(self, remove_before: float, compress_before: float, check: bool) -> None:
        self.remove_before, self.compress_before, self.check = remove_before, compress_before, check
        self.held = open_files()

    def clean(self, paths: list[str]) -> list[Found]:
        results = [self.start(x) for x in paths]
        for phase in (self.remove, self.compress):
            for found in results:
                if not found["missing"]:
                    self.walk(found, phase)
        for found in results:
            found["freed_bytes"] = found["removed_bytes"] + found["compressed_bytes_saved"]
        return results

    @staticmethod
    def start(path: str) -> Found:
        return {"path": path, "removed_files": 0, "removed_bytes": 0, "compressed_files": 0,
                "compressed_bytes_saved": 0, "skipped": 0, "errors": [], "missing": not os.path.lexists(path)}

    def walk(self, found: Found, phase: Callable[[str, int, os.stat_result, Found], None]) -> None:
        dev = os.lstat(found["path"]).st_dev
        for root, dirs, files, dirfd in os.fwalk(found["path"], follow_symlinks=False):
            dirs[:] = [d for d in dirs if same_device(d, dirfd, dev)]
            for name in files:
                st = self.candidate(name, dirfd, found, count=phase == self.remove)
                if st is not None:
                    try:
                        phase(name, dirfd, st, found)
                    except OSError as exc:
                        found["errors"].append(f"{os.path.join(root, name)}: {exc.strerror}")

    def candidate(self, name: str, dirfd: int, found: Found, count: bool) -> os.stat_result | None:
        """The file's lstat when it may be touched at all, else None (counted as skipped once)."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except OSError:
            return None
        if (not stat.S_ISREG(st.st_mode) or st.st_nlink > 1 or (st.st_dev, st.st_ino) in self.held
                or name in KEPT_NAMES or name.endswith(KEPT_SUFFIXES)):
            found["skipped"] += count  # symlinks, sockets, devices, hard links, open files, login records
            return None
        return st

    def remove(self, name: str, dirfd: int, st: os.stat_result, found: Found) -> None:
        if st.st_mtime < self.remove_before:
            if not self.check:
                os.unlink(name, dir_fd=dirfd)
            found["removed_files"] += 1
            found["removed_bytes"] += allocated(st)

    def compress(self, name: str, dirfd: int, st: os.stat_result, found: Found) -> None:
        # old files were removed (in check mode: counted as removed, and still there)
        if self.remove_before <= st.st_mtime < self.compress_before and not name.endswith(COMPRESSED):
            saved = None if self.check else compress(name, dirfd, st)
            if saved is not None or self.check:
                found["compressed_files"] += 1
                found["compressed_bytes_saved"] += saved or 0


def command_freeing(module: AnsibleModule, argv: list[str], folders: list[str], check: bool) -> tuple[int, str | None]:
    """Runs argv (not in check mode) and returns (bytes freed in folders, error text or None)."""
    before = sum(tree_bytes(f) for f in folders)
    if check:
        return before, None
    rc, _, err = module.run_command(argv, environ_update={"LC_ALL": "C"})
    if rc != 0:
        return 0, f"{' '.join(argv)}: exit {rc}: {err.strip()[:300]}"
    return max(before - sum(tree_bytes(f) for f in folders), 0), None


def system_caches(module: AnsibleModule, p: dict[str, Any], check: bool) -> tuple[dict[str, int], list[str]]:
    """Bytes freed by the package cache clean and the journal vacuum, when asked; their errors."""
    extra: dict[str, int] = {}
    errors: list[str] = []
    if p["package_cache"]:
        tool = next((t for t in PACKAGE_CACHES if shutil.which(t[0])), None)
        if tool:
            extra["package_cache"], problem = command_freeing(module, tool[1], [tool[2]], check)
            errors += [problem] if problem else []
    if p["journal"] and shutil.which("journalctl") and any(os.path.isdir(j) for j in JOURNALS):
        argv = ["journalctl", f"--vacuum-time={p['remove_after_days']}d"]
        extra["journal"], problem = command_freeing(module, argv, list(JOURNALS), check)
        errors += [problem] if problem else []
    return extra, errors


def use_pct(path: str) -> float | None:
    try:
        vfs = os.statvfs(path)
    except OSError:
        return None
    used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
    usable = used + vfs.f_bavail * vfs.f_frsize
    return round(100.0 * used / usable, 1) if usable else None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "str", "required": True},
            "allowed_roots": {"type": "list", "elements": "str", "required": True},
            "remove_after_days": {"type": "int", "required": True},
            "compress_after_days": {"type": "int", "default": 0},
            "package_cache": {"type": "bool", "default": False},
            "journal": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p, check = module.params, module.check_mode
    roots = [os.path.normpath(r) for r in p["allowed_roots"]]
    paths = [os.path.normpath(x) for x in p["paths"]]
    refused = [r for r in (refusal(x, roots) for x in p["paths"]) if r]
    if p["remove_after_days"] < 1:
        refused.append(f"remove_after_days={p['remove_after_days']}: must be 1 or more")
    if refused:
        module.fail_json(msg="; ".join(refused) + ": nothing was touched", refused=refused)
    now = time.time()
    compress_days = p["compress_after_days"]
    cleaner = Cleaner(now - p["remove_after_days"] * 86400, now - compress_days * 86400 if compress_days > 0 else 0, check)
    before = {x: use_pct(x) for x in paths}
    results = cleaner.clean(paths)
    extra, errors = system_caches(module, p, check)
    errors = [e for r in results for e in r["errors"]] + errors
    for r in results:
        r["use_pct_before"], r["use_pct_after"] = before[r["path"]], use_pct(r["path"])
    freed = sum(r.get("freed_bytes", 0) for r in results) + sum(extra.values())
    touched = any(r["removed_files"] or r["compressed_files"] for r in results) or freed > 0
    module.exit_json(changed=touched and not check, paths=results, package_cache_freed=extra.get("package_cache"),
                     journal_freed=extra.get("journal"), freed_bytes=freed, errors=errors)


if __name__ == "__main__":
    main()
