#!/usr/bin/python3
"""Ansible module: who can log in to this host, who has sudo rights, and which SSH keys are authorized.

Read-only (supports check mode). Reads /etc/passwd and /etc/group directly (local accounts only, never
a directory service), the sudoers files with their includes, and every authorized_keys file sshd would
read (asked from sshd itself with `sshd -T`) plus the default locations.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: local_accounts
short_description: List login accounts, sudo rights and authorized SSH keys
options:
  non_login_shells:
    description: Shells that do not give a login; every other shell (an empty one is /bin/sh) does.
    type: list
    elements: str
  sudo_groups:
    description: Groups whose members count as sudo users even when sudoers does not name the group.
    type: list
    elements: str
  sshd_configs:
    description: sshd configuration files to ask for AuthorizedKeysFile; empty means
      /etc/ssh/sshd_config and the -f file of every running sshd.
    type: list
    elements: str
    default: []
"""

import base64
import binascii
import glob
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from ansible.module_utils.basic import AnsibleModule

DEFAULT_KEY_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")
KEY = re.compile(r"(?:^|\s)((?:ssh|ecdsa|sk)-[A-Za-z0-9@._-]+)\s+([A-Za-z0-9+/]+={0,3})(?:\s+(.*))?$")
USER_SPEC = re.compile(r"^((?:[^\s,=]+\s*,\s*)*[^\s,=]+)\s+[^=]+=")
ALIAS_KINDS = ("User_Alias", "Runas_Alias", "Host_Alias", "Cmnd_Alias", "Cmd_Alias")


def read_colon_file(path: str, fields: int) -> list[list[str]]:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.rstrip("\n").split(":")
            if len(parts) >= fields and parts[0] and not parts[0].startswith(("#", "+", "-")):
                rows.append(parts)
    return rows


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class Group:
    gid: int
    members: tuple[str, ...]


class Host:
    def __init__(self) -> None:
        self.accounts = [Account(p[0], int(p[2]), int(p[3]), p[5], p[6])
                         for p in read_colon_file("/etc/passwd", 7) if p[2].isdigit() and p[3].isdigit()]
        self.groups = {g[0]: Group(int(g[2]) if g[2].isdigit() else -1, tuple(m for m in g[3].split(",") if m))
                       for g in read_colon_file("/etc/group", 4)}
        self.warnings: list[str] = []

    def by_uid(self, uid: int) -> list[str]:
        return [a.name for a in self.accounts if a.uid == uid]

    def group_members(self, name: str = "", gid: int | None = None) -> list[str]:
        """Secondary members and accounts whose primary group it is."""
        if gid is None:
            group = self.groups.get(name)
            if group is None:
                return []
            gid = group.gid
        members: set[str] = set()
        for group in self.groups.values():
            if group.gid == gid:
                members.update(group.members)
        members.update(a.name for a in self.accounts if a.gid == gid)
        return sorted(members)


# -- login shells --------------------------------------------------------------------------------
def login_accounts(host: Host, non_login: list[str]) -> list[dict[str, object]]:
    found = []
    for account in host.accounts:
        shell = account.shell or "/bin/sh"  # passwd(5): an empty shell is /bin/sh
        if shell not in non_login or account.uid == 0:
            found.append({"name": account.name, "uid": account.uid, "shell": shell, "home": account.home})
    return found


# -- sudo ----------------------------------------------------------------------------------------
def sudoers_lines(path: str, host: Host, seen: set[str]) -> list[tuple[str, int, str]]:
    """(file, line number, logical line) of `path` and of everything it includes, in order."""
    real = os.path.realpath(path)
    if real in seen or len(seen) > 200:
        return []
    seen.add(real)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            raw = handle.read().splitlines()
    except OSError as exc:
        host.warnings.append(f"cannot read {path}: {exc.strerror}")
        return []
    lines, number, pending, start = [], 0, "", 0
    for number, text in enumerate(raw, 1):
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        lines.append((path, start, pending + text))
        pending = ""
    out: list[tuple[str, int, str]] = []
    for file, line_number, text in lines:
        stripped = text.strip()
        include = re.match(r"^[@#](include|includedir)\s+(.+)$", stripped)
        if include:
            target = include.group(2).strip().strip('"')
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(path), target)
            if include.group(1) == "include":
                out += sudoers_lines(target, host, seen)
            elif os.path.isdir(target):
                # sudo skips names ending in ~ or holding a dot (editor backups, package leftovers)
                for name in sorted(os.listdir(target)):
                    if not name.endswith("~") and "." not in name and os.path.isfile(os.path.join(target, name)):
                        out += sudoers_lines(os.path.join(target, name), host, seen)
            continue
        text = re.sub(r"(^|\s)#(?![0-9]).*$", "", text).strip()  # comments; #123 is a uid
        if text:
            out.append((file, line_number, text))
    return out


