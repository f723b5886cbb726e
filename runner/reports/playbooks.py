"""Reading playbooks for people: the task names `runbook show` and the manual list for each step."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SECTIONS = ("pre_tasks", "roles", "tasks", "post_tasks")
_INCLUDES = ("include_tasks", "import_tasks", "ansible.builtin.include_tasks", "ansible.builtin.import_tasks")
_ROLES = ("include_role", "import_role", "ansible.builtin.include_role", "ansible.builtin.import_role")


def _read(path: Path) -> Any:
    """The YAML in `path`; any failure (unreadable, not a file, not YAML, a value PyYAML cannot build) raises
    ValueError. Anchors are allowed here, as Ansible allows them: only text values are ever shown."""
    from runner.definition.yamlfile import read_limited

    try:
        return yaml.load(read_limited(path).decode("utf-8"), Loader=_Loader)
    except Exception as exc:  # noqa: BLE001 - a broken playbook is shown as such, never a crash
        raise ValueError(exc.__class__.__name__) from None


def task_names(playbook: Path, roles_dir: Path, depth: int = 0) -> list[str]:
    """Task names in run order; roles and static includes expanded, blocks flattened."""
    if depth > 4:
        return [f"(playbooks from {playbook.name})"]
    try:
        plays = _read(playbook) or []
    except ValueError as exc:
        return [f"(cannot read {playbook.name}: {exc})"]
    names: list[str] = []
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        if "import_playbook" in play or "ansible.builtin.import_playbook" in play:
            target = play.get("import_playbook") or play.get("ansible.builtin.import_playbook")
            names += task_names(playbook.parent / str(target), roles_dir, depth + 1)
            continue
        if isinstance(play.get("name"), str):
            names.append(f"play: {play['name']}")
        for section in _SECTIONS:
            items = play.get(section)
            for item in items if isinstance(items, list) else []:
                if section == "roles":
                    role = item.get("role") or item.get("name") if isinstance(item, dict) else item
                    names += _role_tasks(str(role), roles_dir, 0)
                else:
                    names += _tasks(item, playbook.parent, roles_dir, 0)
    return names


def _tasks(task: Any, base: Path, roles_dir: Path, depth: int) -> list[str]:
    if not isinstance(task, dict) or depth > 4:
        return []
    if "block" in task:
        out = []
        for key in ("block", "rescue", "always"):
            subs = task.get(key)
            for sub in subs if isinstance(subs, list) else []:
                out += _tasks(sub, base, roles_dir, depth + 1)
        return out
    for key in _ROLES:
        if key in task and isinstance(task[key], dict):
            spec = task[key]
            return _role_tasks(str(spec.get("name")), roles_dir, depth + 1, str(spec.get("tasks_from") or "main"))
    for key in _INCLUDES:
        if key in task and isinstance(task[key], str) and "{{" not in task[key]:
            return _file_tasks(base / task[key], roles_dir, depth + 1)
    name = task.get("name")
    return [name if isinstance(name, str) and name else _module_name(task)]


def _role_tasks(role: str, roles_dir: Path, depth: int, tasks_from: str = "main") -> list[str]:
    name = tasks_from if tasks_from.endswith((".yml", ".yaml")) else f"{tasks_from}.yml"
    path = roles_dir / role / "tasks" / name
    return [f"{role} : {n}" for n in _file_tasks(path, roles_dir, depth)] if path.is_file() else [f"role {role}"]


def _file_tasks(path: Path, roles_dir: Path, depth: int) -> list[str]:
    try:
        items = _read(path) or []
    except ValueError:
        return [f"(tasks from {path.name})"]
    return [n for item in items if isinstance(items, list) for n in _tasks(item, path.parent, roles_dir, depth)]


def _module_name(task: dict[str, Any]) -> str:
    skip = {"when", "register", "vars", "tags", "loop", "changed_when", "failed_when", "no_log", "become",
            "check_mode", "delegate_to", "run_once", "ignore_errors", "notify", "args", "with_items"}
    module = next((str(k) for k in task if k not in skip), "task")
    return f"({module})"
