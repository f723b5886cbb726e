"""`runbook schedule`: the workspace's block in the real crontab, its lines run as cron runs them (bare
environment, cwd /), lock refusals in the cron log, and each schedule's status; runner.schedule.schedule's pure
functions for the cases a clock cannot give on demand (a due time missed since install)."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.schedule import checks, firings, schedule
from runner.definition.cron import parse_cron
from runner.errors import InvalidError, RunbookError
from runner.definition.model import Schedule
from runner.schedule.schedule import CronRun, Entry
from runner.definition.workspace import open_workspace

try:
    from tests.conftest import IN_CI, copy_workspace, runbook
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from conftest import IN_CI, copy_workspace, runbook  # type: ignore[no-redef, unused-ignore]

FOREIGN = (
    "# the user's own crontab: every byte of it must survive\n"
    'MAILTO=""\n'
    "SHELL=/bin/bash\n"
    "\n"
    "*/5 * * * * /bin/true backup --quiet  # keep (harmless where a cron daemon runs the tests' crontab)\n"
    "0 1 * * * /bin/true date +\\%F\n"
)
AFTER = "@reboot /usr/bin/true after-the-block\n"
BARE = ["env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c"]  # cron's environment: no HOME, no venv


# -- the real crontab ----------------------------------------------------------------------------------
def read_crontab() -> str | None:
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


def write_crontab(text: str | None) -> None:
    if text is None:
        subprocess.run(["crontab", "-r"], capture_output=True, check=False)
    else:
        subprocess.run(["crontab", "-"], input=text, text=True, check=True)


@pytest.fixture
def crontab() -> Iterator[None]:
    """The current user's real crontab, saved before the test and put back after it. Without a crontab
    binary: fail under CI (tests/install-test-deps.sh installs cron), skip elsewhere."""
    if shutil.which("crontab") is None:
        message = "crontab not found: run tests/install-test-deps.sh (installs cron)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    saved = read_crontab()
    try:
        yield
    finally:
        write_crontab(saved)


def block_lines(text: str, root: Path) -> list[str]:
    return [i.line for i in schedule.installed_entries(text, root)]


def run_as_cron(line: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BARE, schedule.cron_command(line)], cwd="/", capture_output=True, text=True,
                          timeout=timeout, check=False)


def history(ws: Path, *args: str) -> list[dict[str, object]]:
    done = runbook("-w", str(ws), "history", "--json", *args)
    assert done.returncode == 0, done.stderr
    result: list[dict[str, object]] = json.loads(done.stdout)
    return result


def add_schedule(ws: Path, name: str, text: str) -> None:
    path = ws / "runbooks" / f"{name}.yml"
    path.write_text(path.read_text() + text)


# -- install -----------------------------------------------------------------------------------------------
def test_install_keeps_foreign_lines_byte_for_byte_and_twice_is_the_same(crontab: None, alien: Path,
                                                                          state_dir: Path) -> None:
    other_block = "# BEGIN runbook /srv/other\n0 4 * * * /srv/other/run\n# END runbook /srv/other\n"
    write_crontab(FOREIGN + other_block)

    first = runbook("-w", str(alien), "schedule", "install")
    assert first.returncode == 0, first.stderr
    once = read_crontab()
    assert once is not None and once.startswith(FOREIGN + other_block)
    lines = block_lines(once, alien)
    assert len(lines) == 2  # nightly-note's two schedule entries
    assert once[len(FOREIGN + other_block):].startswith(schedule.begin_marker(alien) + "\n")
    assert once.endswith(schedule.end_marker(alien) + "\n")

    write_crontab(once + AFTER)  # a line the user added below the block later
    again = runbook("-w", str(alien), "schedule", "install")
    assert again.returncode == 0, again.stderr
    assert read_crontab() == once + AFTER
    assert "already installed" in again.stdout

    log = state_dir / "logs" / "cron.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    venv_runbook = str(Path(sys.executable).parent / "runbook")
    for line in lines:
        assert f" {venv_runbook} -w {alien} run nightly-note " in line
        assert "--trigger cron -q " in line
        assert f"RUNBOOK_STATE_DIR={state_dir} " in line  # runs land where `runbook history` looks
        assert f">>{log} 2>&1" in line
    assert lines[0].startswith("30 2 * * * ") and lines[1].startswith("0 12 * * 1-5 ")
    assert "-p 'message=nightly: 100\\% done, it'\"'\"'s fine'" in lines[0]  # % escaped for cron
    assert f"-i {alien}/inventories/lab.yml -l db1 -p message=midday" in lines[1]


def test_each_installed_line_runs_under_crons_bare_environment(crontab: None, alien: Path, state_dir: Path) -> None:
    write_crontab(FOREIGN)
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    lines = block_lines(read_crontab() or "", alien)

    for line in lines:
        done = run_as_cron(line)
        assert done.returncode == 0 and done.stdout == done.stderr == ""  # all of it went to the log

    runs = history(alien, "nightly-note")
    assert [(r["trigger"], r["status"], r["exit_code"]) for r in runs] == [("cron", "succeeded", 0)] * 2
    assert [r["limit"] for r in runs] == ["db:&db1", "db"]  # newest first: schedule[1] ran last
    records = [json.loads((state_dir / "runs" / str(r["id"]) / "run.json").read_text()) for r in runs]
    assert [r["params"] for r in records] == [{"message": "midday"}, {"message": "nightly: 100% done, it's fine"}]
    notes = [s.get("data", {}).get("notes") for r in records for s in r["steps"]]
    assert {"db1": "nightly: 100% done, it's fine"} in notes  # the playbook got the exact text
    log = (state_dir / "logs" / "cron.log").read_text()
    assert log.count(": succeeded in ") == 2


def test_an_overlapping_cron_run_hits_the_lock_exits_6_and_says_so_in_the_log(crontab: None, alien: Path,
                                                                               state_dir: Path) -> None:
    add_schedule(alien, "sleeper", 'schedule:\n  - cron: "0 3 1 1 *"\n    params: {seconds: 60}\n')
    write_crontab("")
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    line = next(x for x in block_lines(read_crontab() or "", alien) if " run sleeper " in x)

    holder = subprocess.Popen(BARE + [schedule.cron_command(line)], cwd="/", start_new_session=True)
    try:
        running = _wait_for_running(alien, "sleeper")
        second = run_as_cron(line)
        assert second.returncode == 0  # the shell's own status: the refusal is reported in the log
        log = (state_dir / "logs" / "cron.log").read_text()
        assert f"lock 'shared-lock' is held by run {running}" in log
        assert "runbook cron: sleeper exit 6 at " in log
        assert [r["id"] for r in history(alien, "sleeper")] == [running]  # the refused run left no record
        refusals = state_dir / "schedule" / "sleeper.0.refusals.json"
        assert stat.S_IMODE(refusals.stat().st_mode) == 0o600  # ...but the refusal is kept where status reads it
        status = runbook("-w", str(alien), "schedule", "status", "--json")
        assert status.returncode == 1, status.stderr
        sleeper = next(s for s in json.loads(status.stdout) if s["runbook"] == "sleeper")
        operator = history(alien, "sleeper")[0]["operator"]
        assert (sleeper["state"], sleeper["problem"], sleeper["last_firing"]) == ("REFUSED", "refused", "refusal")
        assert sleeper["last_refusal"]["outcome"].startswith(f"refused: locked by {running} ({operator}")
        assert f"REFUSED: sleeper schedule[0] (0 3 1 1 *): its last cron firing at " in status.stderr
    finally:
        runbook("-w", str(alien), "cancel", "last")
        holder.wait(timeout=60)


def _wait_for_running(ws: Path, name: str) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = history(ws, name)
        if runs and runs[0]["status"] == "running":
            return str(runs[0]["id"])
        time.sleep(0.3)
    raise AssertionError(f"{name} never started")


def test_install_refuses_an_invalid_runbook_and_leaves_the_crontab(crontab: None, alien: Path) -> None:
    write_crontab(FOREIGN)
    (alien / "runbooks" / "broken.yml").write_text("apiVersion: runbook/v1\nname: broken\n")

    done = runbook("-w", str(alien), "schedule", "install")

    assert done.returncode == 3
    assert "runbooks/broken.yml" in done.stderr
    assert read_crontab() == FOREIGN


# -- remove ------------------------------------------------------------------------------------------------
def test_remove_leaves_only_the_foreign_lines_and_other_workspaces(crontab: None, alien: Path,
                                                                   tmp_path: Path) -> None:
    second = copy_workspace("alien-workspace", tmp_path / "second")
    write_crontab(FOREIGN)
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    assert runbook("-w", str(second), "schedule", "install").returncode == 0
    both = read_crontab() or ""
    assert len(block_lines(both, alien)) == len(block_lines(both, second)) == 2

    done = runbook("-w", str(alien), "schedule", "remove")

    assert done.returncode == 0, done.stderr
    assert read_crontab() == schedule.remove(both, alien) == FOREIGN + schedule.split_crontab(both, second)[1]
    assert runbook("-w", str(second), "schedule", "remove").returncode == 0
    assert read_crontab() == FOREIGN
    again = runbook("-w", str(second), "schedule", "remove")
    assert again.returncode == 0 and "nothing removed" in again.stdout


def test_remove_of_the_only_block_removes_the_crontab(crontab: None, alien: Path) -> None:
    write_crontab(None)
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    assert runbook("-w", str(alien), "schedule", "remove").returncode == 0
    assert read_crontab() is None


# -- list and status ---------------------------------------------------------------------------------------
def test_list_json_shows_each_entry_and_whether_the_crontab_runs_it(crontab: None, alien: Path) -> None:
    write_crontab(FOREIGN)
    before = _list(alien)
    assert [(e["runbook"], e["index"], e["cron"], e["installed"]) for e in before] == [
        ("nightly-note", 0, "30 2 * * *", False), ("nightly-note", 1, "0 12 * * mon-fri", False)]
    assert before[1]["params"] == {"message": "midday"} and before[1]["inventory"] == "lab"
    due = dt.datetime.fromisoformat(str(before[0]["next_due"]))
    assert (due.hour, due.minute) == (2, 30)
    assert dt.timedelta(0) < due - dt.datetime.now().astimezone() <= dt.timedelta(days=1)

    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    installed = _list(alien)
    assert [e["install_state"] for e in installed] == ["yes", "yes"]
    first_install = [e["installed_at"] for e in installed]

    path = alien / "runbooks" / "nightly-note.yml"
    path.write_text(path.read_text().replace("message: midday", "message: noon"))
    assert [e["install_state"] for e in _list(alien)] == ["yes", "outdated"]
    time.sleep(1.1)  # the install time has a one-second resolution
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    after = _list(alien)
    assert [e["install_state"] for e in after] == ["yes", "yes"]
    assert after[0]["installed_at"] == first_install[0] and after[1]["installed_at"] != first_install[1]

    human = runbook("-w", str(alien), "schedule", "list")
    assert human.returncode == 0 and "message=noon" in human.stdout and "INSTALLED" in human.stdout


def _list(ws: Path) -> list[dict[str, object]]:
    done = runbook("-w", str(ws), "schedule", "list", "--json")
    assert done.returncode == 0, done.stderr
    result: list[dict[str, object]] = json.loads(done.stdout)
    return result


def test_status_shows_the_last_cron_run_the_next_due_time_and_a_missed_run(crontab: None, alien: Path) -> None:
    write_crontab(FOREIGN)
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    fresh = runbook("-w", str(alien), "schedule", "status", "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert [s["state"] for s in json.loads(fresh.stdout)] == ["pending", "pending"]  # nothing due since install

    # Installed a week ago: both entries had a due time since, and cron ran neither of them.
    ws = open_workspace(str(alien))
    runbooks, _ = schedule.scheduled_runbooks(ws)
    text = read_crontab() or ""
    week_ago = schedule.install(schedule.remove(text, ws.root), ws.root, schedule.entries(ws, runbooks),
                                time.time() - 7 * 86400)
    assert block_lines(week_ago, alien) == block_lines(text, alien)
    write_crontab(week_ago)
    assert run_as_cron(block_lines(week_ago, alien)[1]).returncode == 0  # a cron run now, at no due time

    done = runbook("-w", str(alien), "schedule", "status", "--json")

    assert done.returncode == 1  # something was missed
    statuses = json.loads(done.stdout)
    assert [(s["state"], s["missed"]) for s in statuses] == [("MISSED", True)] * 2
    last = history(alien, "nightly-note")[0]
    assert statuses[0]["last_run"] is None  # schedule[1] fired, not schedule[0]: each entry has its own last run
    assert statuses[1]["last_run"]["id"] == last["id"]
    assert (statuses[1]["last_run"]["status"], statuses[1]["last_run"]["exit_code"]) == ("succeeded", 0)
    for status in statuses:
        expected = parse_cron(status["cron"]).next_after(dt.datetime.now()).astimezone()
        assert dt.datetime.fromisoformat(status["next_due"]) == expected
    assert "MISSED: nightly-note schedule[0] (30 2 * * *) was due at" in done.stderr
    human = runbook("-w", str(alien), "schedule", "status")
    assert human.returncode == 1
    assert "succeeded" in human.stdout and "MISSED" in human.stdout and "schedule[1]" in human.stdout


def test_status_help_documents_the_exit_codes() -> None:
    done = runbook("schedule", "status", "--help")
    assert done.returncode == 0 and "1 when an entry is MISSED" in " ".join(done.stdout.split())


# -- runner.schedule.schedule, pure -----------------------------------------------------------------------------------
NOW = dt.datetime(2026, 3, 11, 9, 0)  # a Wednesday, naive local time as cron reads the crontab
DAILY = Entry("nightly", 0, Schedule("30 2 * * *"), "30 2 * * * /x/runbook run nightly")


def at(*fields: int) -> float:
    return dt.datetime(*fields).timestamp()  # type: ignore[arg-type]


def installed_since(when: float, entry: Entry = DAILY) -> list[schedule.Installed]:
    return schedule.installed_entries(schedule.install("", Path("/ws"), [entry], when), Path("/ws"))


def test_install_merges_into_text_and_remove_gives_it_back() -> None:
    root = Path("/srv/ops workspace")
    once = schedule.install(FOREIGN + AFTER, root, [DAILY], at(2026, 3, 1))
    assert once.startswith(FOREIGN + AFTER) and once.endswith(schedule.end_marker(root) + "\n")
    moved = schedule.remove(once, root) + "# later\n" + schedule.split_crontab(once, root)[1] + "# last\n"
    assert schedule.install(moved, root, [DAILY], at(2026, 3, 9)) == moved  # in place, install time kept
    assert schedule.remove(once, root) == FOREIGN + AFTER
    assert schedule.install("MAILTO=x", root, [DAILY], 0).startswith("MAILTO=x\n# BEGIN runbook ")
    assert schedule.install(once, root, [], 0) == FOREIGN + AFTER  # nothing scheduled: no block
    assert schedule.installed_entries(once, Path("/srv/ops")) == []  # another workspace's block is not ours


def test_an_unterminated_block_is_refused() -> None:
    broken = f"{schedule.begin_marker(Path('/ws'))}\n* * * * * x\n"
    with pytest.raises(RunbookError, match="without its"):
        schedule.install(broken, Path("/ws"), [DAILY], 0)


def test_cron_time_and_command_are_what_cron_reads() -> None:
    assert schedule.cron_time("0 12 * jan-mar mon-fri") == "0 12 * 1-3 1-5"
    assert schedule.cron_time("@Daily") == "@daily"
    line = "5 4 * * sun " + schedule.escape_percent("echo '100%' $(date +%F)", "x")
    assert schedule.cron_command(line) == "echo '100%' $(date +%F)"
    assert schedule.cron_command("@hourly a \\\\ b") == "a \\\\ b"
    with pytest.raises(InvalidError, match="backslash before a %"):
        schedule.escape_percent("echo '\\%'", "x")


def test_a_due_time_since_install_without_a_cron_run_is_missed() -> None:
    since_monday = installed_since(at(2026, 3, 9, 8, 0))
    missed = schedule.schedule_status(DAILY, since_monday, [], NOW)
    assert missed.missed and missed.state == "MISSED"
    assert missed.checked_due == dt.datetime(2026, 3, 11, 2, 30).astimezone()
    assert missed.next_due == dt.datetime(2026, 3, 12, 2, 30).astimezone()

    on_time = CronRun("r1", "nightly", "failed", 1, at(2026, 3, 11, 2, 30, 4))
    ran = schedule.schedule_status(DAILY, since_monday, [on_time], NOW)
    assert not ran.missed and ran.last_run == on_time  # it ran; its outcome is shown
    assert (ran.state, ran.problem) == ("FAILED", "failed")  # and a failed run is no healthy entry

    late = CronRun("r2", "nightly", "succeeded", 0, at(2026, 3, 11, 2, 41))
    other = CronRun("r3", "someone-else", "succeeded", 0, at(2026, 3, 11, 2, 31))
    assert schedule.schedule_status(DAILY, since_monday, [late, other], NOW).missed


def test_nothing_is_missed_before_a_due_time_since_install_has_passed_its_grace() -> None:
    after_due = installed_since(at(2026, 3, 11, 2, 35))
    assert schedule.schedule_status(DAILY, after_due, [], NOW).state == "pending"
    in_grace = dt.datetime(2026, 3, 11, 2, 36)  # today's due time is still within its 10 minutes
    yesterday = installed_since(at(2026, 3, 10, 12, 0))
    assert schedule.schedule_status(DAILY, yesterday, [], in_grace).state == "pending"
    assert schedule.schedule_status(DAILY, yesterday, [], in_grace + dt.timedelta(minutes=5)).missed
    assert schedule.schedule_status(DAILY, [], [], NOW).state == "not installed"


def test_an_outdated_line_still_counts_from_its_install_time() -> None:
    changed = Entry("nightly", 0, Schedule("30 2 * * *", {"message": "new"}), DAILY.line + " -p message=new")
    status = schedule.schedule_status(changed, installed_since(at(2026, 3, 1)), [], NOW)
    assert status.installed == "outdated" and status.missed
    assert schedule.orphans([changed], installed_since(at(2026, 3, 1))) == []
    gone = Entry("other", 0, DAILY.schedule, "30 2 * * * /x/runbook run other")
    assert [o.runbook for o in schedule.orphans([gone], installed_since(at(2026, 3, 1)))] == ["nightly"]


def test_a_line_cron_cannot_carry_is_refused_and_the_default_state_dir_needs_no_variable(
        alien: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = open_workspace(str(alien))
    command = ["/opt/venv/bin/runbook"]
    with pytest.raises(InvalidError, match="more than cron takes"):
        schedule.crontab_line(ws, command, "nightly-note", Schedule("30 2 * * *", {"message": "x" * 1000}))
    with pytest.raises(InvalidError, match="line break"):
        schedule.crontab_line(ws, command, "nightly-note", Schedule("30 2 * * *", {"message": "a\nb"}))

    monkeypatch.delenv("RUNBOOK_STATE_DIR")
    default = open_workspace(str(alien))
    line = schedule.crontab_line(default, command, "nightly-note", Schedule("@daily", {"message": "x"}))
    assert line.startswith("@daily umask 077; { PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin RUNBOOK_ENTRY=0 "
                           "/opt/venv/bin/runbook ")
    assert "RUNBOOK_STATE_DIR" not in line and f">>{alien}/.runbook/logs/cron.log 2>&1" in line


# -- hostile schedules (issue #8, F8) ---------------------------------------------------------------------------
NEVER = """\
apiVersion: runbook/v1
name: never
title: A schedule that never fires
version: 1.0.0
kind: operation
steps:
  - name: note
    playbook: note.yml
