#!/usr/bin/python3
"""Ansible module: failed logins, sudo use and new accounts found in a host's auth logs in a time window.

Read-only (supports check mode, never changes anything). Reads the syslog auth files (Debian's
/var/log/auth.log, RHEL's /var/log/secure, and their rotations, gzip included) when the host has
them, else the systemd journal. Counting happens on the host: only the figures travel back.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: auth_log_events
short_description: Count failed logins, sudo commands and new accounts in the auth logs
description:
  - Reads the auth log files (current and rotated, C(.gz) too) or, when there are none, the systemd journal,
    and counts the security events whose timestamp falls in the last O(window_hours) hours.
  - Lines in the classic syslog format (C(Nov 29 03:15:00), no year, host local time) and in the
    high-precision format of Debian 12's rsyslog (C(2026-11-29T03:15:00.123456+00:00)) are understood.
options:
  window_hours:
    description: Only events newer than this many hours count.
    type: int
    required: true
  files:
    description: Glob patterns of the auth log files, rotations included.
    type: list
    elements: str
    default: [/var/log/auth.log*, /var/log/secure*]
  source:
    description: C(auto) reads the files when any exists, else the journal.
    type: str
    choices: [auto, files, journal]
    default: auto
"""

import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone

from ansible.module_utils.basic import AnsibleModule

JOURNAL_IDENTIFIERS = ("sshd", "sshd-session", "sudo", "su", "login", "useradd")
JOURNAL_DIRS = ("/run/log/journal", "/var/log/journal")
MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+\S+\s+(.*)$")
BSD = re.compile(r"^([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+\S+\s+(.*)$")
PROGRAM = re.compile(r"^([^\s\[:]+)(?:\[(\d+)\])?:\s?(.*)$")
REPEATED = re.compile(r"^message repeated (\d+) times: \[\s?(.*?)\s?\]$")

SSHD_FAILED = re.compile(r"^Failed (\S+) for (?:invalid user )?(.*?) from (\S+) port \d+")
# Key-only servers log no "Failed" line for most attempts: an unknown user, or a known one whose client
# gave up after its keys were refused. Counted once per connection without a "Failed" line.
SSHD_INVALID = re.compile(r"^Invalid user (.*?) from (\S+)(?: port \d+)?$")
SSHD_GAVE_UP = re.compile(r"^(?:Connection closed by|Disconnected from) authenticating user (\S+) (\S+) port \d+ \[preauth\]")
LOGIN_FAILED = re.compile(r"^FAILED LOGIN \(\d+\) on '([^']*)'(?: FROM '([^']*)')? FOR '([^']*)'")
SU_FAILED = re.compile(r"^FAILED SU \(to ([^)]*)\) (\S+) on (\S+)")
SUDO_COMMAND = re.compile(r"^\s*(\S+) : (.*\bCOMMAND=.*)$")
SUDO_REFUSED = ("incorrect password attempt", "NOT in sudoers", "command not allowed",
                "a password is required", "NOT authorized on host")
NEW_USER = re.compile(r"^new user: name=([^,]+), UID=(\d+)(?:, GID=\d+)?(?:, home=([^,]*))?(?:, shell=([^,]*))?")


class Counts:
    """The events of the window, counted as they are read."""

    def __init__(self) -> None:
        self.failed_logins = 0
        self.failed_by_user: dict[str, int] = {}
        self.failed_by_address: dict[str, int] = {}
        self.sudo_commands = 0
        self.sudo_refused = 0
        self.sudo_by_user: dict[str, int] = {}
        self.new_accounts: list[dict[str, object]] = []
        self.events_in_window = 0
        # sshd connections (pid, address) with a "Failed" line, and those with only a refusal so far
        self._sshd_failed: set[tuple[str, str]] = set()
        self._sshd_refused: dict[tuple[str, str], str] = {}

    def add(self, when: datetime, program: str, pid: str, message: str) -> None:
        repeated = REPEATED.match(message)
        times = 1
        if repeated:  # rsyslog's duplicate reduction: one line stands for several events
            times, message = int(repeated.group(1)), repeated.group(2)
        if program in ("sshd", "sshd-session"):
            found = SSHD_FAILED.match(message)
            if found:
                self._failed(found.group(2), found.group(3), times)
                self._sshd_failed.add((pid, found.group(3)))
                return
            found = SSHD_INVALID.match(message) or SSHD_GAVE_UP.match(message)
            if found:
                connection = (pid or f"line-{len(self._sshd_refused)}", found.group(2))
                self._sshd_refused.setdefault(connection, found.group(1))
        elif program == "login":
            found = LOGIN_FAILED.match(message)
            if found:
                self._failed(found.group(3), found.group(2) or found.group(1), times)
        elif program == "su":
            found = SU_FAILED.match(message)
            if found:
                self._failed(found.group(2), "su to " + found.group(1), times)
        elif program == "sudo":
            found = SUDO_COMMAND.match(message)
            if found:
                self.events_in_window += times
                self.sudo_commands += times
                user = found.group(1)
                self.sudo_by_user[user] = self.sudo_by_user.get(user, 0) + times
                if any(marker in found.group(2) for marker in SUDO_REFUSED):
                    self.sudo_refused += times
        elif program in ("useradd", "adduser"):
            found = NEW_USER.match(message)
            if found:
                self.events_in_window += 1
                self.new_accounts.append({
                    "name": found.group(1), "uid": int(found.group(2)), "home": found.group(3) or "",
                    "shell": found.group(4) or "", "time": when.isoformat(timespec="seconds"),
                })

    def _failed(self, user: str, address: str, times: int) -> None:
        self.events_in_window += times
        self.failed_logins += times
        self.failed_by_user[user] = self.failed_by_user.get(user, 0) + times
        self.failed_by_address[address] = self.failed_by_address.get(address, 0) + times

    def result(self) -> dict[str, object]:
        for (pid, address), user in self._sshd_refused.items():
            if (pid, address) not in self._sshd_failed:
                self._failed(user, address, 1)
        self._sshd_refused.clear()
        return {
            "failed_logins": self.failed_logins,
            "failed_by_user": self.failed_by_user,
            "failed_by_address": self.failed_by_address,
            "sudo_commands": self.sudo_commands,
            "sudo_refused": self.sudo_refused,
            "sudo_by_user": self.sudo_by_user,
            "new_accounts": self.new_accounts,
            "events_in_window": self.events_in_window,
        }


