"""What `schedule install` checks before it writes a line: each entry as its cron run would see it (the
inventory, every parameter as the run resolves it in cron's environment, steps that would wait for a
person), and whether a cron daemon runs at all. Every problem names the runbook file, the entry and what to do."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.definition.model import Runbook, Schedule, Step
from runner.definition.workspace import Workspace
from runner.errors import InvalidError, Problem

CRON_DAEMONS = frozenset({"cron", "crond", "fcron", "cronie", "dcron"})
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def install_problems(ws: Workspace, runbooks: Sequence[Runbook], crontab_env: Mapping[str, str]) -> list[Problem]:
    return [p for rb in runbooks for i in range(len(rb.schedule)) for p in entry_problems(ws, rb, i, crontab_env)]


def entry_problems(ws: Workspace, runbook: Runbook, index: int, crontab_env: Mapping[str, str]) -> list[Problem]:
    """Why the cron run of `runbook`'s schedule[index] would not run unattended (empty: it would)."""
    entry = runbook.schedule[index]
    where = f"schedule[{index}]"
    found = [(where, m) for m in _inventory_problems(ws, runbook, entry)]
    values, param_problems = _resolved(ws, runbook, entry, crontab_env)
    found += [(f"{where}.params.{name}", m) for name, m in param_problems]
    if not entry.waits:
        found += [(where, m) for m in _waiting_steps(runbook, values)]
    found += [(f"{where}.calendar", m) for m in _calendar_problems(ws, entry)]
    line = runbook.lines.get(where)
    return [Problem(ws.display(runbook.path), line, path, message) for path, message in found]


def _calendar_problems(ws: Workspace, entry: Schedule) -> list[str]:
    import datetime as dt

    from runner.schedule.due import calendar_problems

    return calendar_problems(entry, ws.config.calendars, dt.datetime.now().astimezone()) if entry.calendar else []


def _inventory_problems(ws: Workspace, runbook: Runbook, entry: Schedule) -> list[str]:
    chosen = ws.chosen_inventory(entry.inventory, runbook.inventory)
    if chosen is None and runbook.kind == "maintenance":
        return ["a maintenance runbook never runs on the built-in local inventory, and this entry names none: "
                "add `inventory: NAME` to the entry (or `inventory:` to the runbook, or to runbook.toml)"]
    try:
        ws.inventory_path(chosen)
    except InvalidError as exc:
        return [str(exc)]
    return []


def _resolved(ws: Workspace, runbook: Runbook, entry: Schedule,
              crontab_env: Mapping[str, str]) -> tuple[dict[str, object] | None, list[tuple[str, str]]]:
    """The parameter values the cron run would get (None when it would be refused) and each problem by
    parameter. A secret comes only from its `env:` variable, which the crontab's environment must set."""
    from runner.definition.params import resolve
    from runner.schedule.schedule import param_text

    problems: list[tuple[str, str]] = []
    provided = {p.name for p in runbook.parameters if p.secret and p.env and p.env in crontab_env}
    for param in runbook.parameters:
        if param.secret and param.required and param.name not in provided:
            problems.append((param.name, _secret_problem(param.env)))
    environ = {k: v for k, v in crontab_env.items()}
    assignments = {k: param_text(v) for k, v in entry.params.items()}
    try:
        values = dict(resolve(runbook, assignments, {}, environ, display=ws.display(runbook.path)).values)
    except InvalidError as exc:
        secret_names = {p.name for p in runbook.parameters if p.secret}
        for problem in exc.problems:
            name = problem.path.removeprefix("parameters.")
            if name not in secret_names:  # a secret's value is neither shown nor checked here
                problems.append((name, _param_message(problem.message)))
        return None, problems
    return values, problems


def _secret_problem(env: str | None) -> str:
    if env is None:
        return ("a required secret, and cron cannot ask for one nor may a schedule hold one: give the parameter "
                "an `env:` variable and set it in the crontab's environment")
    return (f"a required secret read from ${env}, which the crontab's environment must provide: add a line "
            f"`{env}=...` above the runbook block (crontab -e), or the scheduled runs stop with exit 3")


def _param_message(message: str) -> str:
    if message.startswith("required parameter has no value"):
        return "required parameter has no value: add it to this entry's params"
    return message


def _waiting_steps(runbook: Runbook, values: dict[str, object] | None) -> list[str]:
    return [f"step {step.name!r} is {'a manual' if step.type == 'manual' else 'an approval'} step: an unattended "
            "run stops there, waiting with its lock held (every later firing is refused, exit 6) until someone "
            "resumes it; add `waits: true` to this entry if that is intended"
            for step in runbook.steps + runbook.on_failure
            if step.type in ("manual", "approval") and _may_run(step, values)]


def _may_run(step: Step, values: dict[str, object] | None) -> bool:
    """False only when the step's `when:` is false for the entry's parameters (the run would skip it)."""
    if not step.when or values is None:
        return True
    from runner.definition.templating import evaluate

    try:
        return bool(evaluate(step.when, values))
    except Exception:  # noqa: BLE001 - an expression that fails here fails in the run too: count the step
        return True


def crontab_environment(before_block: str) -> dict[str, str]:
    """The `NAME=value` lines cron reads before this workspace's block: the environment of its lines."""
    env: dict[str, str] = {}
    for line in before_block.split("\n"):
        found = _ASSIGNMENT.match(line)
        if found and not line.lstrip().startswith("#"):
            value = found.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[found.group(1)] = value
    return env


def cron_daemon_running(proc: Path = Path("/proc")) -> bool:
    """Whether a cron daemon process runs on this machine (its name in /proc/PID/comm)."""
    try:
        pids = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return True  # cannot tell: say nothing rather than something false
    for pid in pids:
        try:
            name = (pid / "comm").read_text().strip()
        except OSError:
            continue
        if name in CRON_DAEMONS:
            return True
    return False
