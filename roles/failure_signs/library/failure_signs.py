#!/usr/bin/python3
"""Ansible module: signs that a host is about to fail, and a verdict (ok, warning, critical).

Read-only (supports check mode). Looks at:
- disks: `smartctl -H` of every device `smartctl --scan` lists, where smartctl is installed;
- the kernel log since a time (the journal's kernel messages, else /var/log/kern.log, messages or
  syslog and their rotations, else dmesg): I/O errors, filesystem errors, OOM kills, segfaults, hung tasks;
- a pending reboot (/var/run/reboot-required, or `needs-restarting -r` where it exists);
- failed systemd units, where systemd runs.
Critical: a disk that fails its SMART check, I/O or filesystem errors. Warning: everything else found.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: failure_signs
short_description: Look for signs of coming failure (SMART, kernel errors, OOM, segfaults, reboot, units)
options:
  since: {description: Kernel messages newer than this count (30m, 24h, 7d, or YYYY-MM-DD[THH:MM[:SS]])., type: str, required: true}
  log_source: {description: auto, journal, files or dmesg., type: str, default: auto}
  files: {description: Glob patterns of the syslog files holding kernel messages., type: list, elements: str}
"""

import glob
import gzip
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule

JOURNAL_DIRS = ("/run/log/journal", "/var/log/journal")
# (kind, severity, pattern); the first group, when there is one, names the device or the program
SIGNS = (
    ("io_errors", "critical", re.compile(r"I/O error,? dev(?:ice)? ([\w./-]+)|Buffer I/O error on dev(?:ice)? ([\w./-]+)"
                                         r"|(\w+): (?:Medium Error|Unrecovered read error)|^(ata[\d.]+): (?:exception Emask|failed command)")),
    ("filesystem_errors", "critical", re.compile(r"^(?:EXT[234]-fs|XFS|BTRFS)(?: \w+)? \(([^)]+)\): (?:error|.*[Cc]orruption"
                                                 r"|.*[Rr]emounting filesystem read-only|Filesystem has been shut down|.*Aborting journal)"
                                                 r"|^(?:EXT[234]-fs|XFS|BTRFS) (?:error|critical)")),
    ("oom_kills", "warning", re.compile(r"[Oo]ut of memory: Killed process \d+ \(([^)]*)\)")),
    ("segfaults", "warning", re.compile(r"^([^\s\[]+)\[\d+\]: (?:segfault at|general protection)|^traps: ([^\s\[]+)\[\d+\]")),
    ("hung_tasks", "warning", re.compile(r"task ([^\s:]+):\d+ blocked for more than \d+ seconds")),
)
RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+\S+\s+kernel:\s?(.*)$")
BSD = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)\s+\S+\s+kernel:\s?(.*)$")
UPTIME = re.compile(r"^\[\s*\d+\.\d+\]\s?")
DURATION = re.compile(r"^(\d+)([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def since_time(text: str, now: datetime) -> datetime:
    found = DURATION.match(text)
    if found:
        return now - timedelta(**{UNITS[found.group(2)]: int(found.group(1))})
    when = datetime.fromisoformat(text.replace(" ", "T"))
    return when if when.tzinfo else when.astimezone()


def file_line(line: str, now: datetime) -> tuple[datetime, str] | None:
    """(time, kernel message) of a syslog line from the kernel, else None."""
    found = RFC3339.match(line)
    if found:
        when = datetime.fromisoformat(found.group(1).replace(" ", "T").replace("Z", "+00:00"))
        return (when if when.tzinfo else when.astimezone()), found.group(2)
    found = BSD.match(line)
    if found:
        try:  # no year in this format: the latest date not ahead of tomorrow
            when = datetime.strptime(f"{now.year} {found.group(1)}", "%Y %b %d %H:%M:%S").astimezone()
        except ValueError:
            return None
        return (when.replace(year=now.year - 1) if when > now + timedelta(days=1) else when), found.group(2)
    return None


def from_files(patterns: list[str], since: datetime, now: datetime) -> list[str]:
    seen, messages = set(), []
    paths = sorted({p for pat in patterns for p in glob.glob(pat) if os.path.isfile(p)})
    for path in paths:
        if os.path.getmtime(path) < since.timestamp():
            continue  # last written before the window
        with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parsed = file_line(line.rstrip("\n"), now)
                if parsed and parsed[0] >= since and (parsed[0], parsed[1]) not in seen:
                    seen.add((parsed[0], parsed[1]))  # kern.log and syslog hold the same lines
                    messages.append(parsed[1])
    return messages


def from_journal(since: datetime) -> list[str]:
    argv = ["journalctl", "--no-pager", "--quiet", "--output=json", f"--since=@{int(since.timestamp())}", "_TRANSPORT=kernel"]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"), timeout=300)
    if done.returncode != 0:
        raise OSError(f"journalctl failed (rc {done.returncode}): {done.stderr.strip()[:300]}")
    messages = []
    for line in done.stdout.splitlines():
        try:
            message = json.loads(line).get("MESSAGE")
        except ValueError:
            continue
        if isinstance(message, list):
            message = bytes(message).decode("utf-8", "replace")
        if isinstance(message, str):
            messages.append(message)
    return messages


def from_dmesg(since: datetime) -> list[str]:
    done = subprocess.run(["dmesg", "--time-format", "iso", "--nopager"], capture_output=True, text=True,
                          env=dict(os.environ, LC_ALL="C"), timeout=120)
    if done.returncode != 0:
        raise OSError(f"dmesg failed (rc {done.returncode}): {done.stderr.strip()[:300]}")
    messages = []
    for line in done.stdout.splitlines():
        stamp, _, message = line.partition(" ")
        try:
            when = datetime.fromisoformat(stamp.replace(",", "."))
        except ValueError:
            continue
        if when >= since:
            messages.append(message)
    return messages


def journal_present() -> bool:
    return bool(shutil.which("journalctl")) and any(
        n.endswith((".journal", ".journal~")) for d in JOURNAL_DIRS if os.path.isdir(d) for _, _, names in os.walk(d) for n in names)


def kernel_signs(messages: list[str]) -> tuple[dict[str, Counter[str]], dict[str, str]]:
    """{kind: Counter(device or program)} and the first line of each kind."""
    found: dict[str, Counter[str]] = {}
    examples: dict[str, str] = {}
    for raw in messages:
        message = UPTIME.sub("", raw.strip())
        for kind, _, pattern in SIGNS:
            match = pattern.search(message)
            if match:
                name = next((g for g in match.groups() if g), "-")
                found.setdefault(kind, Counter())[name] += 1
                examples.setdefault(kind, message[:200])
                break
    return found, examples


def smart(module: AnsibleModule) -> tuple[list[str], list[str], list[str], int]:
    """(critical, warning, notes) from smartctl; exit status bits per smartctl(8)."""
    critical, warning, notes = [], [], []
    rc, out, _ = module.run_command(["smartctl", "--scan"], environ_update={"LC_ALL": "C"})
    devices = [line.split("#")[0].split() for line in out.splitlines() if line.startswith("/")]
    for device in devices:
        rc, out, _ = module.run_command(["smartctl", "-H", *device[1:], device[0]], environ_update={"LC_ALL": "C"})
        verdict = re.search(r"(?:self-assessment test result|Health Status):\s*(.+)", out)
        text = verdict.group(1).strip() if verdict else "no health status"
        if rc & 0x03:
            notes.append(f"{device[0]}: smartctl could not read it (exit {rc})")
        elif rc & 0x08 or text.upper().startswith("FAIL"):
            critical.append(f"disk {device[0]}: SMART health {text}")
        elif rc & 0xF0:
            warning.append(f"disk {device[0]}: SMART {text} but attributes or logs show errors (smartctl exit {rc})")
    return critical, warning, notes, len(devices)


def pending_reboot(module: AnsibleModule) -> str | None:
    if os.path.exists("/var/run/reboot-required"):
        try:
            with open("/var/run/reboot-required.pkgs", encoding="utf-8", errors="replace") as handle:
                pkgs = sorted({line.strip() for line in handle if line.strip()})
        except OSError:
            pkgs = []
        return "reboot pending (/var/run/reboot-required" + (f": {', '.join(pkgs[:5])}" if pkgs else "") + ")"
    if shutil.which("needs-restarting"):
        rc, _, _ = module.run_command(["needs-restarting", "-r"])
        if rc == 1:
            return "reboot pending (needs-restarting -r)"
    return None


def failed_units(module: AnsibleModule) -> list[str] | None:
    if not os.path.isdir("/run/systemd/system"):
        return None
    rc, out, err = module.run_command(["systemctl", "list-units", "--state=failed", "--no-legend", "--plain", "--no-pager"],
                                      environ_update={"LC_ALL": "C", "SYSTEMD_COLORS": "0"})
    if rc != 0:
        raise OSError(f"systemctl failed (rc {rc}): {err.strip()[:300]}")
    return [f[0] for f in (line.replace("●", " ").split() for line in out.splitlines()) if f]


def read_kernel(source: str, patterns: list[str], since: datetime, now: datetime) -> tuple[str, list[str]]:
    files = sorted({p for pat in patterns for p in glob.glob(pat) if os.path.isfile(p)})
    if source == "auto":
        source = "journal" if journal_present() else "files" if files else "dmesg"
    if source == "journal":
        return source, from_journal(since)
    if source == "files":
        return source, from_files(patterns, since, now)
    return source, from_dmesg(since)


def describe(kind: str, names: Counter[str]) -> str:
    label = {"io_errors": "I/O errors", "filesystem_errors": "filesystem errors", "oom_kills": "OOM kills",
             "segfaults": "segfaults", "hung_tasks": "hung tasks"}[kind]
    return f"{sum(names.values())} {label} ({', '.join(f'{n} {c}' for n, c in names.most_common(5))})"


class Findings:
    """What was found on the host, by severity; notes say what could not be checked."""

    def __init__(self) -> None:
        self.critical: list[str] = []
        self.warning: list[str] = []
        self.notes: list[str] = []

    def verdict(self) -> str:
        return "critical" if self.critical else "warning" if self.warning else "ok"


def check_kernel(findings: Findings, params: dict[str, Any], since: datetime, now: datetime) -> dict[str, Any]:
    found: dict[str, Counter[str]] = {}
    examples: dict[str, str] = {}
    try:
        source, messages = read_kernel(params["log_source"], params["files"], since, now)
        found, examples = kernel_signs(messages)
    except (OSError, EOFError, subprocess.SubprocessError) as exc:
        source = "none"
        findings.notes.append(f"kernel log not read: {exc}")
    for kind, severity, _ in SIGNS:
        if kind in found:
            getattr(findings, severity).append(describe(kind, found[kind]))
    return {"log_source": source, "counts": {k: sum(v.values()) for k, v in found.items()}, "examples": examples}


def check_host(findings: Findings, module: AnsibleModule) -> int:
    """Disks, pending reboot, failed units; returns how many disks smartctl checked."""
    disks = 0
    if shutil.which("smartctl"):
        critical, warning, notes, disks = smart(module)
        findings.critical += critical
        findings.warning += warning
        findings.notes += notes
    else:
        findings.notes.append("no smartctl: disk health not checked")
    reboot = pending_reboot(module)
    findings.warning += [reboot] if reboot else []
    try:
        units = failed_units(module)
    except OSError as exc:
        units = []
        findings.notes.append(str(exc))
    if units is None:
        findings.notes.append("no systemd: units not checked")
    elif units:
        findings.warning.append(f"failed units: {', '.join(units)}")
    return disks


def main() -> None:
    module = AnsibleModule(argument_spec={
        "since": {"type": "str", "required": True},
        "log_source": {"type": "str", "choices": ["auto", "journal", "files", "dmesg"], "default": "auto"},
        "files": {"type": "list", "elements": "str",
                  "default": ["/var/log/kern.log*", "/var/log/messages*", "/var/log/syslog*"]},
    }, supports_check_mode=True)
    now = datetime.now(timezone.utc).astimezone()
    try:
        since = since_time(module.params["since"], now)
    except ValueError:
        module.fail_json(msg=f"since={module.params['since']!r}: not a duration (30m, 24h, 7d) or a date")
    findings = Findings()
    kernel = check_kernel(findings, module.params, since, now)
    disks = check_host(findings, module)
    module.exit_json(changed=False, verdict=findings.verdict(), critical=findings.critical, warning=findings.warning,
                     notes=findings.notes, since=since.isoformat(timespec="seconds"), disks_checked=disks, **kernel)


if __name__ == "__main__":
    main()