def parse_time(line: str, now: datetime) -> tuple[datetime, str] | None:
    """(timestamp, rest after the hostname) of a syslog line, or None when it has no known timestamp."""
    found = RFC3339.match(line)
    if found:
        text = found.group(1).replace(" ", "T").replace("Z", "+00:00")
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.astimezone()  # host local time
        return when, found.group(2)
    found = BSD.match(line)
    if found and found.group(1) in MONTHS:
        month, day, hour, minute, second = MONTHS[found.group(1)], *map(int, found.group(2, 3, 4, 5))
        try:
            when = datetime(now.year, month, day, hour, minute, second).astimezone()
            # No year in this format: a date ahead of now belongs to last year (logs span New Year).
            if when > now + timedelta(days=1):
                when = when.replace(year=now.year - 1)
        except ValueError:  # Feb 29 of another year
            return None
        return when, found.group(6)
    return None


def log_files(patterns: list[str]) -> list[str]:
    files: set[str] = set()
    for pattern in patterns:
        files.update(path for path in glob.glob(pattern) if os.path.isfile(path))
    return sorted(files)


def read_files(paths: list[str], since: datetime, now: datetime, counts: Counts) -> tuple[list[str], int]:
    """Counts the events of `paths` newer than `since`; (files read, lines without a timestamp)."""
    read, undated = [], 0
    for path in paths:
        # A file last written before the window holds nothing newer: rotations cost nothing to skip.
        if os.path.getmtime(path) < since.timestamp():
            continue
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parsed = parse_time(line.rstrip("\n"), now)
                if parsed is None:
                    undated += bool(line.strip())
                    continue
                when, rest = parsed
                if when < since:
                    continue
                program = PROGRAM.match(rest)
                if program:
                    counts.add(when, program.group(1), program.group(2) or "", program.group(3))
        read.append(path)
    return read, undated


def journal_present() -> bool:
    return bool(shutil.which("journalctl")) and any(
        name.endswith((".journal", ".journal~"))
        for folder in JOURNAL_DIRS if os.path.isdir(folder)
        for _root, _dirs, names in os.walk(folder) for name in names
    )


def read_journal(module: AnsibleModule, since: datetime, counts: Counts) -> None:
    matches = [f"SYSLOG_IDENTIFIER={name}" for name in JOURNAL_IDENTIFIERS]  # same field: OR-ed
    argv = ["journalctl", "--no-pager", "--quiet", "--output=json", f"--since=@{int(since.timestamp())}", *matches]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"), timeout=600)
    if done.returncode != 0:
        module.fail_json(msg=f"journalctl failed (rc {done.returncode}): {done.stderr.strip()[:300]}")
    for line in done.stdout.splitlines():
        try:
            entry = json.loads(line)
            when = datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, timezone.utc)
        except (ValueError, KeyError, TypeError):
            continue
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # journald stores non-UTF-8 messages as byte arrays
            message = bytes(message).decode("utf-8", "replace")
        if isinstance(message, str) and when >= since:
            counts.add(when, str(entry.get("SYSLOG_IDENTIFIER", "")), str(entry.get("_PID", "")), message)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "window_hours": {"type": "int", "required": True},
            "files": {"type": "list", "elements": "str", "default": ["/var/log/auth.log*", "/var/log/secure*"]},
            "source": {"type": "str", "choices": ["auto", "files", "journal"], "default": "auto"},
        },
        supports_check_mode=True,
    )
    hours = module.params["window_hours"]
    if hours < 1:
        module.fail_json(msg=f"window_hours must be at least 1, not {hours}")
    now = datetime.now(timezone.utc).astimezone()
    since = now - timedelta(hours=hours)
    counts = Counts()
    files = log_files(module.params["files"])
    source = module.params["source"]
    if source == "auto":
        source = "files" if files else ("journal" if journal_present() else "none")
    result: dict[str, object] = {"changed": False, "source": source, "since": since.isoformat(timespec="seconds"),
                                 "window_hours": hours, "files_found": files, "files_read": [], "undated_lines": 0}
    started = time.monotonic()
    try:
        if source == "files":
            if not files:
                module.fail_json(msg=f"no auth log file matches {', '.join(module.params['files'])}", **result)
            result["files_read"], result["undated_lines"] = read_files(files, since, now, counts)
        elif source == "journal":
            if not shutil.which("journalctl"):
                module.fail_json(msg="journalctl not found (source=journal)", **result)
            read_journal(module, since, counts)
    except (OSError, EOFError, subprocess.SubprocessError) as exc:
        module.fail_json(msg=f"cannot read the auth logs: {exc}", **result)
    result.update(counts.result())
    result["seconds"] = round(time.monotonic() - started, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
