"""Typed parameters: coercion from CLI text, precedence, constraints, secrets; all problems before anything runs."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode, InvalidError
from runner.definition.loader import load_runbook
from runner.definition.model import Runbook
from runner.definition.params import MIN_SECRET_LENGTH, REDACTED, coerce, resolve

try:
    from tests.conftest import runbook
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from conftest import runbook  # type: ignore[no-redef, unused-ignore]

HEADER = """\
apiVersion: runbook/v1
name: params-test
title: Parameters under test
version: 1.0.0
kind: operation
parameters:
"""
STEPS = """\
steps:
  - name: use
    playbook: use.yml
"""


def load(tmp_path: Path, parameters: str) -> Runbook:
    """A runbook with these `parameters:` entries (YAML, indented by two spaces)."""
    path = tmp_path / "params-test.yml"
    path.write_text(HEADER + parameters + STEPS, encoding="utf-8")
    return load_runbook(path, "runbooks/params-test.yml")


def resolve_values(rb: Runbook, cli: dict[str, str] | None = None, file: dict[str, Any] | None = None,
                   environ: dict[str, str] | None = None) -> dict[str, Any]:
    return dict(resolve(rb, cli or {}, file or {}, environ if environ is not None else {}).values)


def problems_of(rb: Runbook, cli: dict[str, str] | None = None, file: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(InvalidError) as caught:
        resolve(rb, cli or {}, file or {}, environ if environ is not None else {}, display="runbooks/params-test.yml")
    assert caught.value.exit_code == ExitCode.INVALID
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("spec", "text", "expected"), [
    ("{type: integer}", "10", 10),
    ("{type: integer}", " -3 ", -3),
    ("{type: number}", "2.5", 2.5),
    ("{type: number}", "10", 10),
    ("{type: boolean}", "yes", True),
    ("{type: boolean}", "no", False),
    ("{type: boolean}", "true", True),
    ("{type: boolean}", "0", False),
    ("{type: boolean}", "FALSE", False),
    ("{type: choice, choices: [graceful, hard]}", "hard", "hard"),
    ("{type: choice, choices: [1, 2, 5]}", "5", 5),
    ("{type: list}", "a,b", ["a", "b"]),
    ("{type: list}", " a , b ,", ["a", "b"]),
    ("{type: list}", "[a, b]", ["a", "b"]),
    ("{type: string}", "nginx", "nginx"),
])
def test_cli_text_is_coerced_to_the_parameter_type(tmp_path: Path, spec: str, text: str, expected: Any) -> None:
    rb = load(tmp_path, f"  x: {spec}\n")

    value = resolve_values(rb, cli={"x": text})["x"]

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("spec", "text", "message"), [
    ("{type: integer}", "ten", "'ten' is not an integer"),
    ("{type: integer}", "2.5", "'2.5' is not an integer"),
    ("{type: number}", "fast", "'fast' is not a number"),
    ("{type: number}", "nan", "'nan' is not a number"),
    ("{type: number}", "inf", "'inf' is not a number"),
    ("{type: boolean}", "maybe", "'maybe' is not a boolean (use true or false)"),
    ("{type: choice, choices: [graceful, hard]}", "soft", "'soft' is not one of graceful, hard"),
])
def test_text_that_is_not_of_the_type_is_refused(tmp_path: Path, spec: str, text: str, message: str) -> None:
    rb = load(tmp_path, f"  x: {spec}\n")

    assert problems_of(rb, cli={"x": text}) == [f"runbooks/params-test.yml:7: parameters.x: {message}"]


def test_typed_values_from_a_params_file_are_kept(tmp_path: Path) -> None:
    rb = load(tmp_path, "  n: {type: integer}\n  enabled: {type: boolean}\n  items: {type: list}\n  ratio: {type: number}\n")

    values = resolve_values(rb, file={"n": 3, "enabled": False, "items": ["a", 2], "ratio": 0.5})

    assert values == {"n": 3, "enabled": False, "items": ["a", "2"], "ratio": 0.5}


def test_precedence_cli_then_file_then_env_then_default(tmp_path: Path) -> None:
    rb = load(tmp_path, "  level: {type: integer, env: LEVEL, default: 1}\n")

    assert resolve_values(rb)["level"] == 1
    assert resolve_values(rb, environ={"LEVEL": "2"})["level"] == 2
    assert resolve_values(rb, file={"level": 3}, environ={"LEVEL": "2"})["level"] == 3
    assert resolve_values(rb, cli={"level": "4"}, file={"level": 3}, environ={"LEVEL": "2"})["level"] == 4


def test_optional_parameter_without_value_is_none(tmp_path: Path) -> None:
    rb = load(tmp_path, "  note: {type: string}\n  shout: {type: boolean, default: false}\n")

    assert resolve_values(rb) == {"note": None, "shout": False}


def test_required_parameter_without_value(tmp_path: Path) -> None:
    rb = load(tmp_path, "  service: {type: string, required: true}\n  token: {type: secret, required: true, env: TOK}\n")

    assert problems_of(rb) == [
        "runbooks/params-test.yml:7: parameters.service: required parameter has no value (give it with -p service=...)",
        "runbooks/params-test.yml:8: parameters.token: required parameter has no value "
        "(give it with --params-file or the TOK environment variable)",
    ]


@pytest.mark.parametrize(("spec", "text", "message"), [
    ("{type: integer, min: 0, max: 600}", "-1", "-1: value -1 is below the minimum 0"),
    ("{type: integer, min: 0, max: 600}", "601", "601: value 601 is above the maximum 600"),
    ("{type: number, min: 0.5}", "0.25", "0.25: value 0.25 is below the minimum 0.5"),
    ("{type: string, min: 3}", "ab", "'ab': length 2 is below the minimum 3"),
    ("{type: list, max: 2}", "a,b,c", "['a', 'b', 'c']: length 3 is above the maximum 2"),
])
def test_min_and_max(tmp_path: Path, spec: str, text: str, message: str) -> None:
    rb = load(tmp_path, f"  x: {spec}\n")

    assert problems_of(rb, cli={"x": text}) == [f"runbooks/params-test.yml:7: parameters.x: {message}"]


def test_min_and_max_are_inclusive(tmp_path: Path) -> None:
    rb = load(tmp_path, "  x: {type: integer, min: 0, max: 600}\n")

    assert resolve_values(rb, cli={"x": "0"})["x"] == 0
    assert resolve_values(rb, cli={"x": "600"})["x"] == 600


def test_pattern_must_match_the_whole_value(tmp_path: Path) -> None:
    rb = load(tmp_path, "  service: {type: string, pattern: '[a-z]+'}\n  hosts: {type: list, pattern: 'web[0-9]'}\n")

    assert resolve_values(rb, cli={"service": "nginx", "hosts": "web1,web2"}) == {"service": "nginx",
                                                                                  "hosts": ["web1", "web2"]}
    assert problems_of(rb, cli={"service": "nginx; rm -rf /", "hosts": "web1,web12"}) == [
        "runbooks/params-test.yml:7: parameters.service: 'nginx; rm -rf /' does not match the pattern [a-z]+",
        "runbooks/params-test.yml:8: parameters.hosts: 'web12' does not match the pattern web[0-9]",
    ]


def test_unknown_parameter_names(tmp_path: Path) -> None:
    rb = load(tmp_path, "  service: {type: string}\n  mode: {type: choice, choices: [a, b]}\n")

    assert problems_of(rb, cli={"servce": "nginx"}, file={"nope": 1, "servce": "x"}) == [
        "runbooks/params-test.yml: parameters.servce: unknown parameter (known: service, mode)",
        "runbooks/params-test.yml: parameters.nope: unknown parameter (known: service, mode)",
    ]


def test_secret_given_with_p_is_refused_without_showing_it(tmp_path: Path) -> None:
    rb = load(tmp_path, "  token: {type: secret, env: API_TOKEN}\n")

    problems = problems_of(rb, cli={"token": "hunter2-hunter2"})

    assert len(problems) == 1
    assert problems[0].startswith("runbooks/params-test.yml:7: parameters.token: a secret cannot be given with -p")
    assert "API_TOKEN" in problems[0]
    assert "hunter2-hunter2" not in problems[0]


def test_secret_from_env_is_used_and_removed_from_the_environment(tmp_path: Path) -> None:
    rb = load(tmp_path, "  token: {type: secret, env: API_TOKEN, required: true}\n  user: {type: string, env: API_USER}\n")
    environ = {"API_TOKEN": "hunter2-hunter2", "API_USER": "ops", "PATH": "/usr/bin"}

    resolved = resolve(rb, {}, {}, environ)

    assert resolved.values == {"token": "hunter2-hunter2", "user": "ops"}
    assert environ == {"API_USER": "ops", "PATH": "/usr/bin"}
    assert resolved.secret_names == frozenset({"token"})
    assert resolved.secret_values == ("hunter2-hunter2",)


def test_secret_shorter_than_the_minimum_is_refused_without_showing_it(tmp_path: Path) -> None:
    rb = load(tmp_path, "  token: {type: secret, env: API_TOKEN}\n")

    problems = problems_of(rb, environ={"API_TOKEN": "x" * (MIN_SECRET_LENGTH - 1)})

    assert problems == [f"runbooks/params-test.yml:7: parameters.token: *** is too short: a secret needs at least "
                        f"{MIN_SECRET_LENGTH} characters (the minimum length), a shorter one cannot be scrubbed "
                        "from output safely"]
    assert resolve(rb, {}, {}, {"API_TOKEN": "x" * MIN_SECRET_LENGTH}).secret_values == ("x" * MIN_SECRET_LENGTH,)


def test_only_the_secrets_own_variable_and_exact_copies_leave_the_environment(tmp_path: Path) -> None:
    """A variable that merely contains the secret (PATH, the state dir) is never edited; a copy of the
    whole value under another name goes, unless it is one runbook or its children need."""
    rb = load(tmp_path, "  token: {type: secret, env: API_TOKEN, required: true}\n")
    secret = "/usr/local/bin"
    environ = {"API_TOKEN": secret, "PATH": f"{secret}:/usr/bin", "RUNBOOK_STATE_DIR": f"/srv{secret}/state",
               "COPY_OF_IT": secret, "HOME": secret, "RUNBOOK_WORKSPACE": secret}

    resolve(rb, {}, {}, environ)

    assert environ == {"PATH": f"{secret}:/usr/bin", "RUNBOOK_STATE_DIR": f"/srv{secret}/state", "HOME": secret,
                       "RUNBOOK_WORKSPACE": secret}


def test_environment_untouched_when_parameters_are_invalid(tmp_path: Path) -> None:
    rb = load(tmp_path, "  token: {type: secret, env: API_TOKEN}\n  n: {type: integer}\n")
    environ = {"API_TOKEN": "hunter2-hunter2"}

    problems_of(rb, cli={"n": "x"}, environ=environ)

    assert environ == {"API_TOKEN": "hunter2-hunter2"}


def test_secret_that_breaks_its_pattern_is_not_shown(tmp_path: Path) -> None:
    rb = load(tmp_path, "  token: {type: secret, env: API_TOKEN, pattern: '[0-9a-f]{8}'}\n")

    problems = problems_of(rb, environ={"API_TOKEN": "hunter2-hunter2"})

    assert problems == ["runbooks/params-test.yml:7: parameters.token: *** does not match the pattern [0-9a-f]{8}"]


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    rb = load(tmp_path, "  service: {type: string, required: true}\n  pause: {type: integer, max: 600}\n"
                        "  mode: {type: choice, choices: [graceful, hard]}\n  token: {type: secret, env: TOK}\n")

    problems = problems_of(rb, cli={"pause": "900", "mode": "soft", "token": "x", "extra": "1"})

    assert [p.split(": ")[1] for p in problems] == [
        "parameters.extra", "parameters.service", "parameters.pause", "parameters.mode", "parameters.token",
    ]


def test_redacted_hides_secrets_only(tmp_path: Path) -> None:
    rb = load(tmp_path, "  token: {type: secret, env: API_TOKEN}\n  other: {type: secret}\n  service: {type: string}\n")

    resolved = resolve(rb, {"service": "nginx"}, {}, {"API_TOKEN": "hunter2-hunter2"})

    assert resolved.redacted() == {"token": REDACTED, "other": None, "service": "nginx"}
    assert "hunter2-hunter2" not in repr(resolved.redacted())


def test_coerce_checks_constraints_on_typed_values(tmp_path: Path) -> None:
    param = load(tmp_path, "  n: {type: integer, min: 1}\n").parameter("n")
    assert param is not None

    assert coerce(param, 5) == 5
    assert coerce(param, 5.0) == 5
    with pytest.raises(ValueError, match="below the minimum 1"):
        coerce(param, 0)
    with pytest.raises(ValueError, match="is not an integer"):
        coerce(param, True)


def history_rows(state: Path) -> int:
    db = state / "history.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


def test_run_with_bad_parameter_runs_nothing(alien: Path, state_dir: Path) -> None:
    done = runbook("-w", str(alien), "run", "disk-report", "-p", "path=/tmp", "-p", "min_free_mb=lots",
                   "-p", "mode=slow", env={"ALIEN_API_TOKEN": "t0ken-t0ken"})

    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    assert "runbooks/disk-report.yml:18: parameters.min_free_mb: 'lots' is not an integer" in lines
    assert "runbooks/disk-report.yml:19: parameters.mode: 'slow' is not one of fast, thorough" in lines
    assert history_rows(state_dir) == 0
    assert not (state_dir / "runs").exists() or not any((state_dir / "runs").iterdir())
    assert not (alien / ".runbook").exists()


def test_run_refuses_a_secret_on_the_command_line(alien: Path, state_dir: Path) -> None:
    done = runbook("-w", str(alien), "run", "disk-report", "-p", "path=/tmp", "-p", "api_token=hunter2")

    assert done.returncode == 3
    assert "runbooks/disk-report.yml:22: parameters.api_token: a secret cannot be given with -p" in done.stderr
    assert "hunter2-hunter2" not in done.stderr + done.stdout
    assert history_rows(state_dir) == 0


RESUMED = """apiVersion: runbook/v1
name: resumed-secret
title: A secret given again at resume
version: 1.0.0
kind: operation
targets: db
parameters:
  token: {type: secret, env: RESUMED_TOKEN, required: true}