def expand_user(item: str, host: Host, aliases: dict[str, list[str]], depth: int = 0) -> list[str] | None:
    """Accounts an item of a sudoers user list names; None when it cannot be known here."""
    item = item.strip().strip('"')
    if depth > 10 or not item or item.startswith("!"):
        return []  # negations only take rights away
    if item == "ALL":
        return [a.name for a in host.accounts]
    if item.startswith("%"):
        group = item.lstrip("%").lstrip(":")
        if group.startswith("#") and group[1:].isdigit():
            return host.group_members(gid=int(group[1:]))
        return host.group_members(group)
    if item.startswith("#") and item[1:].isdigit():
        return host.by_uid(int(item[1:]))
    if item.startswith("+"):
        return None  # a netgroup: lives in NIS/LDAP, not on this host
    if item in aliases:
        names: list[str] = []
        for sub in aliases[item]:
            names += expand_user(sub, host, aliases, depth + 1) or []
        return names
    return [item]


def sudo_rights(host: Host, sudo_groups: list[str]) -> tuple[dict[str, list[str]], bool]:
    """{account: [where the right comes from]}, and whether sudo is installed (/etc/sudoers exists)."""
    rights: dict[str, list[str]] = {}

    def grant(name: str, source: str) -> None:
        rights.setdefault(name, [])
        if source not in rights[name]:
            rights[name].append(source)

    for group in sudo_groups:
        for name in host.group_members(group):
            grant(name, f"group {group}")
    installed = os.path.exists("/etc/sudoers")
    if not installed:
        return rights, False
    aliases: dict[str, list[str]] = {}
    for file, number, text in sudoers_lines("/etc/sudoers", host, set()):
        keyword = text.split(None, 1)[0]
        if keyword.startswith("Defaults") or keyword in ALIAS_KINDS[1:]:
            continue
        if keyword == "User_Alias":
            for definition in text.split(None, 1)[1].split(":"):
                alias, _, members = definition.partition("=")
                aliases[alias.strip()] = [m.strip() for m in members.split(",") if m.strip()]
            continue
        spec = USER_SPEC.match(text)
        if not spec:
            continue
        for item in spec.group(1).split(","):
            names = expand_user(item, host, aliases)
            if names is None:
                host.warnings.append(f"{file}:{number}: {item.strip()}: netgroup not expanded")
                continue
            for name in names:
                grant(name, f"{file}:{number}")
    return rights, True


# -- authorized keys -----------------------------------------------------------------------------
def sshd_configs(given: list[str]) -> list[str]:
    if given:
        return given
    configs = ["/etc/ssh/sshd_config"] if os.path.exists("/etc/ssh/sshd_config") else []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as handle:
                words = handle.read().replace(b"\0", b" ").decode(errors="replace").split()
            with open(cmdline.replace("cmdline", "comm")) as handle:
                comm = handle.read().strip()
        except OSError:
            continue
        # sshd rewrites its title ("sshd: /usr/sbin/sshd -D -f FILE [listener] ..."): read -f from either form
        if comm == "sshd" and "-f" in words[:-1]:
            config = words[words.index("-f") + 1]
            if config not in configs and os.path.isfile(config):
                configs.append(config)
    return configs


