"""The workspace: where runbooks, playbooks, roles and inventories live, its runbook.toml, its state dir."""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from runner.definition.calendars import Calendar, parse_calendars
from runner.definition.service import Hook, ServeConfig, parse_hooks, parse_serve
from runner.definition.ui import Ui, parse_ui
from runner.errors import InvalidError, Problem, UsageError

_CONFIG_KEYS = {"inventory", "state_dir", "forks", "notify", "ansible_cfg", "workers", "store", "ansible", "calendars",
                "team", "ui", "serve", "hooks"}
_ANSIBLE_KEYS = {"accelerate"}
_ACCELERATE = ("auto", "mitogen", "none")
_NOTIFY_KEYS = {"webhook", "on", "timeout"}
_WORKER_KEYS = {"command", "ansible_runner"}
WORKER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Notify:
    webhook: str | None = None
    on: tuple[str, ...] = ("failed", "waiting", "timed_out")
    timeout: float = 10.0


@dataclass(frozen=True)
class WorkerConfig:
    """An execution node: `command` reaches it (the worker's shell command line is appended as one
    argument, as ssh expects), `ansible_runner` is the program on the node."""

    name: str
    command: tuple[str, ...]
    ansible_runner: str = "ansible-runner"


@dataclass(frozen=True)
class Team:
    """[team]: signed statements on (allowed_signers, a workspace-relative path) and named groups of principals."""

    allowed_signers: str | None = None
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    inventory: str = "local"
    inventory_set: bool = False  # runbook.toml names the default inventory (maintenance needs a chosen one)
    state_dir: str | None = None
    forks: int | None = None
    notify: Notify = Notify()
    ansible_cfg: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    workers: Mapping[str, WorkerConfig] = field(default_factory=dict)
    store_url: str | None = None  # [store] url: the team's PostgreSQL (RUNBOOK_DATABASE_URL overrides it)
    accelerate: str = "auto"  # [ansible] accelerate: auto | mitogen | none (RUNBOOK_ACCELERATE overrides)
    calendars: Mapping[str, Calendar] = field(default_factory=dict)  # [calendars.NAME]: business days
    team: Team = Team()
    ui: Ui = Ui()  # [ui] timezone, lang
    serve: ServeConfig = ServeConfig()  # [serve]: `runbook serve`
    hooks: Mapping[str, Hook] = field(default_factory=dict)  # [hooks.NAME]: where alerts come in


