#!/usr/bin/python3
"""Ansible module: plan, apply and roll back package updates with apt or dnf, at exact versions.

The patch-rollout runbook records the plan (every package that would change, with its version before
and the candidate version) on each host, applies exactly that plan, and can return each package to its
recorded version. apt plans come from `apt-get -s` (a simulation: the same resolver, nothing changed),
so dependencies pulled in by an update are part of the plan too.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: patch_packages
short_description: Plan, apply and roll back package updates at exact versions (apt, dnf)
options:
  state:
    description:
      - C(refresh) updates the package lists (not in check mode).
      - C(plan) lists the pending updates selected by I(mode) and I(packages); read-only.
      - C(upgrade) installs the versions in I(versions) (check mode simulates).
      - C(rollback) returns the packages in I(versions) to those versions, downgrading (check mode simulates).
      - C(installed) reports the installed version of each name in I(names).
    choices: [refresh, plan, upgrade, rollback, installed]
    required: true
  pkg_mgr:
    description: The host's package manager (the ansible_pkg_mgr fact).
    choices: [apt, dnf, dnf5]
    required: true
  mode:
    description: C(security) keeps only updates from a security origin (apt, see I(security_pattern);
      dnf, its security advisories); C(all) keeps every pending update.
    choices: [all, security]
    default: all
  packages:
    description: Shell-style patterns (fnmatch) of package names; when given, only matching updates are planned.
    type: list
    elements: str
    default: []
  security_pattern:
    description: apt only; a regular expression matched against the origin apt shows for a candidate
      version (e.g. "Debian-Security:12/stable-security").
    default: "(?i)security"
  versions:
    description: name -> version; the target versions (upgrade) or the versions to return to (rollback).
      A null version (a package the update newly installed) is left alone.
    type: dict
    default: {}
  names:
    description: Package names to report (installed).
    type: list
    elements: str
    default: []
  lock_timeout:
    description: Seconds to wait for the package manager's lock held by another process (apt).
    type: int
    default: 300
"""

import fnmatch
import re

from ansible.module_utils.basic import AnsibleModule

# "Inst name [old] (new origin [arch])"; new packages have no [old]
APT_INST = re.compile(r"^Inst (?P<name>\S+)(?: \[(?P<old>[^\]]*)\])? \((?P<new>\S+)(?P<origin>[^\[]*)\[[^\]]*\]\)")
APT_REMOVE = re.compile(r"^Remv (?P<name>\S+)")
APT_ENV = {"LC_ALL": "C", "LANG": "C", "DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none",
           "NEEDRESTART_MODE": "a", "NEEDRESTART_SUSPEND": "1"}
DPKG_KEEP_CONFIG = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
STATUS_WORDS = {"n": "not installed", "c": "config files only", "H": "half installed", "U": "unpacked",
                "F": "half configured", "W": "awaiting triggers", "t": "triggers pending", "i": "installed"}


class PackageError(Exception):
    """A package manager command failed; the message says which and why."""


