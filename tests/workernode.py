"""Turn a fleet host into an execution node: ansible-runner and ansible-core installed into a venv in
the host's own overlay (copied from this interpreter's installed distributions, offline), then the
checkout and the controller's state hidden from it by a tmpfs mounted in the host's own mount
namespace (a checkout under /tmp is hidden already: each host has its own /tmp). The node needs
neither the checkout nor `runbook`."""
from __future__ import annotations

import re
import shlex
import shutil
import sysconfig
import tempfile
from importlib.metadata import Distribution, distribution
from pathlib import Path
from typing import Any, Callable

NODE_VENV = "/opt/runbook-node"
CHECKOUT = shlex.quote(str(Path(__file__).resolve().parent.parent))
NODE_PYTHON = "/usr/bin/python3"  # the host's own Python (the same minor as the controller's here)
SCRIPTS = {
    "ansible-runner": "ansible_runner.__main__",
    "ansible-playbook": "ansible.cli.playbook",
    "ansible": "ansible.cli.adhoc",
    "ansible-config": "ansible.cli.config",
}


def closure(names: list[str]) -> list[Distribution]:
    """The distributions `names` need, recursively (markers evaluated for this interpreter)."""
    from packaging.requirements import Requirement

    seen: dict[str, Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen[key] = dist = distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def top_levels(dists: list[Distribution]) -> list[str]:
    """The site-packages entries (packages, modules, .dist-info folders) the distributions installed."""
    site = Path(sysconfig.get_paths()["purelib"])
    entries: set[str] = set()
    for dist in dists:
        for file in dist.files or []:
            first = Path(str(file)).parts[0]
            if first not in ("..", "__pycache__") and (site / first).exists():
                entries.add(first)
    return sorted(entries)


def install_script(dists: list[Distribution], site: str) -> str:
    """The shell commands, run as root on the node, that install the venv (copying the distributions
    from `site`, a folder the node can see) and hide the checkout."""
    target = f"{NODE_VENV}/lib/python3.11/site-packages"
    copies = " ".join(shlex.quote(f"{site}/{entry}") for entry in top_levels(dists))
    lines = [
        "set -e",
        f"{NODE_PYTHON} -m venv --without-pip {NODE_VENV}",
        f"cp -a {copies} {target}/",
    ]
    for script, module in SCRIPTS.items():
        body = f"#!{NODE_VENV}/bin/python\nimport sys\nfrom {module} import main\nsys.exit(main())\n"
        lines.append(f"printf %s {shlex.quote(body)} > {NODE_VENV}/bin/{script}")
        lines.append(f"chmod 755 {NODE_VENV}/bin/{script}")
    # From here on, nothing of the checkout (nor the controller's venv) is visible on the node, and
    # its home and /var/tmp start empty (they are where Ansible writes), so a search can read them whole.
    lines += ["if [ -d /work ]; then mount -t tmpfs -o mode=0755 hidden /work; fi",
              f"if [ -d {CHECKOUT} ]; then mount -t tmpfs -o mode=0755 hidden {CHECKOUT}; fi",
              "mount -t tmpfs -o mode=0700 home /root",
              "mount -t tmpfs -o mode=1777 vartmp /var/tmp", "mkdir -m 0700 /root/.ssh"]
    return "\n".join(lines)


UNDO = f"umount {CHECKOUT} /work /root /var/tmp; rm -rf {NODE_VENV}"


def make_node(run_on: Callable[[str], Any]) -> str:
    """Install the node through `run_on(shell command)`; returns the path of its ansible-runner.

    Each fleet host has its own tmpfs on /tmp, so a checkout (and its venv) under /tmp is not visible
    there: the distributions are staged in /var/tmp, which the hosts see through their overlay."""
    dists = closure(["ansible-runner", "ansible-core"])
    site = Path(sysconfig.get_paths()["purelib"])
    staging = Path(tempfile.mkdtemp(prefix="runbook-node-", dir="/var/tmp"))
    try:
        for entry in top_levels(dists):
            source = site / entry
            if source.is_dir():
                shutil.copytree(source, staging / entry, symlinks=True)
            else:
                shutil.copy2(source, staging / entry)
        run_on(install_script(dists, str(staging)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"{NODE_VENV}/bin/ansible-runner"
