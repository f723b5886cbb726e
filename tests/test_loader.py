"""The loader and `runbook validate`: every invalid fixture in tests/fixtures/invalid/ is reported exactly as
its `.expected` file says (file:line: key.path: message), all at once, with exit 3."""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
import yaml

from runner.definition.loader import load_runbook
from runner.definition.model import Parameter, Runbook, Step

try:
    from tests.conftest import FIXTURES, REPO, copy_workspace, runbook
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from conftest import FIXTURES, REPO, copy_workspace, runbook  # type: ignore[no-redef, unused-ignore]

INVALID = FIXTURES / "invalid"
INVALID_NAMES = sorted(p.stem for p in INVALID.glob("*.yml"))

VALID = """\
apiVersion: runbook/v1
name: {name}
title: A valid runbook
version: 1.0.0
kind: operation
steps:
  - name: check
    playbook: check.yml
"""

PLAY = """\
- name: Check
  hosts: all
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
"""


def empty_workspace(root: Path) -> Path:
    """A workspace with no runbooks, an empty playbooks/ and the embedded local inventory."""
    for folder in ("runbooks", "playbooks", "inventories"):
        (root / folder).mkdir(parents=True)
    shutil.copy(REPO / "inventories" / "local.yml", root / "inventories" / "local.yml")
    return root


def add_invalid(ws: Path, name: str) -> None:
    shutil.copy(INVALID / f"{name}.yml", ws / "runbooks" / f"{name}.yml")


def problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("runbooks/", "playbooks/"))]


def expected_lines(name: str) -> list[str]:
    return (INVALID / f"{name}.expected").read_text(encoding="utf-8").splitlines()


def test_every_invalid_fixture_has_its_expectation() -> None:
    assert len(INVALID_NAMES) >= 20
    assert sorted(p.stem for p in INVALID.glob("*.expected")) == INVALID_NAMES
    for name in INVALID_NAMES:
        assert expected_lines(name), name
        assert all(line.startswith(f"runbooks/{name}.yml") for line in expected_lines(name)), name
        if name not in ("name-not-stem", "invalid-yaml", "invalid-yaml-unclosed-quote"):
            # each fixture is wrong in its own way only: its name is right
            assert yaml.safe_load((INVALID / f"{name}.yml").read_text(encoding="utf-8"))["name"] == name


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_runbook_reported_with_file_line_and_key_path(tmp_path: Path, name: str) -> None:
    ws = empty_workspace(tmp_path / "ws")
    add_invalid(ws, name)

    done = runbook("-w", str(ws), "validate", "--no-syntax-check", name)

    assert done.returncode == 3, done.stderr
    assert problem_lines(done.stderr) == expected_lines(name)
    count = re.search(r"^(\d+) problem", done.stderr, re.MULTILINE)
    assert count and int(count.group(1)) == len(expected_lines(name))
    assert "ok " not in done.stdout


def test_all_problems_of_all_files_reported_in_one_call(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path / "ws")
    add_invalid(ws, "bad-duration")
    add_invalid(ws, "several-errors")
    (ws / "runbooks" / "good.yml").write_text(VALID.format(name="good"), encoding="utf-8")
    (ws / "playbooks" / "check.yml").write_text(PLAY, encoding="utf-8")

    done = runbook("-w", str(ws), "validate", "--no-syntax-check")

    assert done.returncode == 3, done.stderr
    assert sorted(problem_lines(done.stderr)) == sorted(expected_lines("bad-duration") + expected_lines("several-errors"))
    assert "ok  good 1.0.0" in done.stdout.splitlines()


def test_valid_runbook_loads_into_frozen_dataclasses(alien: Path) -> None:
    loaded = load_runbook(alien / "runbooks" / "disk-report.yml")

    assert isinstance(loaded, Runbook)
    assert (loaded.name, loaded.version, loaded.kind, loaded.concurrency) == ("disk-report", "2.1.0", "operation", "parallel")
    assert loaded.tags == ("lab", "report")
    assert all(isinstance(p, Parameter) for p in loaded.parameters)
    assert [p.name for p in loaded.parameters] == ["path", "min_free_mb", "mode", "verbose", "extra_dirs", "api_token"]
    assert loaded.parameter("mode") == Parameter(name="mode", type="choice", default="fast", choices=("fast", "thorough"),
                                                 line=19)
    assert isinstance(loaded.steps[0], Step) and loaded.steps[0].playbook == "report.yml"
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.version = "9.9.9"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.steps[0].playbook = "other.yml"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.parameters[0].default = "/"  # type: ignore[misc]
    with pytest.raises(TypeError):
        loaded.steps[0].vars["injected"] = 1  # type: ignore[index]


