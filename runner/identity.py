"""Who runs a run, and from where: operator, trigger and CI job URL."""
from __future__ import annotations

import getpass
import os
import socket
import unicodedata
from typing import Mapping

from runner.errors import InvalidError

_CI_USERS = ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER_ID", "BUILDKITE_BUILD_CREATOR", "CIRCLE_USERNAME")


def is_ci(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(k) for k in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILD_URL", "TF_BUILD"))


def operator(environ: Mapping[str, str] | None = None) -> str:
    """RUNBOOK_USER, else the CI's user where known, else user@host: a label (see runner/signoffs.py
    for identities that are proven), normalized and refused when it hides characters."""
    env = os.environ if environ is None else environ
    if env.get("RUNBOOK_USER"):
        return normalized(env["RUNBOOK_USER"], "RUNBOOK_USER")
    if is_ci(env):
        for key in _CI_USERS:
            if env.get(key):
                return normalized(env[key], key)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def normalized(name: str, where: str = "the name") -> str:
    """`name` in NFKC, stripped; InvalidError (exit 3) when it holds invisible or control characters
    (a zero-width space makes "bob\u200b" look like bob and count as someone else)."""
    hidden = [c for c in name if unicodedata.category(c) in ("Cf", "Cc", "Co", "Cs", "Zl", "Zp")]
    if hidden:
        shown = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(hidden))
        raise InvalidError(f"{where}: {name.encode('unicode_escape').decode()!r} holds invisible or control "
                           f"characters ({shown}): use a plain name")
    return unicodedata.normalize("NFKC", name).strip()


def folded(name: str) -> str:
    """A name as people read it (NFKC, case-folded): what two names are compared by."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def same_person(a: str, b: str) -> bool:
    return folded(a) == folded(b)


def ci_job_url(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    for key in ("CI_JOB_URL", "BUILD_URL", "BUILDKITE_BUILD_URL", "CIRCLE_BUILD_URL"):
        if env.get(key):
            return env[key]
    return None


def default_trigger(environ: Mapping[str, str] | None = None) -> str:
    return "ci" if is_ci(environ) else "cli"