schedule:
  - cron: '0 0 31 2 *'
"""
LINE_BREAKERS = ["\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def test_a_schedule_that_never_fires_is_invalid_and_the_valid_schedules_still_show(crontab: None,
                                                                                    alien: Path) -> None:
    write_crontab(FOREIGN)
    (alien / "runbooks" / "never.yml").write_text(NEVER)
    expected = "runbooks/never.yml:10: schedule[0].cron: '0 0 31 2 *' never fires"

    validated = runbook("-w", str(alien), "validate", "--no-syntax-check", "never")
    assert validated.returncode == 3 and expected in validated.stderr, validated.stderr
    for command in (["list"], ["list", "--json"], ["status"], ["status", "--json"]):
        done = runbook("-w", str(alien), "schedule", *command)
        assert done.returncode == 3, done.stderr  # was an internal error in `list`
        assert expected in done.stderr and "internal error" not in done.stderr
        assert "nightly-note" in done.stdout and "never" not in done.stdout.replace("nightly-note", "")
    installed = runbook("-w", str(alien), "schedule", "install")
    assert installed.returncode == 3 and expected in installed.stderr and read_crontab() == FOREIGN


@pytest.mark.parametrize("char", LINE_BREAKERS, ids=[f"U+{ord(c):04X}" for c in LINE_BREAKERS])
def test_a_schedule_value_that_a_line_reader_would_split_is_refused_with_its_line(alien: Path, char: str) -> None:
    path = alien / "runbooks" / "nightly-note.yml"
    escaped = f"\\u{ord(char):04x}"  # written as a YAML escape: the file itself stays plain text
    path.write_text(path.read_text().replace("{message: midday}", f'{{message: "mid{escaped}day"}}'))

    done = runbook("-w", str(alien), "validate", "--no-syntax-check", "nightly-note")

    assert done.returncode == 3, done.stderr
    assert (f"runbooks/nightly-note.yml:22: schedule[1].params.message: holds a line break or control character "
            f"(U+{ord(char):04X}), which a crontab line cannot carry") in done.stderr
    ws = open_workspace(str(alien))
    for schedule_ in (Schedule("@daily", {"message": f"a{char}b"}), Schedule("@daily", limit=f"db{char}1")):
        with pytest.raises(InvalidError, match="cannot carry"):
            schedule.crontab_line(ws, ["/opt/venv/bin/runbook"], "nightly-note", schedule_)


@pytest.mark.parametrize("char", LINE_BREAKERS, ids=[f"U+{ord(c):04X}" for c in LINE_BREAKERS])
def test_the_crontab_is_read_as_cron_reads_it_one_entry_per_newline(char: str) -> None:
    """An entry an older version installed with such a character, or a foreign line holding one, stays one line:
    it is not "outdated" forever, and installing again changes nothing."""
    root = Path("/ws")
    odd = Entry("nightly", 0, DAILY.schedule, f"30 2 * * * /x/runbook run nightly -p 'message=a{char}b'")
    foreign = f"0 1 * * * /bin/echo 'x{char}y'\n"
    text = schedule.install(foreign, root, [odd], at(2026, 3, 1))
    assert [i.line for i in schedule.installed_entries(text, root)] == [odd.line]
    assert schedule.install_state(odd, schedule.installed_entries(text, root))[0] == "yes"
    assert schedule.install(text, root, [odd], at(2026, 3, 9)) == text
    assert schedule.remove(text, root) == foreign


def test_a_foreign_line_holding_a_vertical_tab_survives_install_in_the_real_crontab(crontab: None,
                                                                                    alien: Path) -> None:
    foreign = FOREIGN + "0 3 * * * /bin/echo 'a\x0bb\u2028c'\n"
    write_crontab(foreign)
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    text = read_crontab() or ""
    assert text.startswith(foreign)
    assert [e["install_state"] for e in _list(alien)] == ["yes", "yes"]
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    assert read_crontab() == text


# -- schedules that tell the truth (issue #21) ---------------------------------------------------------------
CHANGE = """\
apiVersion: runbook/v1
name: change
title: A scheduled maintenance change with a checklist
version: 1.0.0
kind: maintenance
maintenance_type: preventive
targets: db
parameters:
  ticket: {type: string, required: true, pattern: '^CHG-[0-9]+$'}
  token: {type: secret, required: true, env: CHANGE_TOKEN}
