"""The shipped Ansible defaults, tuned for speed, merged with runbook.toml's [ansible_cfg] tables."""
from __future__ import annotations

import configparser
import io
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
        },
        # [connection] applies to every connection plugin (local too: 19 processes per run instead of 51
        # on a 4-task playbook); [ssh_connection] keeps older ssh plugin versions in step.
        "connection": {"pipelining": "True"},
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
