"""Reading playbooks for people: the task names `runbook show` and the manual list for each step, and
what each step hands to the run record with set_stats (its "step data")."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SECTIONS = ("pre_tasks", "roles", "tasks", "post_tasks")
_INCLUDES = ("include_tasks", "import_tasks", "ansible.builtin.include_tasks", "ansible.builtin.import_tasks")
_ROLES = ("include_role", "import_role", "ansible.builtin.include_role", "ansible.builtin.import_role")


_Leaf = Callable[[dict[str, Any]], list[str]]
_STATS = ("set_stats", "ansible.builtin.set_stats")


def _read(path: Path) -> Any:
    """The YAML in `path`; any failure (unreadable, not a file, not YAML, a value PyYAML cannot build) raises
    ValueError. Anchors are allowed here, as Ansible allows them: only text values are ever shown."""
    from runner.definition.yamlfile import read_limited

    try:
        return yaml.load(read_limited(path).decode("utf-8"), Loader=_Loader)
    except Exception as exc:  # noqa: BLE001 - a broken playbook is shown as such, never a crash
        raise ValueError(exc.__class__.__name__) from None


def task_names(playbook: Path, roles_dir: Path) -> list[str]:
    """Task names in run order; roles and static includes expanded, blocks flattened."""
    return _walk(playbook, roles_dir, _name, play_names=True)


def recorded_keys(playbook: Path, roles_dir: Path) -> list[str]:
    """The step data keys the playbook hands to the run record (set_stats `data:`), in run order."""
    return list(dict.fromkeys(_walk(playbook, roles_dir, _stats_keys, play_names=False)))


def privileges(playbook: Path, roles_dir: Path) -> tuple[bool, list[str]]:
    """Whether a task (roles and includes expanded) asks for `become`, and the system folders the tasks
    write to (/var/lib/app, /etc/app): what decides whether the manual may say "no root needed"."""
    marks = _walk(playbook, roles_dir, _privilege_marks, play_names=False)
    return "become" in marks, sorted({m for m in marks if m != "become"})


_WRITERS = {"copy", "template", "file", "lineinfile", "blockinfile", "replace", "unarchive", "get_url",
            "ini_file", "archive", "assemble"}
_SYSTEM = ("/var/", "/etc/", "/usr/", "/opt/", "/srv/", "/boot/", "/root/")
_WORLD_WRITABLE = ("/var/tmp/", "/tmp/")


def _privilege_marks(task: dict[str, Any]) -> list[str]:
    marks = ["become"] if _truthy(task.get("become")) else []
    module = next((k for k in task if isinstance(k, str) and k.rsplit(".", 1)[-1] in _WRITERS), None)
    if module is None:
        return marks
    args = task[module] if isinstance(task[module], dict) else task.get("args")
    if isinstance(task[module], str):  # the `module: dest=/x mode=0644` form
        args = dict(word.split("=", 1) for word in task[module].split() if "=" in word)
    target = next((args[k] for k in ("dest", "path") if isinstance(args, dict) and isinstance(args.get(k), str)), "")
    if target.startswith(_SYSTEM) and not target.startswith(_WORLD_WRITABLE):
        marks.append("/".join(target.split("/")[:4]).split("{{")[0].rstrip("/"))
    return marks


def _truthy(value: Any) -> bool:
    """become: true / yes / a template (it may well be true at run time)."""
    return value is True or (isinstance(value, str) and (value.strip().lower() in ("yes", "true") or "{{" in value))


def _name(task: dict[str, Any]) -> list[str]:
    name = task.get("name")
    return [name if isinstance(name, str) and name else _module_name(task)]


def _stats_keys(task: dict[str, Any]) -> list[str]:
    spec = next((task[k] for k in _STATS if k in task), None)
    data = spec.get("data") if isinstance(spec, dict) else None
    if isinstance(data, str):  # a Jinja expression: the quoted names it builds, e.g. {'packages_upgraded': ...}
        import re

        return re.findall(r"[{,]\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*:\s*\{\s*inventory_hostname", data)
    return [str(k) for k in data] if isinstance(data, dict) else []


def _walk(playbook: Path, roles_dir: Path, leaf: _Leaf, play_names: bool, depth: int = 0) -> list[str]:
    if depth > 4:
        return [f"(playbooks from {playbook.name})"] if play_names else []
    try:
        plays = _read(playbook) or []
    except ValueError as exc:
        return [f"(cannot read {playbook.name}: {exc})"] if play_names else []
    names: list[str] = []
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        if "import_playbook" in play or "ansible.builtin.import_playbook" in play:
            target = play.get("import_playbook") or play.get("ansible.builtin.import_playbook")
            names += _walk(playbook.parent / str(target), roles_dir, leaf, play_names, depth + 1)
            continue
        if play_names and isinstance(play.get("name"), str):
            names.append(f"play: {play['name']}")
        for section in _SECTIONS:
            items = play.get(section)
            for item in items if isinstance(items, list) else []:
                if section == "roles":
                    role = item.get("role") or item.get("name") if isinstance(item, dict) else item
                    names += _role_tasks(str(role), roles_dir, 0, leaf)
                else:
                    names += _tasks(item, playbook.parent, roles_dir, 0, leaf)
    return names


def _tasks(task: Any, base: Path, roles_dir: Path, depth: int, leaf: _Leaf) -> list[str]:
    if not isinstance(task, dict) or depth > 4:
        return []
    if "block" in task:
        out = []
        for key in ("block", "rescue", "always"):
            subs = task.get(key)
            for sub in subs if isinstance(subs, list) else []:
                out += _tasks(sub, base, roles_dir, depth + 1, leaf)
        return out
    for key in _ROLES:
        if key in task and isinstance(task[key], dict):
            spec = task[key]
            return _role_tasks(str(spec.get("name")), roles_dir, depth + 1, leaf, str(spec.get("tasks_from") or "main"))
    for key in _INCLUDES:
        if key in task and isinstance(task[key], str) and "{{" not in task[key]:
            return _file_tasks(base / task[key], roles_dir, depth + 1, leaf)
    return leaf(task)


def _role_tasks(role: str, roles_dir: Path, depth: int, leaf: _Leaf, tasks_from: str = "main") -> list[str]:
    name = tasks_from if tasks_from.endswith((".yml", ".yaml")) else f"{tasks_from}.yml"
    path = roles_dir / role / "tasks" / name
    if not path.is_file():
        return [f"role {role}"] if leaf is _name else []
    found = _file_tasks(path, roles_dir, depth, leaf)
    return [f"{role} : {n}" for n in found] if leaf is _name else found


def _file_tasks(path: Path, roles_dir: Path, depth: int, leaf: _Leaf) -> list[str]:
    try:
        items = _read(path) or []
    except ValueError:
        return [f"(tasks from {path.name})"] if leaf is _name else []
    return [n for item in items if isinstance(items, list) for n in _tasks(item, path.parent, roles_dir, depth, leaf)]


def _module_name(task: dict[str, Any]) -> str:
    skip = {"when", "register", "vars", "tags", "loop", "changed_when", "failed_when", "no_log", "become",
            "check_mode", "delegate_to", "run_once", "ignore_errors", "notify", "args", "with_items"}
    module = next((str(k) for k in task if k not in skip), "task")
    return f"({module})"