def sshd_settings(configs: list[str], host: Host) -> tuple[list[str], list[str]]:
    """(AuthorizedKeysFile patterns, AuthorizedKeysCommands) of every config, by asking `sshd -T`."""
    patterns: list[str] = list(DEFAULT_KEY_FILES)  # dormant keys there would work after a config change
    commands: list[str] = []
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    for config in configs:
        settings = ""
        if sshd:
            done = subprocess.run([sshd, "-T", "-f", config], capture_output=True, text=True, timeout=60)
            if done.returncode == 0:
                settings = done.stdout
            else:
                host.warnings.append(f"sshd -T -f {config} failed: {done.stderr.strip()[:200]}: read the file instead")
        if not settings:
            try:
                with open(config, encoding="utf-8", errors="replace") as handle:
                    settings = handle.read()
            except OSError as exc:
                host.warnings.append(f"cannot read {config}: {exc.strerror}")
        for line in settings.splitlines():
            key, _, value = line.strip().partition(" ")
            if key.lower() == "authorizedkeysfile":
                patterns += [p for p in value.split() if p.lower() != "none" and p not in patterns]
            elif key.lower() == "authorizedkeyscommand" and value.strip().lower() != "none":
                commands.append(f"{config}: {value.strip()}")
    return patterns, commands


def expand_pattern(pattern: str, account: Account) -> str:
    tokens = {"%%": "%", "%h": account.home, "%u": account.name, "%U": str(account.uid)}
    path = re.sub(r"%[%hUu]", lambda m: tokens[m.group(0)], pattern)
    return path if path.startswith("/") else os.path.join(account.home, path)


def parse_keys(path: str) -> tuple[list[dict[str, object]], list[str]]:
    keys, problems = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            found = KEY.search(text)
            try:
                blob = base64.b64decode(found.group(2), validate=True) if found else b""
            except (binascii.Error, ValueError):
                blob = b""
            if found is None or not blob:
                problems.append(f"{path}:{number}: not a public key line")
                continue
            digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
            keys.append({
                "file": path, "line": number, "type": found.group(1), "fingerprint": f"SHA256:{digest}",
                "comment": (found.group(3) or "").strip(), "options": text[:found.start(1)].strip(),
                "key": f"{found.group(1)} {found.group(2)}",
            })
    return keys, problems


def authorized_keys(host: Host, patterns: list[str]) -> list[dict[str, object]]:
    """Every key of every authorized_keys file, with the accounts that file authorizes."""
    files: dict[str, list[str]] = {}
    for pattern in patterns:
        shared = pattern.startswith("/") and not re.search(r"%[hUu]", pattern)
        for account in host.accounts:
            if not shared and not account.home.startswith("/"):
                continue
            path = os.path.normpath(expand_pattern(pattern, account))
            # a file without a per-account token authorizes its keys for every account
            files.setdefault(path, []).append("*" if shared else account.name)
    keys = []
    for path, accounts in sorted(files.items()):
        if not os.path.isfile(path):
            continue
        try:
            found, problems = parse_keys(path)
        except OSError as exc:
            host.warnings.append(f"cannot read {path}: {exc.strerror}")
            continue
        host.warnings += problems
        names = ["*"] if "*" in accounts else sorted(set(accounts))
        for key in found:
            key["accounts"] = names
            keys.append(key)
    return keys


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "non_login_shells": {"type": "list", "elements": "str", "required": True},
            "sudo_groups": {"type": "list", "elements": "str", "required": True},
            "sshd_configs": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        host = Host()
        logins = login_accounts(host, module.params["non_login_shells"])
        rights, sudo_installed = sudo_rights(host, module.params["sudo_groups"])
        uid0 = {a.name for a in host.accounts if a.uid == 0}
        configs = sshd_configs(module.params["sshd_configs"])
        patterns, commands = sshd_settings(configs, host)
        keys = authorized_keys(host, patterns)
    except (OSError, subprocess.SubprocessError) as exc:
        module.fail_json(msg=f"cannot read the accounts: {exc}")
    module.exit_json(
        changed=False,
        login_accounts=logins,
        # uid 0 is root already: its sudo rule says nothing new
        sudo_accounts=[{"name": n, "via": v} for n, v in sorted(rights.items()) if n not in uid0],
        sudo_installed=sudo_installed,
        authorized_keys=keys,
        sshd_configs=configs,
        authorized_keys_files=patterns,
        authorized_keys_commands=commands,
        warnings_found=host.warnings,
    )


if __name__ == "__main__":
    main()
