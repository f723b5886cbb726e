#!/usr/bin/python3
"""Ansible module: whether each named service is running, stopped or missing on this host.

Read-only (supports check mode). Asks the service manager the host runs: systemd (`systemctl show`),
else the init script's own `status` action (LSB: exit 0 running, 4 unknown service), through
`service` when installed. Ansible's service_facts reads `service --status-all`, which misreads init
scripts whose status is not LSB-worded; asking each script directly is what `service NAME status` does.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: service_states
short_description: Report whether services are running, stopped or missing
options:
  names:
    description: Service names (systemd units without a suffix are .service units).
    type: list
    elements: str
    required: true
"""

import os

from ansible.module_utils.basic import AnsibleModule

RUNNING_STATES = ("active", "reloading", "activating")


def systemd_state(module: AnsibleModule, name: str) -> str:
    unit = name if "." in name else f"{name}.service"
    _, out, _ = module.run_command(["systemctl", "show", "-p", "LoadState", "-p", "ActiveState", unit],
                                   environ_update={"LC_ALL": "C"})
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if props.get("LoadState") in (None, "not-found"):
        return "missing"
    return "running" if props.get("ActiveState") in RUNNING_STATES else "stopped"


def init_script_state(module: AnsibleModule, name: str) -> str:
    script = os.path.join("/etc/init.d", name)
    if not os.access(script, os.X_OK):
        return "missing"
    service = module.get_bin_path("service")
    argv = [service, name, "status"] if service else [script, "status"]
    rc, _, _ = module.run_command(argv, environ_update={"LC_ALL": "C"})
    if rc == 0:
        return "running"
    return "missing" if rc == 4 else "stopped"


def main() -> None:
    module = AnsibleModule(argument_spec={"names": {"type": "list", "elements": "str", "required": True}},
                           supports_check_mode=True)
    systemd = os.path.isdir("/run/systemd/system")
    probe = systemd_state if systemd else init_script_state
    states = {name: probe(module, name) for name in module.params["names"]}
    module.exit_json(changed=False, manager="systemd" if systemd else "init scripts", states=states)


if __name__ == "__main__":
    main()