steps:
  - name: note
    playbook: note.yml
    vars: {message: "{{ params.ticket }}"}
  - name: announce
    manual: Tell the team.
schedule:
  - cron: "0 4 * * 0"
    params: {ticket: CHG-1}
  - cron: "0 5 * * 0"
    inventory: lab
"""


def _bare_workspace(alien: Path, *keep: str) -> Path:
    """alien with only the runbooks named and no default inventory in runbook.toml."""
    for path in (alien / "runbooks").glob("*.yml"):
        if path.stem not in keep:
            path.unlink()
    (alien / "runbook.toml").write_text("forks = 10\n")
    return alien


def test_install_refuses_entries_that_would_not_run_unattended_naming_each(crontab: None, alien: Path) -> None:
    ws = _bare_workspace(alien)
    (ws / "runbooks" / "change.yml").write_text(CHANGE)
    write_crontab(FOREIGN)

    done = runbook("-w", str(ws), "schedule", "install")

    assert done.returncode == 3, done.stderr
    assert read_crontab() == FOREIGN  # nothing installed
    err = done.stderr
    assert ("runbooks/change.yml:18: schedule[0]: a maintenance runbook never runs on the built-in local inventory, "
            "and this entry names none: add `inventory: NAME` to the entry") in err
    assert ("runbooks/change.yml:20: schedule[1].params.ticket: required parameter has no value: "
            "add it to this entry's params") in err
    for line, index in ((18, 0), (20, 1)):
        assert (f"runbooks/change.yml:{line}: schedule[{index}].params.token: a required secret read from "
                "$CHANGE_TOKEN, which the crontab's environment must provide") in err
        assert (f"runbooks/change.yml:{line}: schedule[{index}]: step 'announce' is a manual step: an unattended run "
                "stops there") in err and "add `waits: true` to this entry" in err

    # Each fixed as its message says: an inventory, the parameter, the secret in the crontab's environment, waits.
    fixed = CHANGE.split("schedule:")[0] + (
        'schedule:\n  - {cron: "0 4 * * 0", params: {ticket: CHG-1}, inventory: lab, waits: true}\n'
        '  - {cron: "0 5 * * 0", params: {ticket: CHG-2}, inventory: lab, waits: true}\n')
    (ws / "runbooks" / "change.yml").write_text(fixed)
    write_crontab("CHANGE_TOKEN=not-a-real-token-but-long-enough\n" + FOREIGN)
    again = runbook("-w", str(ws), "schedule", "install")
    assert again.returncode == 0, again.stderr
    lines = block_lines(read_crontab() or "", ws)
    assert len(lines) == 2

    # Run without the crontab's CHANGE_TOKEN line: refused (exit 3) before anything ran, and status says why.
    assert run_as_cron(lines[0]).returncode == 0 and history(ws) == []
    status = runbook("-w", str(ws), "schedule", "status", "--json")
    assert status.returncode == 1
    first = json.loads(status.stdout)[0]
    assert (first["problem"], first["last_refusal"]["exit_code"]) == ("refused", 3)
    assert first["last_refusal"]["outcome"].startswith("refused: exit 3: runbooks/change.yml:")
    assert "parameters.token: required parameter has no value" in first["last_refusal"]["outcome"]


def test_install_refuses_a_parameter_that_does_not_fit_and_a_waiting_approval(crontab: None, alien: Path) -> None:
    ws = _bare_workspace(alien, "maintenance-window")
    add_schedule(ws, "maintenance-window",
                 'schedule:\n  - {cron: "@daily", inventory: lab, params: {log_file: /tmp/x}}\n')
    write_crontab("")
    done = runbook("-w", str(ws), "schedule", "install")
    assert done.returncode == 3
    assert "schedule[0]: step 'announce' is a manual step" in done.stderr
    assert "schedule[0]: step 'change-approval' is an approval step" in done.stderr
    assert read_crontab() == ""


def test_install_warns_when_no_cron_daemon_runs(crontab: None, alien: Path, tmp_path: Path) -> None:
    write_crontab("")
    warning = "warning: no cron daemon is running on this machine"
    if not checks.cron_daemon_running():
        done = runbook("-w", str(alien), "schedule", "install")
        assert done.returncode == 0 and warning in done.stderr
        daemon = subprocess.Popen(["cron", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)  # a real cron daemon, for the other half
        try:
            deadline = time.monotonic() + 10
            while not checks.cron_daemon_running() and time.monotonic() < deadline:
                time.sleep(0.1)
            quiet = runbook("-w", str(alien), "schedule", "install")
        finally:
            daemon.terminate()
            daemon.wait(timeout=10)
    else:
        quiet = runbook("-w", str(alien), "schedule", "install")
    assert quiet.returncode == 0 and warning not in quiet.stderr


def test_the_cron_daemon_is_found_by_its_process_name(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, name in (("1", "systemd"), ("42", "sshd"), ("self", "cron")):
        (proc / pid).mkdir(parents=True)
        (proc / pid / "comm").write_text(name + "\n")
    assert not checks.cron_daemon_running(proc)
    (proc / "77").mkdir()
    (proc / "77" / "comm").write_text("crond\n")
    assert checks.cron_daemon_running(proc)


def test_status_shows_each_entrys_own_failed_waiting_and_refused_firing(crontab: None, alien: Path,
                                                                        state_dir: Path) -> None:
    add_schedule(alien, "fail-on-host", 'schedule:\n  - cron: "0 3 * * *"\n')
    add_schedule(alien, "maintenance-window", 'schedule:\n'
                 '  - {cron: "0 4 * * 0", params: {log_file: /tmp/mw}, waits: true}\n'
                 '  - {cron: "0 5 1 * *", params: {log_file: /tmp/mw2}, waits: true}\n')
    write_crontab("")
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0
    lines = block_lines(read_crontab() or "", alien)
    failing = next(x for x in lines if " run fail-on-host " in x)
    weekly, monthly = [x for x in lines if " run maintenance-window " in x]

    for line in (failing, weekly, monthly):  # the monthly firing finds the weekly run waiting with the lock
        assert run_as_cron(line).returncode == 0
    done = runbook("-w", str(alien), "schedule", "status", "--json")

    assert done.returncode == 1, done.stderr
    by_entry = {(s["runbook"], s["index"]): s for s in json.loads(done.stdout)}
    failed = by_entry[("fail-on-host", 0)]
    assert (failed["state"], failed["last_run"]["status"], failed["last_run"]["exit_code"]) == ("FAILED", "failed", 1)
    waiting = history(alien, "maintenance-window")
    assert [r["status"] for r in waiting] == ["waiting"]  # the monthly firing was refused: no run
    first = by_entry[("maintenance-window", 0)]
    assert first["problem"] is None and first["last_run"]["id"] == waiting[0]["id"]
    assert first["last_run"]["status"] == "waiting" and first["last_run"]["waiting_since"]
    second = by_entry[("maintenance-window", 1)]
    assert second["last_run"] is None and second["problem"] == "refused"  # not the weekly entry's run
    assert second["last_refusal"]["holder"] == waiting[0]["id"]
    assert "FAILED: fail-on-host schedule[0]" in done.stderr
    assert "REFUSED: maintenance-window schedule[1]" in done.stderr
    assert "maintenance-window schedule[0]" not in done.stderr
    human = runbook("-w", str(alien), "schedule", "status")
    assert human.returncode == 1
    row = next(x for x in human.stdout.splitlines() if "maintenance-window" in x and "schedule[0]" in x)
    assert "waiting since " in row
    assert f"refused: locked by {waiting[0]['id']}" in human.stdout and "failed (exit 1)" in human.stdout
    assert runbook("-w", str(alien), "cancel", waiting[0]["id"]).returncode == 0


def test_an_entry_tells_its_own_runs_from_its_siblings() -> None:
    weekly = Entry("nightly", 0, Schedule("0 3 * * 0"), "0 3 * * 0 /x/runbook run nightly", siblings=2)
    daily = Entry("nightly", 1, Schedule("30 2 * * *"), "30 2 * * * /x/runbook run nightly -p a=1", siblings=2)
    text = schedule.install("", Path("/ws"), [weekly, daily], at(2026, 3, 1))
    installed = schedule.installed_entries(text, Path("/ws"))
    daily_run = CronRun("r1", "nightly", "succeeded", 0, at(2026, 3, 11, 2, 30, 4), entry=1)
    assert schedule.schedule_status(weekly, installed, [daily_run], NOW).last_run is None
    assert schedule.schedule_status(daily, installed, [daily_run], NOW).last_run == daily_run
    old = CronRun("r0", "nightly", "succeeded", 0, at(2026, 3, 8, 3, 0, 4))  # recorded no entry: older line
    assert schedule.schedule_status(weekly, installed, [old], NOW).last_run is None
    assert schedule.schedule_status(DAILY, installed_since(at(2026, 3, 1)), [old], NOW).last_run == old


def test_a_refused_firing_is_neither_missed_nor_healthy() -> None:
    since_monday = installed_since(at(2026, 3, 9, 8, 0))
    refusal = firings.Refusal(at(2026, 3, 11, 2, 30, 2), 6, "lock 'x' is held by run r9; wait", "r9", "ann@db1")
    status = schedule.schedule_status(DAILY, since_monday, [], NOW, refusals=[refusal])
    assert not status.missed and status.problem == "refused" and status.state == "REFUSED"
    assert refusal.outcome == "refused: locked by r9 (ann@db1)"
    later = CronRun("r10", "nightly", "succeeded", 0, at(2026, 3, 11, 2, 35))
    assert schedule.schedule_status(DAILY, since_monday, [later], NOW, refusals=[refusal]).problem is None
    assert firings.lock_holder("lock 'x' is held by run 2026-a.b_c, waiting at a manual step") == "2026-a.b_c"


def test_refusals_are_kept_per_entry_and_a_name_that_is_no_runbook_keeps_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for i in range(firings.KEEP + 3):
        firings.record_refusal(state, "nightly", 1, firings.Refusal(float(i), 3, f"invalid {i}"))
    kept = firings.refusals(state, "nightly", 1)
    assert len(kept) == firings.KEEP and kept[-1].message == f"invalid {firings.KEEP + 2}"
    assert firings.refusals(state, "nightly", 0) == []
    firings.record_refusal(state, "../../escape", 0, firings.Refusal(1.0, 6, "x"))
    assert sorted(p.name for p in (state / "schedule").iterdir()) == ["nightly.1.refusals.json"]
    assert not (tmp_path / "escape.0.refusals.json").exists()
    (state / "schedule" / "nightly.1.refusals.json").write_text('[{"at": "NaN", "exit_code": 6}, 7, {"at": 1}]')
    assert firings.refusals(state, "nightly", 1) == []  # damaged: read as none, never trusted


def test_cron_runs_reach_the_team_store_without_its_url_in_the_crontab(crontab: None, alien: Path, team_db: str,
                                                                        state_dir: Path) -> None:
    write_crontab("")
    assert runbook("-w", str(alien), "schedule", "install").returncode == 0  # RUNBOOK_DATABASE_URL is set
    text = read_crontab() or ""
    url_file = state_dir / "schedule" / "database.url"
    assert team_db not in text and f"RUNBOOK_DATABASE_URL_FILE={url_file} " in text
    assert url_file.read_text().strip() == team_db and stat.S_IMODE(url_file.stat().st_mode) == 0o600

    assert run_as_cron(block_lines(text, alien)[0]).returncode == 0  # cron's environment: no URL
    runs = history(alien, "nightly-note")  # read from the team's database
    assert [(r["trigger"], r["status"]) for r in runs] == [("cron", "succeeded")]
    assert [e["install_state"] for e in _list(alien)] == ["yes", "yes"]
    status = runbook("-w", str(alien), "schedule", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert [s["last_run"] and s["last_run"]["id"] for s in json.loads(status.stdout)] == [runs[0]["id"], None]
