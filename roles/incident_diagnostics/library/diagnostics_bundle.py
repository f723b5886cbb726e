#!/usr/bin/python3
"""Ansible module: a first-response diagnostics bundle of this host, within a size limit.

Read-only (supports check mode, changes nothing): runs the commands an operator types first in an
incident (uptime, ps, free, df, ss, dmesg, the recent log, failed units, the last package changes) and
returns their output per section. The sections share `max_bytes` fairly: the short ones are kept whole
and what they leave is split evenly among the long ones; a section cut to fit keeps its most useful end
(the top of a sorted process list, the latest lines of a log) and says how much was cut. A command that is missing is skipped with a note, one that fails keeps its rc and stderr.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: diagnostics_bundle
short_description: Collect processes, load, memory, disks, sockets and recent logs within a size limit
options:
  max_bytes: {description: Most bytes of output in the whole bundle., type: int, required: true}
  log_lines: {description: How many recent log lines to take., type: int, default: 200}
"""

import os
import shutil
import subprocess
import time
from typing import Union

from ansible.module_utils.basic import AnsibleModule

PS = "pid,ppid,user,stat,pcpu,pmem,rss,etime,args"
JOURNAL_DIRS = ("/run/log/journal", "/var/log/journal")
SYSLOGS = ("/var/log/syslog", "/var/log/messages")
TAIL_READ = 1 << 20
# a command's argv, or ("file", path), or None when the host has neither
Source = Union[list[str], tuple[str, str], None]
PACKAGE_LOGS = ("/var/log/dpkg.log", "/var/log/dnf.rpm.log", "/var/log/yum.log", "/var/log/zypp/history")


def has_journal() -> bool:
    return bool(shutil.which("journalctl")) and any(
        n.endswith(".journal") for d in JOURNAL_DIRS if os.path.isdir(d) for _, _, names in os.walk(d) for n in names)


def first_file(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if os.path.isfile(p)), None)


def sections(log_lines: int) -> list[tuple[str, Source, str]]:
    """(name, argv or file path, keep 'head' or 'tail'); the first available of each alternative list."""
    syslog, packages = first_file(SYSLOGS), first_file(PACKAGE_LOGS)
    logs: Source = ["journalctl", "--no-pager", "-q", "-n", str(log_lines), "-o", "short-iso"] if has_journal() else None
    if logs is None and syslog:
        logs = ("file", syslog)
    changes: Source = ("file", packages) if packages else None
    if changes is None and shutil.which("rpm"):
        changes = ["sh", "-c", "rpm -qa --last | head -n 50"]
    return [
        ("system", ["uname", "-a"], "head"),
        ("uptime", ["uptime"], "head"),
        ("load", ("file", "/proc/loadavg"), "head"),
        ("memory", ["free", "-m"], "head"),
        ("processes_by_cpu", ["ps", "-eo", PS, "--sort=-pcpu"], "head"),
        ("processes_by_memory", ["ps", "-eo", PS, "--sort=-rss"], "head"),
        ("disks", ["df", "-hPT"], "head"),
        ("inodes", ["df", "-iPT"], "head"),
        ("sockets", ["ss", "-tunlp"] if shutil.which("ss") else ["netstat", "-tunlp"], "head"),
        ("socket_summary", ["ss", "-s"] if shutil.which("ss") else None, "head"),
        ("kernel", ["dmesg", "-T", "--level=emerg,alert,crit,err,warn"], "tail"),
        ("logs", logs, "tail"),
        ("failed_units", ["systemctl", "--failed", "--no-pager", "--plain"] if os.path.isdir("/run/systemd/system") else None, "head"),
        ("logged_in", ["who"], "head"),
        ("package_changes", changes, "tail"),
    ]


def read(source: list[str] | tuple[str, str], log_lines: int) -> tuple[int, str]:
    """(rc, text) of a command or a file."""
    if isinstance(source, tuple):
        with open(source[1], "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(size - TAIL_READ, 0))  # a log that filled the disk is never read whole
            data = handle.read(TAIL_READ) if size else handle.read()
        return 0, b"\n".join(data.splitlines()[-log_lines:]).decode("utf-8", "replace")
    done = subprocess.run(source, capture_output=True, timeout=30, env=dict(os.environ, LC_ALL="C", COLUMNS="200"))
    text = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0:
        text += done.stderr.decode("utf-8", "replace")
    return done.returncode, text


def cut(text: str, budget: int, keep: str) -> tuple[str, int]:
    data = text.encode("utf-8")
    if len(data) <= budget:
        return text, 0
    part = data[:budget] if keep == "head" else data[-budget:]
    return part.decode("utf-8", "ignore"), len(data) - len(part)


def shares(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Bytes each section may keep: the smallest whole while they fit, the rest an even split."""
    budgets, left = {}, total
    for count, name in enumerate(sorted(sizes, key=lambda name: sizes[name])):
        budgets[name] = min(sizes[name], left // (len(sizes) - count))
        left -= budgets[name]
    return budgets


def main() -> None:
    module = AnsibleModule(argument_spec={
        "max_bytes": {"type": "int", "required": True},
        "log_lines": {"type": "int", "default": 200},
    }, supports_check_mode=True)
    if module.params["max_bytes"] < 1024:
        module.fail_json(msg=f"max_bytes must be at least 1024, not {module.params['max_bytes']}")
    started = time.monotonic()
    outputs, notes = {}, []
    for name, source, keep in sections(module.params["log_lines"]):
        if source is None or (isinstance(source, list) and not shutil.which(source[0])):
            notes.append(f"{name}: not available on this host")
            continue
        try:
            rc, text = read(source, module.params["log_lines"])
        except (OSError, subprocess.SubprocessError) as exc:
            notes.append(f"{name}: {exc}")
            continue
        outputs[name] = (" ".join(source) if isinstance(source, list) else source[1], rc, text, keep)
    budgets = shares({n: len(o[2].encode("utf-8")) for n, o in outputs.items()}, module.params["max_bytes"])
    bundle, size, truncated = {}, 0, []
    for name, (command, rc, text, keep) in outputs.items():
        text, omitted = cut(text, budgets[name], keep)
        bundle[name] = {"command": command, "rc": rc, "output": text, "omitted_bytes": omitted}
        size += len(text.encode("utf-8"))
        truncated += [name] if omitted else []
    module.exit_json(changed=False, bundle=bundle, notes=notes, bytes=size, truncated=truncated,
                     seconds=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