def test_step_timeouts_and_vars_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "typed.yml"
    path.write_text(VALID.format(name="typed") + "    timeout: 1h30m\n    vars: {min_free: 10}\ntimeout: 2h\n",
                    encoding="utf-8")

    loaded = load_runbook(path)

    assert loaded.timeout == 7200
    assert loaded.steps[0].timeout == 5400
    assert dict(loaded.steps[0].vars) == {"min_free": 10}


def test_keys_are_text_even_where_yaml_1_1_reads_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "switches.yml"
    path.write_text(VALID.format(name="switches") + "    vars: {yes: 1}\n"
                    "parameters:\n  on: {type: boolean, default: true}\n  no: {type: string, default: x}\n",
                    encoding="utf-8")

    loaded = load_runbook(path)

    assert [p.name for p in loaded.parameters] == ["on", "no"]
    assert dict(loaded.steps[0].vars) == {"yes": 1}


def test_repository_workspace_validates_with_syntax_check(tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "repo")
    names = sorted(p.stem for p in (ws / "runbooks").glob("*.yml"))

    done = runbook("-w", str(ws), "validate")

    assert done.returncode == 0, done.stderr
    assert "health-check" in names
    listed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("ok ")]
    assert listed == names


def test_syntax_check_names_the_broken_playbook(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path / "ws")
    (ws / "runbooks" / "broken.yml").write_text(VALID.format(name="broken").replace("check.yml", "broken.yml"),
                                                encoding="utf-8")
    (ws / "runbooks" / "fine.yml").write_text(VALID.format(name="fine"), encoding="utf-8")
    (ws / "playbooks" / "check.yml").write_text(PLAY, encoding="utf-8")
    misindented = PLAY + "     - name: One column too far left\n       ansible.builtin.debug: {msg: x}\n"
    (ws / "playbooks" / "broken.yml").write_text(misindented, encoding="utf-8")

    done = runbook("-w", str(ws), "validate")

    assert done.returncode == 3, done.stderr
    problems = problem_lines(done.stderr)
    assert len(problems) == 1, done.stderr
    assert problems[0].startswith("playbooks/broken.yml:8: syntax check: "), problems
    assert "did not find expected '-' indicator" in problems[0]
    assert "ok  fine 1.0.0" in done.stdout.splitlines()
    assert "broken" not in done.stdout  # its playbook failed: the runbook is not ok


def test_syntax_check_skipped_on_request(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path / "ws")
    (ws / "runbooks" / "broken.yml").write_text(VALID.format(name="broken"), encoding="utf-8")
    (ws / "playbooks" / "check.yml").write_text("- name: [unclosed\n", encoding="utf-8")

    done = runbook("-w", str(ws), "validate", "--no-syntax-check")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ok  broken 1.0.0"]


def test_missing_playbook_and_inventory_are_reference_errors(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path / "ws")
    (ws / "runbooks" / "refs.yml").write_text(
        "apiVersion: runbook/v1\n"
        "name: refs\n"
        "title: References to things that do not exist\n"
        "version: 1.0.0\n"
        "kind: operation\n"
        "inventory: nowhere\n"
        "steps:\n"
        "  - name: check\n"
        "    playbook: missing.yml\n"
        "schedule:\n"
        "  - cron: '@daily'\n"
        "    inventory: elsewhere\n",
        encoding="utf-8",
    )

    done = runbook("-w", str(ws), "validate", "--no-syntax-check", "refs")

    assert done.returncode == 3, done.stderr
    assert sorted(problem_lines(done.stderr)) == sorted([
        "runbooks/refs.yml:6: inventory: no inventory 'nowhere': not in inventories/ (known: local) and not a path",
        "runbooks/refs.yml:9: steps[0].playbook: 'missing.yml' not found in playbooks/",
        "runbooks/refs.yml:12: schedule[0].inventory: no inventory 'elsewhere': not in inventories/ "
        "(known: local) and not a path",
    ])
    assert done.stdout == ""


def test_validate_unknown_name_is_a_usage_error(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path / "ws")
    (ws / "runbooks" / "good.yml").write_text(VALID.format(name="good"), encoding="utf-8")

    done = runbook("-w", str(ws), "validate", "--no-syntax-check", "nothing-here")

    assert done.returncode == 2
    assert "no runbook named 'nothing-here'" in done.stderr
    assert "known: good" in done.stderr
