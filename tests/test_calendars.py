"""Business-day calendars: real dates of the Japanese calendar through the `holidays` library, the
company days off, the dates file, and `runbook calendar`."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from conftest import runbook  # noqa: I001
from runner.definition.calendars import Calendar
from runner.definition.cron import parse_cron
from runner.definition.workspace import load_config
from runner.errors import InvalidError
from runner.schedule.due import Rule, due_times, is_due, previous_due, skip_reason

JST = dt.timezone(dt.timedelta(hours=9), "JST")
YEAR_END = frozenset({(12, 29), (12, 30), (12, 31), (1, 2), (1, 3)})
JP = Calendar("jp-business", "JP", YEAR_END)

CONFIG = """\
[calendars.jp-business]
holidays = "JP"
extra = ["12-29", "12-30", "12-31", "01-02", "01-03"]
dates_file = "calendars/jp-business.txt"
weekend = ["sat", "sun"]
"""


def _days(times: list[dt.datetime]) -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M") for t in times]


def test_daily_job_skips_weekend_and_coming_of_age_day() -> None:
    rule = Rule(cron=parse_cron("0 9 * * *"), calendar=JP)
    got = due_times(rule, dt.datetime(2027, 1, 8, tzinfo=JST), 3)
    assert _days(got) == ["2027-01-08 09:00", "2027-01-12 09:00", "2027-01-13 09:00"]  # 1/11 is 成人の日


def test_last_business_day_of_each_month() -> None:
    rule = Rule(business_day=-1, at=dt.time(22, 0), calendar=JP)
    got = due_times(rule, dt.datetime(2027, 1, 8, tzinfo=JST), 3)
    assert _days(got) == ["2027-01-29 22:00", "2027-02-26 22:00", "2027-03-31 22:00"]


def test_nth_business_day_counts_from_either_end() -> None:
    first = due_times(Rule(business_day=1, at=dt.time(8, 30), calendar=JP), dt.datetime(2026, 12, 1, tzinfo=JST), 2)
    assert _days(first) == ["2026-12-01 08:30", "2027-01-04 08:30"]  # 1/1 holiday, 1/2-1/3 company days off
    third_last = due_times(Rule(business_day=-3, at=dt.time(8, 0), calendar=JP), dt.datetime(2027, 3, 1, tzinfo=JST), 1)
    assert _days(third_last) == ["2027-03-29 08:00"]


def test_monday_job_moves_to_the_next_business_day() -> None:
    rule = Rule(cron=parse_cron("0 9 * * mon"), calendar=JP, on_holiday="next")
    got = due_times(rule, dt.datetime(2027, 1, 8, tzinfo=JST), 2)
    assert _days(got) == ["2027-01-12 09:00", "2027-01-18 09:00"]
    assert is_due(rule, dt.datetime(2027, 1, 12, 9, 0, tzinfo=JST))
    assert not is_due(rule, dt.datetime(2027, 1, 11, 9, 0, tzinfo=JST))
    previous = Rule(cron=parse_cron("0 9 * * mon"), calendar=JP, on_holiday="previous")
    assert _days(due_times(previous, dt.datetime(2027, 1, 8, tzinfo=JST), 1)) == ["2027-01-08 09:00"]


def test_company_days_off_are_skipped_and_a_plus_date_is_a_working_day() -> None:
    rule = Rule(cron=parse_cron("0 9 * * *"), calendar=JP)
    got = due_times(rule, dt.datetime(2026, 12, 28, tzinfo=JST), 2)
    assert _days(got) == ["2026-12-28 09:00", "2027-01-04 09:00"]  # 12/29..1/3 off (1/1 a holiday too)
    saturday = dt.date(2027, 1, 9)
    opened = Calendar("jp", "JP", YEAR_END, working=frozenset({saturday}))
    got = due_times(Rule(cron=parse_cron("0 9 * * *"), calendar=opened), dt.datetime(2027, 1, 9, tzinfo=JST), 1)
    assert _days(got) == ["2027-01-09 09:00"]


def test_skip_reason_names_the_holiday_and_the_next_due_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_LANG", "ja")
    rule = Rule(cron=parse_cron("0 9 * * *"), calendar=Calendar("jp-business", "JP", YEAR_END))
    reason = skip_reason(rule, dt.datetime(2027, 1, 11, 9, 0, tzinfo=JST))
    assert reason == "2027-01-11 is 成人の日 in calendar jp-business: skipped; next due 2027-01-12 09:00"
    assert skip_reason(rule, dt.datetime(2027, 1, 12, 9, 0, tzinfo=JST)) is None


def test_previous_due_looks_back_across_days_off() -> None:
    rule = Rule(cron=parse_cron("0 9 * * *"), calendar=JP)
    assert previous_due(rule, dt.datetime(2027, 1, 4, 8, 0, tzinfo=JST)) == dt.datetime(2026, 12, 28, 9, 0, tzinfo=JST)


def test_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "runbook.toml").write_text(
        '[calendars.jp]\nholidays = "XX"\nextra = ["13-01"]\nweekend = ["saturday"]\ndates_file = "days.txt"\n')
    (tmp_path / "days.txt").write_text("2027-01-05\n2027-02-30\n")
    with pytest.raises(InvalidError) as caught:
        load_config(tmp_path / "runbook.toml")
    shown = [str(p) for p in caught.value.problems]
    assert any(s.startswith("runbook.toml:2: calendars.jp.holidays: 'XX' is not a country code") for s in shown), shown
    assert "runbook.toml:3: calendars.jp.extra: '13-01' is not a date MM-DD" in shown
    assert any(s.startswith("runbook.toml:4: calendars.jp.weekend:") for s in shown)
    assert any(s.startswith("days.txt:2: '2027-02-30' is not YYYY-MM-DD") for s in shown), shown


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "runbooks").mkdir(parents=True)
    (ws / "calendars").mkdir()
    (ws / "runbook.toml").write_text(CONFIG)
    (ws / "calendars" / "jp-business.txt").write_text("# one-off closure, and a Saturday opened\n2027-08-13\n+2027-01-09\n")
    return ws


def test_calendar_command_lists_the_days_off_with_names(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    done = runbook("-w", str(ws), "calendar", "jp-business", "--year", "2027", env={"RUNBOOK_LANG": "ja"})
    assert done.returncode == 0, done.stderr
    assert "2027-01-11  mon  成人の日" in done.stdout
    assert "2027-03-22  mon  振替休日" in done.stdout
    assert "2027-12-29  wed  company day off" in done.stdout and "2027-08-13  fri  closure" in done.stdout
    assert "2027-01-09" not in done.stdout and "working days by the dates file: 2027-01-09" in done.stderr
    data = json.loads(runbook("-w", str(ws), "calendar", "jp-business", "--year", "2027", "--json",
                              env={"RUNBOOK_LANG": "en"}).stdout)
    assert {"date": "2027-01-11", "weekday": "mon", "reason": "Coming of Age Day"} in data["days_off"]


def test_calendar_command_warns_past_the_holiday_data(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    done = runbook("-w", str(ws), "calendar", "jp-business", "--year", "2100")
    assert done.returncode == 0
    assert "the holiday data for JP ends in 2099" in done.stderr
    unknown = runbook("-w", str(ws), "calendar", "nope")
    assert unknown.returncode == 2 and "no calendar 'nope'" in unknown.stderr and "jp-business" in unknown.stderr


NOTE_RUNBOOK = """\
apiVersion: runbook/v1
name: month-end
title: Month-end close check
version: 1.0.0
kind: operation
owner: ops
steps:
  - name: note
    manual: Check the month-end batch finished.