steps:
  - name: ready
    manual: Get ready.
  - name: after
    playbook: note.yml
    vars: {message: after}
"""
def test_resume_checks_and_forgets_a_secret_given_again(alien: Path, state_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret given again at resume has the minimum length `run` asks for, and leaves runbook's own
    environment as it does at `run`: no variable whose whole value is the secret is left for a child
    (git, an ssh transport, ansible-inventory) to inherit."""
    from runner.commands.resume import execution_for
    from runner.definition.workspace import open_workspace
    from runner.store.backends import open_store

    (alien / "runbooks" / "resumed-secret.yml").write_text(RESUMED)
    token = "resumed-Secret-42"
    started = runbook("run", "resumed-secret", cwd=alien, env={"RESUMED_TOKEN": token})
    assert started.returncode == 5, started.stderr
    short = runbook("resume", "last", "--confirm", cwd=alien, env={"RESUMED_TOKEN": "x" * (MIN_SECRET_LENGTH - 1)})
    assert short.returncode == int(ExitCode.INVALID), short.stderr
    assert f"parameters.token: *** is too short: a secret needs at least {MIN_SECRET_LENGTH} characters" in short.stderr
    assert "x" * (MIN_SECRET_LENGTH - 1) not in short.stderr
    ws = open_workspace(str(alien))
    store = open_store(ws)
    record = store.load(store.resolve("last"))
    assert record.status == "waiting"
    monkeypatch.setenv("RESUMED_TOKEN", token)
    monkeypatch.setenv("COPY_OF_TOKEN", token)
    monkeypatch.setenv("HOLDS_TOKEN", f"Bearer {token}")  # merely contains it: kept whole, never edited
    execution = execution_for(ws, record, interactive=False)
    assert execution.request.params.values["token"] == token
    assert "RESUMED_TOKEN" not in os.environ and "COPY_OF_TOKEN" not in os.environ
    assert os.environ["HOLDS_TOKEN"] == f"Bearer {token}"
    done = runbook("resume", "last", "--confirm", cwd=alien, env={"RESUMED_TOKEN": token})
    assert done.returncode == 0, done.stderr
