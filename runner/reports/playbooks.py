"""Reading playbooks for people: the task names `runbook show` and the manual list for each step."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SECTIONS = ("pre_tasks", "roles", "tasks", "post_tasks")
_INCLUDES = ("include_tasks", "import_tasks", "ansible.builtin.include_tasks", "ansible.builtin.import_tasks")
_ROLES = ("include_role", "import_role", "ansible.builtin.include_role", "ansible.builtin.import_role")


def task_names(playbook: Path, roles_dir: Path) -> list[str]:
    """Task names in run order; roles and static includes expanded, blocks flattened."""
    try:
        plays = yaml.load(playbook.read_text(encoding="utf-8"), Loader=_Loader) or []
    except (OSError, yaml.YAMLError) as exc:
        return [f"(cannot read {playbook.name}: {exc.__class__.__name__})"]
    names: list[str] = []
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        if "import_playbook" in play or "ansible.builtin.import_playbook" in play:
            target = play.get("import_playbook") or play.get("ansible.builtin.import_playbook")
            names += task_names(playbook.parent / str(target), roles_dir)
            continue
        if play.get("name"):
            names.append(f"play: {play['name']}")
        for section in _SECTIONS:
            for item in play.get(section) or []:
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
            for sub in task.get(key) or []:
                out += _tasks(sub, base, roles_dir, depth + 1)
        return out
    for key in _ROLES:
        if key in task and isinstance(task[key], dict):
            spec = task[key]
            return _role_tasks(str(spec.get("name")), roles_dir, depth + 1, str(spec.get("tasks_from") or "main"))
    for key in _INCLUDES:
        if key in task and isinstance(task[key], str) and "{{" not in task[key]:
            return _file_tasks(base / task[key], roles_dir, depth + 1)
    return [str(task.get("name") or _module_name(task))]


def _role_tasks(role: str, roles_dir: Path, depth: int, tasks_from: str = "main") -> list[str]:
    name = tasks_from if tasks_from.endswith((".yml", ".yaml")) else f"{tasks_from}.yml"
    path = roles_dir / role / "tasks" / name
    return [f"{role} : {n}" for n in _file_tasks(path, roles_dir, depth)] if path.is_file() else [f"role {role}"]


def _file_tasks(path: Path, roles_dir: Path, depth: int) -> list[str]:
    try:
        items = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or []
    except (OSError, yaml.YAMLError):
        return [f"(tasks from {path.name})"]
    return [n for item in items if isinstance(items, list) for n in _tasks(item, path.parent, roles_dir, depth)]


def _module_name(task: dict[str, Any]) -> str:
    skip = {"when", "register", "vars", "tags", "loop", "changed_when", "failed_when", "no_log", "become",
            "check_mode", "delegate_to", "run_once", "ignore_errors", "notify", "args", "with_items"}
    module = next((k for k in task if k not in skip), "task")
    return f"({module})"
