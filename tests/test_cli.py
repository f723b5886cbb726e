"""The command line as a user meets it: help, usage errors, the catalog, `show`, workspace resolution, `init`;
and runner.definition.cron, the cron syntax `schedule:` entries use."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from runner.cli import cli
from runner.definition.cron import parse_cron

import yaml

from conftest import FIXTURES, copy_workspace, runbook

COMMANDS = ("list", "show", "validate", "run", "history", "log", "init",
            "resume", "approve", "cancel", "report", "capacity", "docs", "schedule", "prune", "site")  # the CLI table


@pytest.fixture(scope="module")
def help_commands() -> list[str]:
    done = runbook("--help")
    assert done.returncode == 0, done.stderr
    section = done.stdout.split("Commands:", 1)[1]
    return re.findall(r"^  (\S+)", section, re.MULTILINE)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_command(help_commands: list[str], command: str) -> None:
    assert command in help_commands


def test_help_lists_nothing_but_registered_commands(help_commands: list[str]) -> None:
    assert sorted(help_commands) == sorted(cli.commands)


def test_run_help_gives_every_exit_code() -> None:
    done = runbook("run", "--help")

    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for code, meaning in [("0", "succeeded"), ("1", "failed"), ("2", "usage error"), ("3", "invalid runbook"),
                          ("4", "hosts unreachable"), ("5", "waiting"), ("6", "locked"), ("124", "timed out"),
                          ("130", "canceled")]:
        assert f"{code} {meaning}" in text, code


def test_unknown_option_is_a_usage_error(alien: Path) -> None:
    done = runbook("-w", str(alien), "list", "--bogus")

    assert done.returncode == 2
    assert "No such option" in done.stderr and "--bogus" in done.stderr
    assert done.stdout == ""


def test_missing_argument_is_a_usage_error(alien: Path) -> None:
    done = runbook("-w", str(alien), "show")

    assert done.returncode == 2
    assert "Missing argument 'NAME'" in done.stderr


def test_unknown_command_is_a_usage_error() -> None:
    done = runbook("explode")

    assert done.returncode == 2
    assert "No such command" in done.stderr


# --- the catalog -------------------------------------------------------------------------------------------

def _catalog_from_files() -> dict[str, tuple[str, str, str, str]]:
    """What the fixture files say, read here with plain YAML: the catalog must show exactly this."""
    catalog = {}
    for path in sorted((FIXTURES / "alien-workspace" / "runbooks").glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        catalog[data["name"]] = (data["version"], data["kind"], data["title"], data.get("owner", ""))
    return catalog


ALIEN_CATALOG = _catalog_from_files()


def list_json(workspace: Path, *options: str) -> list[dict[str, object]]:
    done = runbook("-w", str(workspace), "list", "--json", *options)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, list)
    return data


def test_list_table(alien: Path) -> None:
    done = runbook("-w", str(alien), "list")

    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "KIND", "TITLE", "OWNER"]
    assert [row.split()[0] for row in rows] == sorted(ALIEN_CATALOG)
    disk = next(row for row in rows if row.startswith("disk-report "))
    assert re.fullmatch(r"disk-report\s+2\.1\.0\s+operation\s+Report on a path on every lab host\s+lab-team", disk)


def test_list_json(alien: Path) -> None:
    data = list_json(alien)

    found = {e["name"]: (e["version"], e["kind"], e["title"], e["owner"]) for e in data}
    assert found == ALIEN_CATALOG
    disk = next(e for e in data if e["name"] == "disk-report")
    assert disk["tags"] == ["lab", "report"]


def test_list_filters_by_tag_and_kind(alien: Path) -> None:
    assert [e["name"] for e in list_json(alien, "--tag", "lab")] == ["disk-report"]
    maintenance = sorted(n for n, (_, kind, _, _) in ALIEN_CATALOG.items() if kind == "maintenance")
    assert "fail-on-host" in maintenance and "conditional" not in maintenance
    assert [e["name"] for e in list_json(alien, "--kind", "maintenance")] == maintenance
    assert [e["name"] for e in list_json(alien, "--kind", "operation", "--tag", "report")] == ["disk-report"]
    assert list_json(alien, "--tag", "nothing-has-this") == []


def test_list_with_no_match_says_so_on_stderr(alien: Path) -> None:
    done = runbook("-w", str(alien), "list", "--tag", "nothing-has-this")

    assert done.returncode == 0
    assert done.stdout == ""
    assert "no runbooks match" in done.stderr


def test_list_refuses_an_unknown_kind(alien: Path) -> None:
    done = runbook("-w", str(alien), "list", "--kind", "ritual")

    assert done.returncode == 2
    assert "ritual" in done.stderr


def test_list_returns_all_of_200_runbooks(tmp_path: Path) -> None:
    ws = tmp_path / "big"
    (ws / "runbooks").mkdir(parents=True)
    names = [f"task-{i:03d}" for i in range(200)]
    for i, name in enumerate(names):
        (ws / "runbooks" / f"{name}.yml").write_text(
            f"apiVersion: runbook/v1\nname: {name}\ntitle: Generated runbook {i}\nversion: 1.{i}.0\n"
            f"kind: {'maintenance' if i % 2 else 'operation'}\nowner: team-{i % 7}\n"
            "steps:\n  - name: look\n    manual: Look.\n",
            encoding="utf-8",
        )

    data = list_json(ws)

    assert [e["name"] for e in data] == names
    assert data[123] == {"name": "task-123", "version": "1.123.0", "kind": "maintenance",
                         "title": "Generated runbook 123", "owner": "team-4", "tags": [], "maintenance_type": ""}
    assert len(list_json(ws, "--kind", "operation")) == 100


# --- show --------------------------------------------------------------------------------------------------


def test_show_describes_the_procedure(alien: Path) -> None:
    done = runbook("-w", str(alien), "show", "disk-report")

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.splitlines()[0] == "disk-report 2.1.0: Report on a path on every lab host"
    assert "Checks a path exists on every host" in out
    params = out.split("Parameters", 1)[1].split("Steps:", 1)[0]
    for name in ("path", "min_free_mb", "mode", "verbose", "extra_dirs", "api_token"):
        assert re.search(rf"^\s+{name}\s", params, re.MULTILINE), name
    assert re.search(r"^\s+path\s+string \*\s+Absolute path to check", params, re.MULTILINE)
    assert "ALIEN_API_TOKEN" in params
    steps = out.split("Steps:", 1)[1]
    tasks = [line.strip()[2:] for line in steps.splitlines() if line.strip().startswith("- ")]
    assert "1. report (playbook: report.yml)" in steps
    assert tasks == ["play: Disk report", "greet : Say hello from the role", "Check the path exists",
                     "Fail when the path is missing", "Show the typed parameters", "Use the token (hidden)"]


def test_show_json(alien: Path) -> None:
    done = runbook("-w", str(alien), "show", "disk-report", "--json")

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["name"], data["version"]) == ("disk-report", "2.1.0")
    assert [p["name"] for p in data["parameters"]][:2] == ["path", "min_free_mb"]
    assert "greet : Say hello from the role" in data["steps"][0]["tasks"]


def test_show_unknown_runbook_is_a_usage_error(alien: Path) -> None:
    done = runbook("-w", str(alien), "show", "nope")

    assert done.returncode == 2
    assert "no runbook named 'nope'" in done.stderr


# --- workspace resolution ----------------------------------------------------------------------------------


def listed_names(done_stdout: str) -> set[str]:
    return {line.split()[0] for line in done_stdout.splitlines()[1:]}


def test_workspace_from_option(alien: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    done = runbook("-w", str(alien), "list", cwd=elsewhere)

    assert done.returncode == 0, done.stderr
    assert listed_names(done.stdout) == set(ALIEN_CATALOG)


def test_workspace_from_environment(alien: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    done = runbook("list", cwd=elsewhere, env={"RUNBOOK_WORKSPACE": str(alien)})

    assert done.returncode == 0, done.stderr
    assert listed_names(done.stdout) == set(ALIEN_CATALOG)


def test_option_wins_over_environment(alien: Path, tmp_path: Path) -> None:
    repo = copy_workspace("repo", tmp_path / "repo")

    done = runbook("-w", str(alien), "list", cwd=tmp_path, env={"RUNBOOK_WORKSPACE": str(repo)})

    assert done.returncode == 0, done.stderr
    assert listed_names(done.stdout) == set(ALIEN_CATALOG)


def test_workspace_is_the_nearest_ancestor_holding_runbooks(alien: Path) -> None:
    deep = alien / "roles" / "greet" / "tasks"

    done = runbook("list", cwd=deep)

    assert done.returncode == 0, done.stderr
    assert listed_names(done.stdout) == set(ALIEN_CATALOG)


def test_nested_workspace_wins_over_its_parent(alien: Path) -> None:
    inner = alien / "playbooks" / "inner"
    (inner / "runbooks").mkdir(parents=True)
    (inner / "runbooks" / "only-inner.yml").write_text(
        "apiVersion: runbook/v1\nname: only-inner\ntitle: Inner\nversion: 1.0.0\nkind: operation\n"
        "steps:\n  - name: look\n    manual: Look.\n", encoding="utf-8")

    done = runbook("list", cwd=inner)

    assert done.returncode == 0, done.stderr
    assert listed_names(done.stdout) == {"only-inner"}


def test_outside_any_workspace_is_a_clear_usage_error(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    assert not any((folder / "runbooks").is_dir() for folder in (nowhere, *nowhere.parents))

    done = runbook("list", cwd=nowhere)

    assert done.returncode == 2
    assert "no workspace here" in done.stderr
    assert "runbook init" in done.stderr
    assert "Traceback" not in done.stderr


def test_workspace_option_that_is_not_a_workspace(tmp_path: Path) -> None:
    done = runbook("-w", str(tmp_path), "list")

    assert done.returncode == 2
    assert "is not a workspace" in done.stderr


# --- init --------------------------------------------------------------------------------------------------


def test_init_creates_a_workspace_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "new" / "ops"

    done = runbook("init", str(target), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    for folder in ("runbooks", "playbooks", "roles", "inventories"):
        assert (target / folder).is_dir(), folder
    assert (target / "inventories" / "local.yml").is_file()
    checked = runbook("validate", "--no-syntax-check", cwd=target)
    assert checked.returncode == 0, checked.stderr
    assert "ok  health-check " in checked.stdout
    listed = runbook("-w", str(target), "list", "--json")
    assert "health-check" in [e["name"] for e in json.loads(listed.stdout)]


def test_init_refuses_an_existing_workspace(alien: Path) -> None:
    before = sorted(p.name for p in (alien / "runbooks").iterdir())

    done = runbook("init", str(alien))

    assert done.returncode == 2
    assert "already a workspace" in done.stderr
    assert sorted(p.name for p in (alien / "runbooks").iterdir()) == before
    assert not (alien / "runbooks" / "health-check.yml").exists()


# --- runner.definition.cron -------------------------------------------------------------------------------------------

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("expression", "after", "due"), [
    # 2026-11-25 is a Wednesday; the next Sunday is 2026-11-29
    ("0 3 * * 0", "2026-11-25 12:00", "2026-11-29 03:00"),
    ("0 3 * * sun", "2026-11-29 02:59", "2026-11-29 03:00"),
    ("0 3 * * 7", "2026-11-29 03:00", "2026-12-06 03:00"),  # strictly after; 7 is Sunday too
    ("*/15 * * * *", "2026-11-25 10:07:30", "2026-11-25 10:15"),
    ("*/15 * * * *", "2026-11-25 10:15", "2026-11-25 10:30"),
    ("30 2 * * mon-fri", "2026-11-27 03:00", "2026-11-30 02:30"),  # Friday after 02:30 -> Monday
    ("0 0 1 * *", "2026-12-31 23:59", "2027-01-01 00:00"),
    ("@daily", "2026-11-25 00:00", "2026-11-26 00:00"),
    ("@hourly", "2026-11-25 23:30", "2026-11-26 00:00"),
    ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),  # the next leap day
    ("0 12 13 * 5", "2026-11-25 00:00", "2026-11-27 12:00"),  # day 13 OR Friday: Friday 27th comes first
    ("0 12 13 * 5", "2026-12-05 00:00", "2026-12-11 12:00"),
    ("5,35 8-9 * jan *", "2026-11-25 00:00", "2027-01-01 08:05"),
    ("0 0 */2 * 1", "2026-11-25 12:00", "2026-12-07 00:00"),  # '*/2' counts as '*': odd day AND Monday, as cron does
])
def test_cron_next_after(expression: str, after: str, due: str) -> None:
    assert parse_cron(expression).next_after(at(after)) == at(due)


@pytest.mark.parametrize(("expression", "before", "due"), [
    ("0 3 * * 0", "2026-11-25 12:00", "2026-11-22 03:00"),
    ("0 3 * * 0", "2026-11-29 03:00", "2026-11-29 03:00"),  # at or before
    ("*/15 * * * *", "2026-11-25 10:14:59", "2026-11-25 10:00"),
    ("0 0 1 * *", "2026-03-15 08:00", "2026-03-01 00:00"),
    ("30 2 * * mon-fri", "2026-11-30 01:00", "2026-11-27 02:30"),
])
def test_cron_previous_before(expression: str, before: str, due: str) -> None:
    assert parse_cron(expression).previous_before(at(before)) == at(due)


def test_cron_previous_before_gives_up_after_400_days() -> None:
    assert parse_cron("0 0 29 2 *").previous_before(at("2027-06-01 00:00")) is None


def test_cron_keeps_the_time_zone() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    due = parse_cron("0 3 * * *").next_after(dt.datetime(2026, 11, 25, 12, 0, tzinfo=paris))
    assert due == dt.datetime(2026, 11, 26, 3, 0, tzinfo=paris)
    assert due.utcoffset() == dt.timedelta(hours=1)


@pytest.mark.parametrize(("expression", "field"), [
    ("61 * * * *", "minute"),
    ("0 25 * * *", "hour"),
    ("0 0 32 * *", "day of month"),
    ("0 0 0 * *", "day of month"),
    ("0 0 * 13 *", "month"),
    ("0 0 * * 8", "day of week"),
    ("x * * * *", "minute"),
    ("0 0 * foo *", "month"),
    ("*/0 * * * *", "minute"),
    ("0 5-1 * * *", "hour"),
])
def test_cron_invalid_field_is_named(expression: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} field"):
        parse_cron(expression)


@pytest.mark.parametrize("expression", ["0 3 * *", "0 3 * * * *", "", "@fortnightly"])
def test_cron_wrong_number_of_fields(expression: str) -> None:
    with pytest.raises(ValueError, match="5 fields"):
        parse_cron(expression)
