"""The `runbook` command. For `runbook run`, the interpreter that its first playbook step will run
ansible-playbook in starts before anything else (execution/ahead.py): while runbook imports its modules
and checks the runbook, that interpreter loads Ansible's libraries on the other core."""
from __future__ import annotations

import sys

# `run`'s options that take a value (cli.py); its first other word is the runbook's name.
_VALUED = {"-p", "--param", "--params-file", "-i", "--inventory", "-l", "--limit", "--forks", "--trigger",
           "--wait-lock", "--junit"}


def main() -> None:
    name = runbook_to_run(sys.argv[1:])
    if name is None:
        from runner.cli import main as cli_main

        cli_main()
        return
    from runner.execution import ahead

    ahead.start(name)
    try:
        from runner.cli import main as cli_main

        cli_main()
    finally:
        ahead.discard()  # no step took it: not a playbook first, a refused run, a usage error...


def runbook_to_run(args: list[str]) -> str | None:
    """NAME in `runbook [-w DIR] run [OPTIONS] NAME ...`, read as click will read it; None for any other
    command, for --help, and for --worker (its steps run elsewhere). A wrong guess costs nothing but
    the interpreter: the run takes it only for the runbook it was started for."""
    words = iter(args)
    for word in words:
        if word in ("-w", "--workspace"):
            next(words, None)
        elif word == "run":
            break
        elif not word.startswith("-"):
            return None  # another command
        elif word in ("-h", "--help", "--version"):
            return None
    else:
        return None
    name = None
    for word in words:
        if word in ("-h", "--help") or word == "--worker" or word.startswith("--worker="):
            return None
        if word == "--":
            name = name or next(words, None)
        elif word in _VALUED:
            next(words, None)
        elif not word.startswith("-") and name is None:
            name = word
    return name