schedule:
{entries}
"""


def _validate(ws: Path, entries: str) -> tuple[int, str]:
    (ws / "runbooks" / "month-end.yml").write_text(NOTE_RUNBOOK.format(entries=entries))
    done = runbook("-w", str(ws), "validate", "month-end")
    return done.returncode, done.stderr


def test_validate_accepts_calendar_entries(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    code, stderr = _validate(ws, '  - cron: "0 9 * * *"\n    calendar: jp-business\n    on_holiday: next\n'
                                 '  - monthly: last-business-day\n    at: "22:00"\n    calendar: jp-business\n'
                                 '  - business-day: -3\n    at: "08:00"\n    calendar: jp-business\n')
    assert code == 0, stderr


def test_validate_refuses_unknown_calendars_and_entries_that_never_fire(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    code, stderr = _validate(ws, '  - cron: "0 9 * * *"\n    calendar: nope\n'
                                 '  - cron: "0 9 * * sun"\n    calendar: jp-business\n')  # Sundays are off
    assert code == 3
    assert ("runbooks/month-end.yml:12: schedule[0].calendar: no calendar 'nope' in runbook.toml [calendars] "
            "(known: jp-business)") in stderr
    assert "runbooks/month-end.yml:14: schedule[1].calendar: never fires" in stderr


def test_validate_refuses_malformed_calendar_entries_with_file_and_line(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    code, stderr = _validate(ws, '  - monthly: last-business-day\n    calendar: jp-business\n'
                                 '  - cron: "0 9 * * *"\n    on_holiday: next\n'
                                 '  - cron: "0 9 * * *"\n    monthly: last-business-day\n')
    assert code == 3
    assert 'runbooks/month-end.yml:11: schedule[0]: monthly needs `at: "HH:MM"`' in stderr
    assert "runbooks/month-end.yml:14: schedule[1].on_holiday: needs `calendar:`" in stderr
    assert "runbooks/month-end.yml:15: schedule[2]: cron and monthly exclude each other" in stderr


# -- the schedule with its calendar ---------------------------------------------------------------------------
def test_a_day_off_is_no_due_time_so_status_does_not_call_it_missed() -> None:
    from runner.definition.model import Schedule
    from runner.schedule import schedule

    entry_cron = Schedule("0 9 * * *", calendar="jp-business")
    holiday_noon = dt.datetime(2027, 1, 11, 12, 0)  # 成人の日, naive local as cron reads the crontab
    installed_at = dt.datetime(2027, 1, 11, 8, 0).timestamp()
    with_calendar = schedule.Entry("daily", 0, entry_cron, "line", 1, Rule(cron=parse_cron("0 9 * * *"), calendar=JP))
    without = schedule.Entry("daily", 0, entry_cron, "line", 1, None)
    installed = [schedule.Installed("daily", 0, "line", installed_at)]
    assert schedule.schedule_status(without, installed, [], holiday_noon).missed  # the cron time alone: 09:00 passed
    status = schedule.schedule_status(with_calendar, installed, [], holiday_noon)
    assert not status.missed and status.state == "pending"
    assert status.next_due.strftime("%Y-%m-%d %H:%M") == "2027-01-12 09:00"


def test_crontab_line_fires_daily_where_the_calendar_moves_or_picks_the_day() -> None:
    from runner.definition.model import Schedule
    from runner.schedule.schedule import firing_cron

    assert firing_cron(Schedule("0 9 * * 1", calendar="jp", on_holiday="skip")) == "0 9 * * 1"
    assert firing_cron(Schedule("0 9 * * 1", calendar="jp", on_holiday="next")) == "0 9 * * *"
    assert firing_cron(Schedule("15,45 9 * * 1", calendar="jp", on_holiday="previous")) == "15,45 9 * * *"
    assert firing_cron(Schedule("0 22 * * *", calendar="jp", business_day=-1, at="22:00")) == "0 22 * * *"
    assert firing_cron(Schedule("0 9 * * 1")) == "0 9 * * 1"


CAL_RUNBOOK = """\
apiVersion: runbook/v1
name: cal-note
title: A note on business days
version: 1.0.0
kind: operation
owner: lab-team
targets: db1
inventory: lab
parameters:
  message: {type: string, default: business day}
