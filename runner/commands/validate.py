from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from runner.execution.ansiblebin import ansible_bin
from runner.errors import InvalidError, Problem
from runner.definition.loader import load_valid
from runner.definition.model import Runbook
from runner.definition.workspace import Workspace


def validate(ws: Workspace, names: list[str], syntax_check: bool = True) -> int:
    """Schema, references, defaults and ansible-playbook --syntax-check; every problem at once, exit 3."""
    paths = [ws.runbook_path(n) for n in names] if names else ws.runbook_files()
    valid, problems = load_valid(paths, ws.display)
    for runbook in valid:
        problems += reference_problems(ws, runbook)
    if syntax_check:
        problems += syntax_problems(ws, sorted({p for r in valid for p in r.playbooks}))
    for problem in problems:
        print(problem, file=sys.stderr)
    bad_files = {p.file for p in problems}
    for runbook in valid:
        if not _files(ws, runbook) & bad_files:
            print(f"ok  {runbook.name} {runbook.version}")
    if problems:
        print(f"{len(problems)} problem(s) in {len(bad_files)} file(s)", file=sys.stderr)
        return int(InvalidError.exit_code)
    return 0


def _files(ws: Workspace, runbook: Runbook) -> set[str]:
    """The runbook file and its playbooks, as problems name them."""
    files = {ws.display(runbook.path)}
    for name in runbook.playbooks:
        try:
            files.add(ws.display(ws.playbook_path(name)))
        except InvalidError:
            pass  # already a reference problem of the runbook file
    return files


def reference_problems(ws: Workspace, runbook: Runbook) -> list[Problem]:
    file = ws.display(runbook.path)
    problems = []
    for section, steps in (("steps", runbook.steps), ("on_failure", runbook.on_failure)):
        for index, step in enumerate(steps):
            if not step.playbook:
                continue
            where = f"{section}[{index}].playbook"
            try:
                path = ws.playbook_path(step.playbook)
            except InvalidError as exc:
                problems.append(Problem(file, runbook.lines.get(where, step.line), where, str(exc)))
                continue
            if not path.is_file():
                problems.append(Problem(file, runbook.lines.get(where, step.line), where, f"{step.playbook!r} not found in {ws.display(ws.playbooks_dir)}/"))
    workers = [("worker", runbook.worker)] + [
        (f"{section}[{i}].worker", s.worker)
        for section, steps in (("steps", runbook.steps), ("on_failure", runbook.on_failure)) for i, s in enumerate(steps)
    ]
    for where, name in workers:
        if name and name not in ws.config.workers:
            known = ", ".join(sorted(ws.config.workers)) or "none"
            problems.append(Problem(file, runbook.lines.get(where), where,
                                    f"no worker {name!r} in runbook.toml [workers] (known: {known})"))
    inventories = [("inventory", runbook.inventory)] + [
        (f"schedule[{i}].inventory", s.inventory) for i, s in enumerate(runbook.schedule)
    ]
    for where, name in inventories:
        if name:
            try:
                ws.inventory_path(name)
            except InvalidError as exc:
                problems.append(Problem(file, runbook.lines.get(where), where, str(exc)))
    for index, trigger in enumerate(runbook.triggers):
        if trigger.hook not in ws.config.hooks:
            known = ", ".join(sorted(ws.config.hooks)) or "none"
            problems.append(Problem(file, runbook.lines.get(f"triggers[{index}].hook", trigger.line), f"triggers[{index}].hook",
                                    f"no hook {trigger.hook!r} in runbook.toml [hooks] (known: {known})"))
    return problems + schedule_calendar_problems(ws, runbook)


def schedule_calendar_problems(ws: Workspace, runbook: Runbook) -> list[Problem]:
    """Unknown calendars and entries that never fire by theirs; a warning (stderr) where the holiday
    data of a calendar ends before next year is out."""
    if not any(s.calendar for s in runbook.schedule):
        return []
    import datetime as dt

    from runner.schedule.due import calendar_problems, data_end_warning

    now = dt.datetime.now().astimezone()
    problems = []
    for index, entry in enumerate(runbook.schedule):
        where = f"schedule[{index}].calendar"
        line = runbook.lines.get(where) or runbook.lines.get(f"schedule[{index}]")
        problems += [Problem(ws.display(runbook.path), line, where, text)
                     for text in calendar_problems(entry, ws.config.calendars, now)]
        warning = None if problems else data_end_warning(entry, ws.config.calendars, now)
        if warning:
            print(f"{ws.display(runbook.path)}: {where}: warning: {warning}", file=sys.stderr)
    return problems


def syntax_problems(ws: Workspace, playbooks: list[str]) -> list[Problem]:
    """One ansible-playbook --syntax-check for all playbooks; per playbook only when that one fails."""
    paths = [ws.playbook_path(p) for p in playbooks]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        return []
    ok, _ = _syntax_check(ws, paths)
    if ok:
        return []
    problems = []
    for path in paths:
        ok, output = _syntax_check(ws, [path])
        if not ok:
            problems.append(_syntax_problem(ws, path, output))
    return problems


def _syntax_check(ws: Workspace, paths: list[Path]) -> tuple[bool, str]:
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ws.roles_dir), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    command = [ansible_bin("ansible-playbook"), "--syntax-check", "-i", "localhost,",
               "-e", "runbook_serial=1", "-e", "runbook_max_fail_percentage=100", *map(str, paths)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ws.playbooks_dir, timeout=300)
    return done.returncode == 0, done.stderr + done.stdout


def _syntax_problem(ws: Workspace, path: Path, output: str) -> Problem:
    line_match = re.search(r"line (\d+)|^Origin: .+?:(\d+)(?::\d+)?$", output, re.MULTILINE)
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.startswith("[WARNING]")]
    message = next((ln for ln in lines if ln.startswith(("ERROR", "[ERROR]"))), lines[0] if lines else "syntax check failed")
    message = re.sub(r"^\[?ERROR\]?!?:?\s*", "", message)
    return Problem(ws.display(path), int(line_match.group(1) or line_match.group(2)) if line_match else None, "", f"syntax check: {message}")
