"""Tiny apt repositories for patch-rollout on the test fleet: the ones its tests build (dpkg-deb packages
in two flat repositories, `main` and `security`), and the apt settings that make fleet hosts read them.

    python tests/aptrepo.py up --fleet fleet      # build them, point every fleet host at them, install
                                                  # runbook-demo 1.0 and runbook-sec 1.0 (2.0, 1.1 wait)
    python tests/aptrepo.py down --fleet fleet    # hosts back to their own apt, test packages purged

The repositories are `file:` sources in a new /var/tmp/runbook-fleet-apt-repo-* folder (named in
FLEET/apt-repo.path): fleet hosts see this machine's root filesystem (not its /tmp, nor other mounts such
as a separate /work) through their overlay, so apt on a host reads them without any network. A new
folder each time, because an overlay may keep seeing a lower folder that was removed and made again. On the hosts only, apt reads these
sources and keeps its lists apart; the machine's own apt state is untouched.
Stdlib only, like tests/fleet.py (make fleet-repo runs it beside the fleet).
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from email.utils import formatdate
from pathlib import Path
from typing import Any

APT_CONF = "/etc/apt/apt.conf.d/00runbook-test"
APT_DIR = "/var/lib/runbook-test-apt"
TEST_PACKAGES = ("runbook-demo", "runbook-sec", "runbook-broken")
BROKEN_POSTINST = "#!/bin/sh\necho 'runbook-broken: postinst fails on purpose' >&2\nexit 1\n"


def build_deb(repo: Path, name: str, version: str, postinst: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pkg"
        (root / "DEBIAN").mkdir(parents=True)
        doc = root / "usr/share/doc" / name
        doc.mkdir(parents=True)
        (doc / "VERSION").write_text(f"{version}\n")
        (root / "DEBIAN/control").write_text(
            f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: runbook tests <ops@example.com>\n"
            f"Section: misc\nPriority: optional\nDescription: {name}, a package of the runbook tests\n")
        if postinst:
            (root / "DEBIAN/postinst").write_text(postinst)
            (root / "DEBIAN/postinst").chmod(0o755)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root),
                        str(repo / f"{name}_{version}_all.deb")], check=True, capture_output=True)


def index(repo: Path, suite: str) -> None:
    """A flat repository's Packages and Release, as dpkg-scanpackages and apt-ftparchive would write."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
        data = deb.read_bytes()
        stanzas.append(f"{control.strip()}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Release").write_text(
        f"Origin: runbook-test\nLabel: runbook-test\nSuite: {suite}\nCodename: {suite}\n"
        f"Date: {formatdate(usegmt=True)}\nArchitectures: all\n"
        f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")


def build_repos(root: Path) -> Path:
    """`main` (runbook-demo 1.0 and 2.0, runbook-broken 1.0 and a 2.0 whose postinst fails) and
    `security` (runbook-sec 1.0 and 1.1, its suite stable-security) under `root`."""
    main, security = root / "main", root / "security"
    for repo in (main, security):
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
    root.chmod(0o755)
    for version in ("1.0", "2.0"):
        build_deb(main, "runbook-demo", version)
    build_deb(main, "runbook-broken", "1.0")
    build_deb(main, "runbook-broken", "2.0", BROKEN_POSTINST)
    for version in ("1.0", "1.1"):
        build_deb(security, "runbook-sec", version)
    index(main, "stable")
    index(security, "stable-security")
    return root


def use_repos_script(root: Path) -> str:
    """Shell for a fleet host: apt reads only the repositories under `root`, then updates its lists."""
    conf = (f'Dir::Etc::SourceList "{APT_DIR}/sources.list";\\n'
            f'Dir::Etc::SourceParts "{APT_DIR}/sources.list.d";\\n'
            f'Dir::State::Lists "{APT_DIR}/lists";\\n')
    sources = (f"deb [trusted=yes] file:{root}/main ./\\n"
               f"deb [trusted=yes] file:{root}/security ./\\n")
    return f"""set -e
        mkdir -p {APT_DIR}/sources.list.d {APT_DIR}/lists/partial
        printf '{sources}' > {APT_DIR}/sources.list
        printf '{conf}' > {APT_CONF}
        apt-get update -q"""


def forget_repos_script(extra: str = "") -> str:
    return f"dpkg --purge {' '.join(TEST_PACKAGES)}; rm -rf {APT_CONF} {APT_DIR} {extra}".rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aptrepo.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--fleet", type=Path, required=True, help="the fleet's folder (make fleet: fleet)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import fleet as fleet_module

    try:
        fleet: Any = fleet_module.load_fleet(args.fleet)
    except fleet_module.FleetError as error:
        print(f"aptrepo: {error} (start it with: make fleet)", file=sys.stderr)
        return 1
    record = args.fleet / "apt-repo.path"
    if args.command == "up":
        if record.is_file():  # an earlier `up`: its folder goes, the hosts are pointed at the new one
            shutil.rmtree(record.read_text().strip(), ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix="runbook-fleet-apt-repo-", dir="/var/tmp"))
        record.write_text(f"{root}\n")
        build_repos(root)
        # The hosts see the root filesystem only: say so plainly rather than let apt report a missing file.
        script = f"test -f {root}/main/Packages || {{ echo '{root} is not visible on this host' >&2; exit 1; }}; " \
                 + use_repos_script(root) + \
                 "\n        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades " \
                 "runbook-demo=1.0 runbook-sec=1.0 >/dev/null"  # something for patch-rollout to update
    else:
        root = Path(record.read_text().strip()) if record.is_file() else None
        script = forget_repos_script()
    failed = 0
    for host in fleet.hosts:
        done = subprocess.run(fleet.ssh_argv(host, script), capture_output=True, text=True, timeout=300)
        failed += done.returncode != 0 and args.command == "up"
        print(f"{host.name}: {'ok' if done.returncode == 0 else done.stderr.strip()[-300:]}", file=sys.stderr)
    if args.command == "up":
        print(f"fleet hosts read apt packages from {root} (main, security): try\n"
              f"  runbook run patch-rollout -i {fleet.inventory_path} --check")
    elif root is not None:
        shutil.rmtree(root, ignore_errors=True)
        record.unlink()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