@dataclass(frozen=True)
class Workspace:
    root: Path
    config: Config

    @property
    def accelerate(self) -> str:
        """runbook.toml's [ansible] accelerate, overridden by RUNBOOK_ACCELERATE (e.g. for one CI job)."""
        env = os.environ.get("RUNBOOK_ACCELERATE", "").strip()
        if env and env not in _ACCELERATE:
            raise UsageError(f"RUNBOOK_ACCELERATE={env!r} is not one of: {', '.join(_ACCELERATE)}")
        return env or self.config.accelerate

    @property
    def allowed_signers(self) -> Path | None:
        """[team] allowed_signers inside the workspace, or None: identities are then unverified labels."""
        name = self.config.team.allowed_signers
        if name is None:
            return None
        path = (self.root / name).resolve()
        if Path(name).is_absolute() or not path.is_relative_to(self.root.resolve()):
            raise InvalidError(f"runbook.toml: team.allowed_signers: {name!r} escapes the workspace")
        if not path.is_file():
            raise InvalidError(f"runbook.toml: team.allowed_signers: {name!r} is not a file in the workspace")
        return path

    @property
    def runbooks_dir(self) -> Path:
        return self.root / "runbooks"

    @property
    def playbooks_dir(self) -> Path:
        return self.root / "playbooks"

    @property
    def roles_dir(self) -> Path:
        return self.root / "roles"

    @property
    def inventories_dir(self) -> Path:
        return self.root / "inventories"

    @property
    def state_dir(self) -> Path:
        env = os.environ.get("RUNBOOK_STATE_DIR")
        if env:
            return Path(env).expanduser().resolve()
        if self.config.state_dir:
            return (self.root / Path(self.config.state_dir).expanduser()).resolve()
        return self.root / ".runbook"

    def runbook_files(self) -> list[Path]:
        if not self.runbooks_dir.is_dir():
            return []
        files = [*self.runbooks_dir.glob("*.yml"), *self.runbooks_dir.glob("*.yaml")]
        return sorted(files, key=lambda p: p.stem)

    def runbook_path(self, name: str) -> Path:
        if "/" not in name and "\0" not in name and 0 < len(name) <= 200:
            for suffix in (".yml", ".yaml"):
                path = self.runbooks_dir / f"{name}{suffix}"
                if path.is_file():
                    return path
        import difflib

        names = [p.stem for p in self.runbook_files()]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6) if len(name) <= 200 else []
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(names) or 'none'}"
        shown = repr(name) if len(name) <= 80 else f"{name[:60]!r}... ({len(name)} characters)"
        raise UsageError(f"no runbook named {shown} in {self.display(self.runbooks_dir)}/ ({hint})")

    def display(self, path: Path) -> str:
        """`path` relative to the workspace, as error messages show it."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def playbook_path(self, name: str) -> Path:
        """The playbook `name` inside playbooks/; refuses names that escape it (links included)."""
        base = self.playbooks_dir.resolve()
        candidate = (base / name).resolve()
        if Path(name).is_absolute() or not candidate.is_relative_to(base):
            raise InvalidError(f"playbook {name!r} escapes {self.display(self.playbooks_dir)}/")
        return candidate

    def chosen_inventory(self, explicit: str | None, runbook_default: str | None) -> str | None:
        """The inventory someone chose: -i, else the runbook's `inventory:`, else runbook.toml's; None when
        only the built-in `local` default is left."""
        return explicit or runbook_default or (self.config.inventory if self.config.inventory_set else None)

    def inventory_path(self, name_or_path: str | None) -> Path:
        """An inventory by name (inventories/<name>[.yml|.yaml|.ini|/]) or by path."""
        name = name_or_path or self.config.inventory
        try:
            for candidate in (self.inventories_dir / name, *(self.inventories_dir / f"{name}{s}" for s in (".yml", ".yaml", ".ini", ".json"))):
                if candidate.exists() and "/" not in name:
                    return candidate
            path = Path(name).expanduser()
            if path.exists():
                return path.resolve()
        except (OSError, RuntimeError):
            pass  # a name too long for the file system, a symlink loop: no such inventory
        known = sorted({p.stem for p in self.inventories_dir.iterdir()}) if self.inventories_dir.is_dir() else []
        shown = repr(name) if len(name) <= 80 else f"{name[:60]!r}... ({len(name)} characters)"
        raise InvalidError(f"no inventory {shown}: not in {self.display(self.inventories_dir)}/ "
                           f"(known: {', '.join(known) or 'none'}) and not a path")


def find_root(explicit: str | None, cwd: Path | None = None) -> Path:
    """--workspace, else RUNBOOK_WORKSPACE, else the nearest ancestor holding runbooks/."""
    chosen = explicit or os.environ.get("RUNBOOK_WORKSPACE")
    if chosen:
        try:
            root = Path(chosen).expanduser().resolve()
            is_workspace = (root / "runbooks").is_dir()
        except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
            shown = chosen if len(chosen) <= 80 else chosen[:60] + "..."
            raise UsageError(f"{shown}: not a usable workspace folder ({exc.__class__.__name__})") from None
        if not is_workspace:
            raise UsageError(f"{root} is not a workspace (no runbooks/ folder); create one with: runbook init {root}")
        return root
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "runbooks").is_dir():
            return folder
    raise UsageError(f"no workspace here: no runbooks/ folder in {start} or above; "
                     "use --workspace DIR, set RUNBOOK_WORKSPACE, or create one with: runbook init DIR")


def open_workspace(explicit: str | None = None, cwd: Path | None = None) -> Workspace:
    root = find_root(explicit, cwd)
    config = load_config(root / "runbook.toml")
    from runner import language, times

    times.use_zone(config.ui.timezone)
    language.configure(config.ui.lang)
    return Workspace(root, config)


def load_config(path: Path) -> Config:
    if not path.is_file():
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError, OSError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise InvalidError(f"{path}: invalid TOML: {reason}") from None
    problems = [Problem(path.name, None, key, "unknown key") for key in data if key not in _CONFIG_KEYS]
    notify = data.get("notify", {})
    if not isinstance(notify, dict):
        problems.append(Problem(path.name, None, "notify", "expected a table: [notify]"))
        notify = {}
    problems += [Problem(path.name, None, f"notify.{k}", "unknown key") for k in notify if k not in _NOTIFY_KEYS]
    for key in ("inventory", "state_dir"):
        if key in data and not (isinstance(data[key], str) and data[key]):
            problems.append(Problem(path.name, None, key, f"{data[key]!r} is not a non-empty string"))
    timeout = notify.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        problems.append(Problem(path.name, None, "notify.timeout", f"{timeout!r} is not a number of seconds (up to 3600)"))
    forks = data.get("forks")
    if forks is not None and (isinstance(forks, bool) or not isinstance(forks, int) or forks < 1):
        problems.append(Problem(path.name, None, "forks", f"{forks!r} is not a positive integer"))
    outcomes = ("succeeded", "failed", "waiting", "timed_out", "canceled", "aborted")
    on = notify.get("on", list(Notify.on))
    if not isinstance(on, list) or any(o not in outcomes for o in on):
        problems.append(Problem(path.name, None, "notify.on", f"{on!r}: expected a list of {', '.join(outcomes)}"))
    webhook = notify.get("webhook")
    if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
        problems.append(Problem(path.name, None, "notify.webhook", f"{webhook!r} is not an http(s) URL"))
    ansible_cfg = data.get("ansible_cfg", {})
    if not isinstance(ansible_cfg, dict) or not all(isinstance(v, dict) for v in ansible_cfg.values()):
        problems.append(Problem(path.name, None, "ansible_cfg", "expected tables like [ansible_cfg.defaults]"))
    workers, worker_problems = _workers(data.get("workers", {}), path.name)
    problems += worker_problems
    calendars, calendar_problems = parse_calendars(data.get("calendars", {}), path.parent, path.name, text)
    problems += calendar_problems
    store = data.get("store", {})
    if not isinstance(store, dict):
        store = {}
        problems.append(Problem(path.name, None, "store", "expected a table: [store] url = \"postgresql://...\""))
    problems += [Problem(path.name, None, f"store.{k}", "unknown key") for k in store if k != "url"]
    store_url = store.get("url")
    if store_url is not None and not (isinstance(store_url, str)
                                      and store_url.startswith(("postgresql://", "postgres://"))):
        problems.append(Problem(path.name, None, "store.url", "expected a postgresql:// URL"))
    ansible = data.get("ansible", {})
    accelerate = ansible.get("accelerate", "auto") if isinstance(ansible, dict) else None
    if not isinstance(ansible, dict):
        problems.append(Problem(path.name, None, "ansible", "expected a table [ansible]"))
    else:
        problems += [Problem(path.name, None, f"ansible.{k}", "unknown key") for k in ansible if k not in _ANSIBLE_KEYS]
        if accelerate not in _ACCELERATE:
            problems.append(Problem(path.name, None, "ansible.accelerate", f"{accelerate!r} is not one of: {', '.join(_ACCELERATE)}"))
    team, team_problems = _team(data.get("team", {}), path.name)
    problems += team_problems
    ui, ui_problems = parse_ui(data.get("ui", {}), path.name, text)
    problems += ui_problems
    serve, serve_problems = parse_serve(data.get("serve", {}), path.name)
    hooks, hook_problems = parse_hooks(data.get("hooks", {}), path.name)
    problems += serve_problems + hook_problems
    if problems:
        raise InvalidError(f"{path}: invalid configuration", tuple(problems))
    return Config(
        inventory=data.get("inventory", "local"),
        inventory_set="inventory" in data,
        state_dir=data.get("state_dir"),
        forks=forks,
        notify=Notify(notify.get("webhook"), tuple(notify.get("on", Notify.on)), float(notify.get("timeout", 10))),
        ansible_cfg=ansible_cfg,
        workers=workers,
        store_url=store_url,
        accelerate=str(accelerate),
        calendars=calendars,
        team=team,
        ui=ui,
        serve=serve,
        hooks=hooks,
    )


def _workers(data: Any, filename: str) -> tuple[dict[str, WorkerConfig], list[Problem]]:
    """[workers.NAME] tables: command (a non-empty list of strings), ansible_runner (a path or name)."""
    if not isinstance(data, dict):
        return {}, [Problem(filename, None, "workers", "expected tables like [workers.dmz]")]
    workers, problems = {}, []
    for name, spec in data.items():
        where = f"workers.{name}"
        if not WORKER_NAME.match(name):
            problems.append(Problem(filename, None, where, "is not a worker name (lower case letters, digits, - and _)"))
            continue
        if not isinstance(spec, dict):
            problems.append(Problem(filename, None, where, "expected a table with command = [...]"))
            continue
        problems += [Problem(filename, None, f"{where}.{k}", "unknown key") for k in spec if k not in _WORKER_KEYS]
        command = spec.get("command")
        if not (isinstance(command, list) and command and all(isinstance(w, str) and w for w in command)):
            problems.append(Problem(filename, None, f"{where}.command",
                                    'expected a list of words, e.g. ["ssh", "ops@bastion.dmz"]'))
            continue
        runner = spec.get("ansible_runner", "ansible-runner")
        if not isinstance(runner, str) or not runner.strip() or "\n" in runner or "\0" in runner:
            problems.append(Problem(filename, None, f"{where}.ansible_runner", "expected the path of ansible-runner on the node"))
            continue
        workers[name] = WorkerConfig(name, tuple(command), runner)
    return workers, problems


def _team(data: Any, filename: str) -> tuple[Team, list[Problem]]:
    """[team] allowed_signers = "PATH", groups = {NAME = ["principal", ...]}."""
    if not isinstance(data, dict):
        return Team(), [Problem(filename, None, "team", "expected a table: [team] allowed_signers = \"PATH\"")]
    problems = [Problem(filename, None, f"team.{k}", "unknown key") for k in data if k not in ("allowed_signers", "groups")]
    signers = data.get("allowed_signers")
    if signers is not None and not (isinstance(signers, str) and signers.strip()):
        problems.append(Problem(filename, None, "team.allowed_signers", "expected a path in the workspace"))
    groups = data.get("groups", {})
    if not isinstance(groups, dict):
        return Team(), problems + [Problem(filename, None, "team.groups", 'expected {leads = ["alice", "bob"]}')]
    for name, members in groups.items():
        if not (isinstance(members, list) and all(isinstance(m, str) and m.strip() for m in members)):
            problems.append(Problem(filename, None, f"team.groups.{name}", "expected a list of principals"))
    if "groups" in data and signers is None:
        problems.append(Problem(filename, None, "team.groups", "needs team.allowed_signers (groups of unverified names prove nothing)"))
    if problems:
        return Team(), problems
    return Team(signers, {n: tuple(m) for n, m in groups.items()}), []