class Apt:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.lock = ["-o", f"DPkg::Lock::Timeout={module.params['lock_timeout']}"]

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        return self.module.run_command(argv, environ_update=APT_ENV)

    def refresh(self) -> None:
        rc, out, err = self.run(["apt-get", "update", "-q", *self.lock])
        # apt-get update exits 0 even when a source failed; its "E:" / "W: Failed" lines say so.
        problems = [line for line in (out + "\n" + err).splitlines() if line.startswith(("E:", "Err:", "W: Failed"))]
        if rc != 0 or problems:
            raise PackageError(f"apt-get update failed (rc {rc}): {'; '.join(problems) or err.strip()}")

    def simulate(self, argv: list[str]) -> tuple[dict[str, dict[str, object]], list[str]]:
        """Changes apt would make: ({name: {installed, candidate, origin}}, [removed names])."""
        rc, out, err = self.run(["apt-get", "-s", "-q", "-o", "Debug::NoLocking=true", *argv])
        if rc != 0:
            raise PackageError(f"apt-get -s {' '.join(argv)} failed (rc {rc}): {summary(out, err)}")
        changes: dict[str, dict[str, object]] = {}
        removed = []
        for line in out.splitlines():
            inst = APT_INST.match(line)
            if inst:
                changes[inst["name"]] = {"installed": inst["old"], "candidate": inst["new"],
                                         "origin": inst["origin"].strip()}
            elif APT_REMOVE.match(line):
                removed.append(line.split()[1])
        return changes, removed

    def plan(self, mode: str, patterns: list[str], security: str) -> dict[str, object]:
        pending, _ = self.simulate(["--with-new-pkgs", "upgrade"])
        upgradable = {n: c for n, c in pending.items() if c["installed"] is not None}
        for change in upgradable.values():
            change["security"] = bool(re.search(security, str(change["origin"])))
        chosen = {n: c for n, c in upgradable.items()
                  if (mode == "all" or c["security"]) and matches(n, patterns)}
        result: dict[str, object] = {"pending": len(upgradable), "removals": [], "packages": {}}
        if not chosen:
            return result
        # The chosen updates, resolved again: dependencies they pull in (even new packages) are part of the plan.
        targets = [f"{n}={c['candidate']}" for n, c in chosen.items()]
        changes, removed = self.simulate(["--only-upgrade", "install", *targets])
        for change in changes.values():
            change["security"] = bool(re.search(security, str(change["origin"])))
        result["packages"], result["removals"] = changes, removed
        return result

    def installed(self, names: list[str]) -> dict[str, dict[str, str | None]]:
        found: dict[str, dict[str, str | None]] = {n: {"version": None, "status": "not installed"} for n in names}
        if not names:
            return found
        _, out, _ = self.module.run_command(
            ["dpkg-query", "-W", "-f", "${binary:Package}\t${Package}\t${Version}\t${db:Status-Abbrev}\n", *names],
            environ_update={"LC_ALL": "C"})
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != 4:
                continue
            full, short, version, status = parts
            name = full if full in found else short
            if name in found and status[1:2] not in ("n", "c", ""):
                found[name] = {"version": version, "status": STATUS_WORDS.get(status[1:2], status.strip())}
        return found

    def install(self, versions: dict[str, str], downgrade: bool) -> tuple[bool, str]:
        """Install exactly these versions; (changed, output). Check mode simulates."""
        targets = [f"{n}={v}" for n, v in sorted(versions.items())]
        flags = ["--allow-downgrades"] if downgrade else ["--only-upgrade"]
        if self.module.check_mode:
            changes, _ = self.simulate([*flags, "install", *targets])
            return bool(changes), ""
        rc, out, err = self.run(["apt-get", "-y", "-q", *self.lock, *DPKG_KEEP_CONFIG, *flags, "install", *targets])
        if rc != 0:
            raise PackageError(f"apt-get install {' '.join(targets)} failed (rc {rc}): {summary(out, err)}")
        return True, out

    def audit(self) -> list[str]:
        """Packages dpkg does not consider fully installed (`dpkg --audit` lists them indented)."""
        _, out, _ = self.module.run_command(["dpkg", "--audit"], environ_update={"LC_ALL": "C"})
        return sorted({line.split()[0] for line in out.splitlines() if line.startswith(" ") and line.strip()})


