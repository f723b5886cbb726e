"""Ansible's remote temp folder, for hosts on the local connection, inside the step's private scratch
folder (RUNBOOK_REMOTE_TMP, set by runbook).

Without pipelining (Ansible's default on the local connection) every task writes its module and its
arguments, a secret among them, as `AnsiballZ_*.py` under `remote_tmp`: `~/.ansible/tmp` on this very
machine. A playbook killed mid-task (kill -9, a timeout, a cancel) leaves it there. Inside the scratch
folder it goes with the folder: when the step ends, or when the dead run is reaped. Hosts reached over
SSH keep their own `remote_tmp`: that path would mean nothing on them.

Loaded by ansible-playbook (not by runbook), for every host, without being listed in vars_enabled."""
from __future__ import annotations

import os
from typing import Any

from ansible.inventory.helpers import sort_groups
from ansible.plugins.vars import BaseVarsPlugin

_FOLDER = "RUNBOOK_REMOTE_TMP"
_LOCAL = ("local", "ansible.builtin.local")


class VarsModule(BaseVarsPlugin):  # type: ignore[misc]
    REQUIRES_ENABLED = False

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        folder = os.environ.get(_FOLDER)
        if not folder:
            return {}
        entities = entities if isinstance(entities, list) else [entities]
        hosts = [e for e in entities if hasattr(e, "get_groups")]
        return {"ansible_remote_tmp": folder} if any(_connection(h) in _LOCAL for h in hosts) else {}


def _connection(host: Any) -> Any:
    """The host's `ansible_connection` as its inventory gives it: its own, else its groups' (the deepest
    wins, as Ansible merges them)."""
    if "ansible_connection" in host.vars:
        return host.vars["ansible_connection"]
    found = None
    for group in sort_groups(host.get_groups()):
        found = group.vars.get("ansible_connection", found)
    return found