steps:
  - name: note
    playbook: note.yml
schedule:
  - cron: "* * * * *"
    calendar: office
"""


def _cal_workspace(alien: Path, closures: str) -> Path:
    (alien / "runbooks" / "cal-note.yml").write_text(CAL_RUNBOOK)
    (alien / "runbook.toml").write_text('[calendars.office]\nweekend = []\ndates_file = "office.txt"\n')
    (alien / "office.txt").write_text(closures)
    return alien


def _fire(ws: Path) -> subprocess.CompletedProcess[str]:
    return runbook("-w", str(ws), "run", "cal-note", "--trigger", "cron", "--non-interactive", "--quiet",
                   env={"RUNBOOK_ENTRY": "0"})


def test_a_cron_firing_on_a_day_off_records_no_run_and_says_why(alien: Path) -> None:
    today = dt.date.today()
    ws = _cal_workspace(alien, f"{today.isoformat()}\n{(today + dt.timedelta(days=1)).isoformat()}\n")
    done = _fire(ws)
    assert done.returncode == 0, done.stderr
    assert f"runbook cron: cal-note schedule[0] not run: {today} is closure in calendar office: skipped" in done.stdout
    history = runbook("-w", str(ws), "history", "--json")
    assert json.loads(history.stdout or "[]") == []

    (ws / "office.txt").write_text("# open again\n")
    ran = _fire(ws)
    assert ran.returncode == 0, ran.stderr
    assert "not run" not in ran.stdout
    runs = json.loads(runbook("-w", str(ws), "history", "--json").stdout)
    assert [(r["runbook"], r["trigger"], r["status"]) for r in runs] == [("cal-note", "cron", "succeeded")]


def test_schedule_list_count_gives_each_entrys_due_times_by_its_calendar(alien: Path) -> None:
    ws = _workspace(alien.parent / "cal")
    (ws / "runbooks" / "month-end.yml").write_text(NOTE_RUNBOOK.format(
        entries='  - cron: "0 9 * * *"\n    calendar: jp-business\n'
                '  - monthly: last-business-day\n    at: "22:00"\n    calendar: jp-business\n'))
    done = runbook("-w", str(ws), "schedule", "list", "--from", "2027-01-08", "--count", "3", "--json")
    assert done.returncode == 0, done.stderr
    found = {e["index"]: [t[:16] for t in e["due"]] for e in json.loads(done.stdout)}
    assert found == {0: ["2027-01-08T09:00", "2027-01-09T09:00", "2027-01-12T09:00"],  # 1/9: a + working day
                     1: ["2027-01-29T22:00", "2027-02-26T22:00", "2027-03-31T22:00"]}
    human = runbook("-w", str(ws), "schedule", "list", "--from", "2027-01-08", "--count", "2")
    assert "last business day 22:00" in human.stdout and any("2027-01-09 09:00:00 " in line and line.endswith(" Sat") for line in human.stdout.splitlines())
    assert runbook("-w", str(ws), "schedule", "list", "--from", "2027-01-08").returncode == 2


def test_the_first_minute_of_a_day_off_is_not_due_because_of_the_minute_before(alien: Path) -> None:
    from runner.definition.loader import load_runbook
    from runner.definition.workspace import open_workspace
    from runner.schedule.schedule import calendar_skip

    ws_path = _cal_workspace(alien, "2027-01-12\n")
    ws = open_workspace(str(ws_path))
    rb = load_runbook(ws.runbook_path("cal-note"))
    midnight = dt.datetime(2027, 1, 12, 0, 0, 20).astimezone()
    assert calendar_skip(ws, rb, 0, midnight) == ("2027-01-12 is closure in calendar office: skipped; "
                                                  "next due 2027-01-13 00:00")
    assert calendar_skip(ws, rb, 0, dt.datetime(2027, 1, 11, 23, 59, 50).astimezone()) is None
    assert calendar_skip(ws, rb, 0, dt.datetime(2027, 1, 13, 0, 0, 5).astimezone()) is None