class Dnf:
    """dnf (and dnf5, which installs a `dnf` command). Packages are keyed by name.arch, versions are
    EPOCH:VERSION-RELEASE. The plan covers the updated packages; dnf does not simulate, so new
    dependencies an update pulls in are not recorded."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        return self.module.run_command(["dnf", "-q", "-y", *argv], environ_update={"LC_ALL": "C"})

    def refresh(self) -> None:
        rc, out, err = self.run(["makecache"])
        if rc != 0:
            raise PackageError(f"dnf makecache failed (rc {rc}): {summary(out, err)}")

    def plan(self, mode: str, patterns: list[str], security: str) -> dict[str, object]:
        argv = ["check-update"] + (["--security"] if mode == "security" else [])
        rc, out, err = self.run(argv)
        if rc not in (0, 100):
            raise PackageError(f"dnf {' '.join(argv)} failed (rc {rc}): {summary(out, err)}")
        pending = parse_check_update(out)
        chosen = {n: v for n, v in pending.items() if matches(n.rsplit(".", 1)[0], patterns)}
        now = self.installed(list(chosen))
        packages = {n: {"installed": now[n]["version"], "candidate": v, "origin": "", "security": mode == "security"}
                    for n, v in chosen.items()}
        return {"pending": len(pending), "removals": [], "packages": packages}

    def installed(self, names: list[str]) -> dict[str, dict[str, str | None]]:
        found: dict[str, dict[str, str | None]] = {n: {"version": None, "status": "not installed"} for n in names}
        if not names:
            return found
        _, out, _ = self.module.run_command(
            ["rpm", "-q", "--qf", "%{NAME}.%{ARCH} %{EPOCHNUM}:%{VERSION}-%{RELEASE}\n", *names],
            environ_update={"LC_ALL": "C"})
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in found:
                found[parts[0]] = {"version": parts[1], "status": "installed"}
        return found

    def install(self, versions: dict[str, str], downgrade: bool) -> tuple[bool, str]:
        now = self.installed(list(versions))
        todo = {n: v for n, v in versions.items() if now[n]["version"] != v}
        if not todo or self.module.check_mode:
            return bool(todo), ""
        targets = [nevra(n, v) for n, v in sorted(todo.items())]
        verb = "downgrade" if downgrade else "upgrade"
        rc, out, err = self.run([verb, *targets])
        if rc != 0:
            raise PackageError(f"dnf {verb} {' '.join(targets)} failed (rc {rc}): {summary(out, err)}")
        return True, out

    def audit(self) -> list[str]:
        return []


def parse_check_update(out: str) -> dict[str, str]:
    """`dnf check-update` lines "name.arch  [epoch:]version-release  repo" -> {name.arch: E:V-R}."""
    pending: dict[str, str] = {}
    words: list[str] = []
    for line in out.splitlines():
        if line.startswith(("Obsoleting", "Security:", "Last metadata")):
            if line.startswith("Obsoleting"):
                break
            continue
        words += line.split()
        # A long name wraps onto the next line: collect words until a full row of three.
        while len(words) >= 3:
            name, version = words[0], words[1]
            words = words[3:]
            if "." in name:
                pending[name] = version if ":" in version else f"0:{version}"
    return pending


def nevra(name_arch: str, version: str) -> str:
    name, _, arch = name_arch.rpartition(".")
    return f"{name}-{version}.{arch}"


def matches(name: str, patterns: list[str]) -> bool:
    bare = name.split(":", 1)[0]
    return not patterns or any(fnmatch.fnmatchcase(bare, p) for p in patterns)


def summary(out: str, err: str) -> str:
    """The lines that say what went wrong, on one line: dpkg's error with its reason, apt's E: lines."""
    lines = [line.strip() for line in (out + "\n" + err).splitlines() if line.strip()]
    wanted = []
    for index, line in enumerate(lines):
        if line.startswith("dpkg: error") and index + 1 < len(lines):
            wanted.append(f"{line} {lines[index + 1]}")  # dpkg gives the reason on the next line
        elif line.startswith(("E:", "Error:", "Problem:", "dpkg:")) and "returned an error code" not in line:
            wanted.append(line)
    chosen = list(dict.fromkeys(wanted)) or lines[-3:]
    return "; ".join(chosen)[:1500]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "required": True,
                      "choices": ["refresh", "plan", "upgrade", "rollback", "installed"]},
            "pkg_mgr": {"type": "str", "required": True, "choices": ["apt", "dnf", "dnf5"]},
            "mode": {"type": "str", "default": "all", "choices": ["all", "security"]},
            "packages": {"type": "list", "elements": "str", "default": []},
            "security_pattern": {"type": "str", "default": "(?i)security"},
            "versions": {"type": "dict", "default": {}},
            "names": {"type": "list", "elements": "str", "default": []},
            "lock_timeout": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    )
    params = module.params
    manager = Apt(module) if params["pkg_mgr"] == "apt" else Dnf(module)
    # A package manager failure is reported, not raised (`error`): the playbook fails the host once,
    # with its own name and everything it found, after the other checks of the batch.
    try:
        module.exit_json(**run(module, manager))
    except PackageError as error:
        names = list(params["versions"]) or list(params["names"])
        attempted = params["state"] in ("upgrade", "rollback") and not module.check_mode
        module.exit_json(changed=attempted, error=str(error), installed=manager.installed(names), audit=manager.audit())


def run(module: AnsibleModule, manager: Apt | Dnf) -> dict[str, object]:
    params = module.params
    state = params["state"]
    if state == "refresh":
        if module.check_mode:
            return {"changed": False, "msg": "package lists not refreshed in check mode"}
        manager.refresh()
        return {"changed": False, "msg": "package lists refreshed"}
    if state == "plan":
        return {"changed": False, **manager.plan(params["mode"], params["packages"], params["security_pattern"])}
    if state == "installed":
        return {"changed": False, "installed": manager.installed(params["names"]), "audit": manager.audit()}
    versions = {str(n): str(v) for n, v in params["versions"].items() if v is not None}
    before = manager.installed(list(versions))
    # A package needs work when its version differs or it is not fully installed (a failed postinst).
    # An upgrade never installs a package that is absent now: a new dependency comes with its user.
    todo = {n: v for n, v in versions.items()
            if (before[n]["version"] != v or before[n]["status"] != "installed")
            and (state == "rollback" or before[n]["version"] is not None)}
    changed, output = manager.install(todo, downgrade=state == "rollback") if todo else (False, "")
    after = manager.installed(list(versions))
    return {"changed": changed, "installed": after, "audit": manager.audit(),
            "changes": {n: {"from": before[n]["version"], "to": v} for n, v in todo.items()},
            "stdout_lines": output.splitlines()[-50:]}

if __name__ == "__main__":
    main()
