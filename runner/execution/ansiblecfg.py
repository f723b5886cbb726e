"""The shipped Ansible defaults, tuned for speed, merged with runbook.toml's [ansible_cfg] tables."""
from __future__ import annotations

import configparser
import io
import sysconfig
from pathlib import Path
from typing import Any, Mapping

# Ansible starts min(forks, hosts in the batch) workers, so a generous cap sizes forks to the host count.
DEFAULT_FORKS = 25


def settings(workspace_root: Path, forks: int, overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    cfg: dict[str, dict[str, str]] = {
        "defaults": {
            "forks": str(forks),
            "roles_path": str(workspace_root / "roles"),
            "interpreter_python": "auto_silent",
            "retry_files_enabled": "False",
            "gathering": "smart",
            "internal_poll_interval": "0.001",
            "timeout": "10",
            "nocows": "1",
            # Looking for collections along all of sys.path costs ~40 ms at every start; the places
            # collections really live are named instead: the workspace, the user's and the system's
            # folders, and the site-packages where `pip install ansible` puts them.
            "collections_scan_sys_path": "False",
            "collections_path": ":".join([str(workspace_root / "collections"), "~/.ansible/collections",
                                          "/usr/share/ansible/collections", sysconfig.get_paths()["purelib"]]),
        },
        # Ansible tries `auto` before `yaml`: `auto` parses a YAML inventory whole only to find no
        # `plugin:` key, then `yaml` parses it again. `yaml` first parses it once and turns a plugin's
        # config file (it has `plugin:`) over to `auto` as before: 0.18 s less for 2,000 hosts.
        "inventory": {"enable_plugins": "host_list, script, yaml, auto, ini, toml"},
        # Pipelining only for SSH, where it saves round trips: on the local connection it measured
        # slower (1.29 s against 1.20 s for a 4-task playbook), so [connection] keeps Ansible's default.
        "ssh_connection": {
            "pipelining": "True",
            "ssh_args": "-C -o ControlMaster=auto -o ControlPersist=60s",
        },
    }
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update({k: _text(v) for k, v in values.items()})
    return cfg


def render(cfg: Mapping[str, Mapping[str, str]]) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    for section, values in cfg.items():
        parser[section] = dict(values)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
