"""The workspace: where runbooks, playbooks, roles and inventories live, its runbook.toml, its state dir."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from runner.errors import InvalidError, Problem, UsageError

_CONFIG_KEYS = {"inventory", "state_dir", "forks", "notify", "ansible_cfg", "ansible"}
_ANSIBLE_KEYS = {"accelerate"}
_ACCELERATE = ("auto", "mitogen", "none")
_NOTIFY_KEYS = {"webhook", "on", "timeout"}


@dataclass(frozen=True)
class Notify:
    webhook: str | None = None
    on: tuple[str, ...] = ("failed", "waiting", "timed_out")
    timeout: float = 10.0


@dataclass(frozen=True)
class Config:
    inventory: str = "local"
    state_dir: str | None = None
    forks: int | None = None
    notify: Notify = Notify()
    ansible_cfg: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    accelerate: str = "auto"  # [ansible] accelerate: auto | mitogen | none (RUNBOOK_ACCELERATE overrides)


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
        for suffix in (".yml", ".yaml"):
            path = self.runbooks_dir / f"{name}{suffix}"
            if path.is_file() and "/" not in name:
                return path
        known = ", ".join(p.stem for p in self.runbook_files()) or "none"
        raise UsageError(f"no runbook named {name!r} in {self.runbooks_dir} (known: {known})")

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

    def inventory_path(self, name_or_path: str | None) -> Path:
        """An inventory by name (inventories/<name>[.yml|.yaml|.ini|/]) or by path."""
        name = name_or_path or self.config.inventory
        for candidate in (self.inventories_dir / name, *(self.inventories_dir / f"{name}{s}" for s in (".yml", ".yaml", ".ini", ".json"))):
            if candidate.exists() and "/" not in name:
                return candidate
        path = Path(name).expanduser()
        if path.exists():
            return path.resolve()
        known = sorted({p.stem for p in self.inventories_dir.iterdir()}) if self.inventories_dir.is_dir() else []
        raise InvalidError(f"no inventory {name!r}: not in {self.display(self.inventories_dir)}/ "
                           f"(known: {', '.join(known) or 'none'}) and not a path")


def find_root(explicit: str | None, cwd: Path | None = None) -> Path:
    """--workspace, else RUNBOOK_WORKSPACE, else the nearest ancestor holding runbooks/."""
    chosen = explicit or os.environ.get("RUNBOOK_WORKSPACE")
    if chosen:
        root = Path(chosen).expanduser().resolve()
        if not (root / "runbooks").is_dir():
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
    return Workspace(root, load_config(root / "runbook.toml"))


def load_config(path: Path) -> Config:
    if not path.is_file():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidError(f"{path}: invalid TOML: {exc}") from None
    problems = [Problem(path.name, None, key, "unknown key") for key in data if key not in _CONFIG_KEYS]
    notify = data.get("notify", {})
    problems += [Problem(path.name, None, f"notify.{k}", "unknown key") for k in notify if k not in _NOTIFY_KEYS]
    forks = data.get("forks")
    if forks is not None and (not isinstance(forks, int) or forks < 1):
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
    ansible = data.get("ansible", {})
    accelerate = ansible.get("accelerate", "auto") if isinstance(ansible, dict) else None
    if not isinstance(ansible, dict):
        problems.append(Problem(path.name, None, "ansible", "expected a table [ansible]"))
    else:
        problems += [Problem(path.name, None, f"ansible.{k}", "unknown key") for k in ansible if k not in _ANSIBLE_KEYS]
        if accelerate not in _ACCELERATE:
            problems.append(Problem(path.name, None, "ansible.accelerate", f"{accelerate!r} is not one of: {', '.join(_ACCELERATE)}"))
    if problems:
        raise InvalidError(f"{path}: invalid configuration", tuple(problems))
    return Config(
        inventory=data.get("inventory", "local"),
        state_dir=data.get("state_dir"),
        forks=forks,
        notify=Notify(notify.get("webhook"), tuple(notify.get("on", Notify.on)), float(notify.get("timeout", 10))),
        ansible_cfg=ansible_cfg,
        accelerate=str(accelerate),
    )
