"""Which strategy runs a playbook step: mitogen's `mitogen_linear` (the accelerator: one Python per host,
modules sent once) when the installed mitogen supports the installed ansible-core and nothing the step
uses needs Ansible's own `linear`; otherwise `linear`, with the reason."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

MODES = ("auto", "mitogen", "none")
MITOGEN = "mitogen_linear"
ANSIBLE = "linear"
# mitogen's connection timeout runs until the host's interpreter answers (Ansible's stops at the SSH
# handshake), so Ansible's 10 s failed hosts of a loaded machine as unreachable: 30 s unless configured.
CONNECT_TIMEOUT = 30

# The newest ansible-core line each mitogen release runs, from mitogen's changelog: 0.3.25 added
# ansible-core 2.19 (Ansible 12), 0.3.33 added 2.20, 0.3.49 added 2.21. Since 0.3.32 mitogen no longer
# refuses a newer ansible-core itself, so this table is what keeps an untested pair off.
_NEWEST_CORE = (((0, 3, 49), (2, 21)), ((0, 3, 33), (2, 20)), ((0, 3, 25), (2, 19)))
_OLDEST_CORE = (2, 10)

# What mitogen's connection layer handles (ansible_mitogen.connection.CONNECTION_METHOD and the
# connection plugins its strategy redirects); anything else fails under mitogen_linear.
_CONNECTIONS = {"ssh", "smart", "local", "docker", "podman", "buildah", "kubectl", "jail", "lxc", "lxd",
                "machinectl", "setns", "incus"}
_BECOME = {"sudo", "su", "doas", "mitogen_sudo", "mitogen_su", "mitogen_doas", "community.general.doas"}

# Printed once by ansible-core 2.19+ for any strategy outside ansible.builtin (mitogen's included):
# not something an operator can act on, so the step's output leaves these lines out.
_NOISE = ("[DEPRECATION WARNING]: Use of strategy plugins not included in ansible.builtin",
          "[WARNING]: Deprecation warnings can be disabled by setting `deprecation_warnings=False`")


@dataclass(frozen=True)
class Strategy:
    name: str  # mitogen_linear | linear
    reason: str = ""  # why not mitogen_linear ("" when accelerated)
    env: Mapping[str, str] = field(default_factory=dict)
    notice: bool = False  # worth a line on the console: auto wanted mitogen but the step cannot use it

    @property
    def accelerated(self) -> bool:
        return self.name == MITOGEN


def availability() -> tuple[Path | None, str]:
    """(mitogen's strategy plugin folder, "") when the installed mitogen supports the installed
    ansible-core, else (None, why not). Reads the two version strings from the packages themselves:
    importlib.metadata would scan every installed distribution (~50 ms of each run's start)."""
    from importlib import util

    try:
        import mitogen  # its __init__ holds only the version and a few helpers
    except ImportError:
        return None, "mitogen is not installed"
    mitogen_version = ".".join(map(str, mitogen.__version__))
    core_version = _ansible_core_version()
    if core_version is None:
        return None, "ansible-core is not installed"
    spec = util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        return None, "mitogen is installed without its ansible_mitogen package"
    core = _version(core_version)[:2]
    newest = next((c for m, c in _NEWEST_CORE if _version(mitogen_version) >= m), None)
    if newest is None or not _OLDEST_CORE <= core <= newest:
        return None, f"mitogen {mitogen_version} does not support ansible-core {core_version}"
    return Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy", ""


def choose(mode: str, wanted: bool, playbook: Path, inventory: Path, roles_dir: Path,
           timeout_configured: bool = False) -> Strategy:
    """The strategy for one playbook step. `mode` is runbook.toml's accelerate, `wanted` the runbook's;
    `timeout_configured`: runbook.toml's [ansible_cfg.defaults] sets `timeout` itself."""
    if mode == "none":
        return Strategy(ANSIBLE, 'accelerate = "none" in runbook.toml')
    if not wanted:
        return Strategy(ANSIBLE, "accelerate: false in the runbook")
    plugins, why_not = availability()
    if plugins is None:
        return Strategy(ANSIBLE, why_not, notice=mode == "auto")
    if mode == "auto":
        blocker, connections = _blocker(playbook, inventory, roles_dir)
        if blocker:
            return Strategy(ANSIBLE, blocker, notice=True)
        if connections == {"local"} and _all_local(inventory):
            # Nothing to save without SSH: mitogen's mux and interpreter measured 5-10% slower on localhost.
            return Strategy(ANSIBLE, "every host is on the local connection: nothing for mitogen to save")
    env = {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": MITOGEN}
    if not timeout_configured:
        env["ANSIBLE_TIMEOUT"] = str(CONNECT_TIMEOUT)
    return Strategy(MITOGEN, env=env)


def _ansible_core_version() -> str | None:
    """ansible-core's version from ansible/release.py, without importing the ansible package (~25 ms)."""
    from importlib import util

    spec = util.find_spec("ansible")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "release.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r"""^__version__ = ['"]([^'"]+)['"]""", text, re.MULTILINE)
    return found.group(1) if found else None


def is_noise(text: str) -> bool:
    """Whether a line of ansible-playbook's output is the strategy-plugin deprecation notice."""
    return text.lstrip().startswith(_NOISE)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# -- what in a playbook needs Ansible's own strategy, found before the step starts ---------------------
# A YAML key at the start of its line (`connection: winrm`, `- become_method: runas`), or an INI
# inventory's `ansible_connection=winrm`.
_SETTINGS = (re.compile(r"^[ \t]*(?:-[ \t]+)?(?:ansible_)?(connection|become_method|strategy)[ \t]*:[ \t]*[\"']?([\w.{}]+)",
                        re.MULTILINE),
             re.compile(r"(?:^|[ \t])ansible_(connection|become_method)[ \t]*=[ \t]*[\"']?([\w.{}]+)", re.MULTILINE))


def _blocker(playbook: Path, inventory: Path, roles_dir: Path) -> tuple[str, set[str]]:
    """(why mitogen would fail this step: a connection or become method it lacks, a play that picks its
    own strategy, or ""; the connection names seen). Reads the playbook, the files it imports, its
    roles and the inventory."""
    connections: set[str] = set()
    for path in _files(playbook, inventory, roles_dir):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for key, value in (m.groups() for pattern in _SETTINGS for m in pattern.finditer(text)):
            if key == "connection":
                connections.add(value.removeprefix("ansible.builtin."))
            if "{" in value:
                continue  # a template: only known at run time
            if key == "connection" and value.removeprefix("ansible.builtin.") not in _CONNECTIONS:
                return f"connection {value!r} in {path.name} is not one mitogen supports", connections
            if key == "become_method" and value.removeprefix("ansible.builtin.") not in _BECOME:
                return f"become_method {value!r} in {path.name} is not one mitogen supports", connections
            if key == "strategy" and not value.startswith("mitogen"):
                return f"{path.name} sets its own strategy ({value})", connections
    return "", connections


def _group_local(group: Any, inherited: str | None) -> bool:
    """Whether every host of a YAML inventory group gets `ansible_connection: local` (its own or a group's)."""
    if group is None:
        return inherited == "local"
    if not isinstance(group, dict):
        return False
    variables = group.get("vars")
    connection = variables.get("ansible_connection", inherited) if isinstance(variables, dict) else inherited
    hosts = group.get("hosts") or {}
    children = group.get("children") or {}
    if not isinstance(hosts, dict) or not isinstance(children, dict):
        return False
    return (all(_host_local(host, connection) for host in hosts.values())
            and all(_group_local(child, connection) for child in children.values()))


def _host_local(host: Any, connection: str | None) -> bool:
    if host is None:
        return connection == "local"
    return isinstance(host, dict) and host.get("ansible_connection", connection) == "local"


def _all_local(inventory: Path) -> bool:
    """Whether the inventory puts every host on the local connection: YAML host or group vars, or INI
    `[all:vars]`. Only meaningful when nothing else names another connection."""
    import yaml

    if not inventory.is_file():
        return False
    try:
        text = inventory.read_text(encoding="utf-8", errors="replace")
        data = _load_yaml(text) if inventory.suffix in (".yml", ".yaml") else None
    except (OSError, yaml.YAMLError):
        return False
    if isinstance(data, dict):
        return bool(data) and all(_group_local(group, None) for group in data.values())
    section = re.search(r"^\[all:vars\][ \t]*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    return bool(section and re.search(r"^[ \t]*ansible_connection[ \t]*=[ \t]*local\b", section.group(1), re.MULTILINE))


def _files(playbook: Path, inventory: Path, roles_dir: Path) -> Iterator[Path]:
    """The playbook, every playbook or task file it imports (transitively), the folders of the roles
    they name, and the inventory with its group_vars and host_vars."""
    seen: set[Path] = set()
    pending = [playbook]
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        yield path
        for ref in _references(path):
            role = roles_dir / ref
            if role.is_dir() and "/" not in ref:
                pending.extend(sorted(role.rglob("*.y*ml")))
            elif ref.endswith((".yml", ".yaml")):
                pending.append(path.parent / ref)
    folder = inventory if inventory.is_dir() else inventory.parent
    yield from [inventory] if inventory.is_file() else []
    for sub in ("group_vars", "host_vars"):
        yield from sorted((folder / sub).rglob("*")) if (folder / sub).is_dir() else []
    if inventory.is_dir():
        yield from sorted(p for p in inventory.iterdir() if p.is_file())


def _references(path: Path) -> list[str]:
    """Role names and imported file names in one YAML file (unparsable files name nothing)."""
    import yaml

    try:
        data = _load_yaml(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError):
        return []
    found: list[str] = []
    _walk(data, found)
    return found


def _load_yaml(text: str) -> Any:
    """yaml.safe_load with libyaml's parser when PyYAML has it (several times faster, on every step)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


_IMPORTS = {"import_playbook", "import_tasks", "include_tasks", "include_role", "import_role", "role", "roles"}


def _walk(node: Any, found: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, found)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        short = str(key).rsplit(".", 1)[-1]
        if short in _IMPORTS:
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, dict) and isinstance(value.get("name") or value.get("file"), str):
                found.append(value.get("name") or value["file"])
            elif isinstance(value, list):
                found.extend(v if isinstance(v, str) else str(v.get("role") or v.get("name") or "")
                             for v in value if isinstance(v, (str, dict)))
        _walk(value, found)
