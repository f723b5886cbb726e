"""How many hosts a run would target: ansible-inventory on the chosen inventory, narrowed by the run's
--limit pattern, with the same ansible.cfg the run uses (so inventory plugins behave alike)."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from runner.errors import InvalidError
from runner.execution.ansiblebin import ansible_bin


def targeted_hosts(inventory: Path, limit: str, ansible_cfg: str, timeout: float = 120) -> list[str]:
    """The hosts `limit` selects in `inventory`, sorted; InvalidError when Ansible cannot say."""
    with tempfile.TemporaryDirectory(prefix="runbook-hosts-") as tmp:
        cfg = Path(tmp) / "ansible.cfg"
        cfg.write_text(ansible_cfg, encoding="utf-8")
        env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": tmp}
        try:
            done = subprocess.run([ansible_bin("ansible-inventory"), "-i", str(inventory), "--list", "--limit", limit],
                                  capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise InvalidError(f"cannot count the hosts of {inventory}: ansible-inventory took over {timeout:.0f}s") from None
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InvalidError(f"cannot count the hosts of {inventory} for {limit!r}: {detail}")
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise InvalidError(f"cannot count the hosts of {inventory}: ansible-inventory printed no JSON") from None
    hosts = set(data.get("_meta", {}).get("hostvars", {}))
    for name, group in data.items():
        if name != "_meta" and isinstance(group, dict):
            hosts.update(group.get("hosts", []))
    return sorted(hosts)
