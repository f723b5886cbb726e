"""The command line: parses and dispatches, nothing else. Every command module is imported lazily so
`runbook --help` and `runbook list` stay fast."""
from __future__ import annotations

import sys
from typing import Any

import click

from runner import __version__

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "canceled", "timed_out", "aborted")


def _workspace(ctx: click.Context) -> Any:
    from runner.definition.workspace import open_workspace

    return open_workspace(ctx.obj)


@click.group(context_settings=_CONTEXT)
@click.option("-w", "--workspace", metavar="DIR", help="Workspace folder (default: $RUNBOOK_WORKSPACE, "
              "else the nearest folder above holding runbooks/).")
@click.version_option(__version__, prog_name="runbook")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """Versioned, auditable operations runbooks on Ansible.

    A runbook (runbooks/NAME.yml) is a procedure: typed parameters and steps (playbooks, manual
    checklists, approvals). Every run is recorded: who ran which version, with what, on which hosts,
    and what happened.

    \b
    Start here:
      runbook list                      the catalog
      runbook show health-check         what a runbook does, step by step
      runbook run health-check          run it (on inventories/local.yml by default)
      runbook history                   what ran, newest first
      runbook log last                  the output of the last run
    """
    ctx.obj = workspace


@cli.command("list")
@click.option("--tag", help="Only runbooks with this tag.")
@click.option("--kind", type=click.Choice(["operation", "maintenance"]), help="Only this kind.")
@click.option("--search", metavar="WORDS",
              help="Only runbooks whose name, title, tags or description hold every word (any case).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def list_cmd(ctx: click.Context, tag: str | None, kind: str | None, search: str | None, as_json: bool) -> int:
    """The catalog: name, version, kind, title, owner."""
    from runner.commands.list_ import list_runbooks

    return list_runbooks(_workspace(ctx), tag, kind, as_json, search)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> int:
    """A runbook as a procedure: metadata, parameters, steps with each playbook's tasks, schedule, last runs."""
    from runner.commands.show import show as show_runbook

    return show_runbook(_workspace(ctx), name, as_json)


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--no-syntax-check", is_flag=True, help="Skip ansible-playbook --syntax-check.")
@click.pass_context
def validate(ctx: click.Context, names: tuple[str, ...], no_syntax_check: bool) -> int:
    """Check runbooks (all by default): schema, references, defaults, playbook syntax.

    Every problem is reported at once as FILE:LINE: KEY.PATH: MESSAGE; exit 3 if any.
    """
    from runner.commands.validate import validate as validate_runbooks

    return validate_runbooks(_workspace(ctx), list(names), not no_syntax_check)


@cli.command(context_settings={"show_default": True})
@click.argument("name")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A parameter value (repeatable). "
              "Secrets cannot be given here: use their env variable or --params-file.")
@click.option("--params-file", type=click.Path(dir_okay=False), help="YAML or JSON mapping of parameter values.")
@click.option("-i", "--inventory", metavar="NAME|PATH", help="Inventory name (inventories/NAME) or path.")
@click.option("-l", "--limit", metavar="PATTERN", help="Narrow the runbook's targets (sent as TARGETS:&PATTERN).")
@click.option("--check", is_flag=True, help="Ansible check mode: report what would change, change nothing.")
@click.option("--diff", is_flag=True, help="Show the differences in changed files.")
@click.option("--forks", type=int, help="Parallel hosts (default: runbook.toml, else 25; Ansible uses min(forks, hosts)).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before running a maintenance runbook.")
@click.option("--non-interactive", is_flag=True, help="Never prompt (implied without a terminal or when CI is set).")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON on stdout.")
@click.option("--trigger", type=click.Choice(["cli", "ci", "cron"]), help="Recorded trigger (default: ci under CI, else cli).")
@click.option("--wait-lock", metavar="DUR", help="Wait up to DUR (e.g. 10m) for a conflicting run instead of exiting 6.")
@click.option("--junit", metavar="FILE", help="Write a JUnit XML report of the run (a suite per step, a case per host and task).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final line (for cron).")
@click.option("-v", "--verbose", is_flag=True, help="Stream Ansible's own output.")
@click.option("--worker", metavar="NAME", help="Run every playbook step on this worker ([workers.NAME] in runbook.toml).")
@click.pass_context
def run(ctx: click.Context, /, name: str, params: tuple[str, ...], **options: Any) -> int:
    """Run a runbook.

    \b
    Exit codes: 0 succeeded, 1 failed, 2 usage error, 3 invalid runbook or parameter (nothing run),
    4 hosts unreachable, 5 waiting at a manual step or approval, 6 locked, 124 timed out, 130 canceled.
    """
    from runner.commands.run import run as run_runbook
    from runner.execution import ahead

    run_id = ahead.run_id_for(name)  # its first step's interpreter, started (and discarded) by runner/main.py
    return run_runbook(_workspace(ctx), name, list(params), run_id=run_id, **options)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--confirm", is_flag=True, help="Confirm the waiting manual step's whole checklist (no questions).")
@click.option("--note", default="", help="A note recorded with the confirmation.")
@click.option("--non-interactive", is_flag=True, help="Never prompt (implied without a terminal or when CI is set).")
@click.option("--junit", metavar="FILE", help="Write a JUnit XML report of the whole run when this part ends.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final line (for cron and scripts).")
@click.option("-i", "--inventory", metavar="PATH", help="The inventory the run started with, given again when "
              "it is outside inventories/ (a record's path is not trusted).")
@click.pass_context
def resume(ctx: click.Context, run_ref: str, confirm: bool, note: str, non_interactive: bool, junit: str | None,
           quiet: bool, inventory: str | None) -> int:
    """Continue a run waiting at a manual step or an approval.

    On a terminal without --confirm, walks the checklist item by item (items confirmed before a lost
    terminal are kept). The rest of the run is recorded in the same run. Secrets are read again from
    their env: variable (they are never stored). RUN `last` is the one waiting run; when several wait,
    it is refused (exit 2) and they are listed with their hosts.
    """
    from runner.commands.resume import resume as resume_run

    return resume_run(_workspace(ctx), run_ref, confirm, note, non_interactive, junit, quiet, inventory)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--reject", is_flag=True, help="Reject: the run ends failed (its on_failure handlers run).")
@click.option("--note", default="", help="A note recorded with the decision.")
@click.option("-i", "--inventory", metavar="PATH", help="With --reject: the inventory the run started with, given again when "
              "it is outside inventories/ (a record's path is not trusted).")
@click.pass_context
def approve(ctx: click.Context, run_ref: str, reject: bool, note: str, inventory: str | None) -> int:
    """Approve a run waiting at an approval step (not the run's own operator).

    The approver is $RUNBOOK_USER, else the CI user, else user@host. Once approved,
    `runbook resume RUN` continues the run. RUN `last` is the one waiting run; when several wait,
    it is refused (exit 2) and they are listed with their hosts.
    """
    from runner.commands.resume import approve as approve_run

    return approve_run(_workspace(ctx), run_ref, reject, note, inventory)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.pass_context
def cancel(ctx: click.Context, run_ref: str) -> int:
    """Stop a run as SIGTERM would: every process it started ends, the record says canceled (130)."""
    from runner.commands.cancel import cancel as cancel_run

    return cancel_run(_workspace(ctx), run_ref)


@cli.group(context_settings=_CONTEXT)
def schedule() -> None:
    """Cron entries from the runbooks' `schedule:` blocks, in the current user's crontab.

    `install` writes one crontab line per schedule entry of every runbook into a block of its own,
    marked `# BEGIN runbook WORKSPACE` ... `# END runbook WORKSPACE`; the rest of the crontab is left
    alone. Each line runs `runbook run NAME --trigger cron --non-interactive --quiet` with absolute
    paths (cron's environment is bare) and appends its output to STATE_DIR/logs/cron.log. Cron uses
    the machine's local time. An exclusive runbook still running when its next time comes refuses
    the new run (exit 6, written to the log).
    """


@schedule.command("list")
@click.option("--from", "start", metavar="DATE", help="With --count: due times from this date (YYYY-MM-DD, "
              "or YYYY-MM-DDTHH:MM; default now).")
@click.option("--count", type=click.IntRange(1, 1000), help="Each entry's next N due times, by its calendar.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def schedule_list(ctx: click.Context, start: str | None, count: int | None, as_json: bool) -> int:
    """Schedule entries and whether the crontab runs them.

    Per entry: runbook, when (cron, or the N-th business day), calendar, params, inventory, next due time
    (local), installed (yes, outdated: install again, or no). With --count N: each entry's next N due
    times instead, days off of its calendar left out or moved as its on_holiday says.
    """
    from runner.commands.schedule import list_due_times, list_schedules

    if count is not None:
        return list_due_times(_workspace(ctx), start, count, as_json)
    if start is not None:
        raise click.UsageError("--from needs --count N")
    return list_schedules(_workspace(ctx), as_json)


@schedule.command("install")
@click.pass_context
def schedule_install(ctx: click.Context) -> int:
    """Write the schedules into the crontab.

    Replaces this workspace's block with one line per schedule entry; installing again gives the same
    crontab. Exit 3, with the crontab untouched, if a runbook is invalid.
    """
    from runner.commands.schedule import install_schedules

    return install_schedules(_workspace(ctx))


@schedule.command("remove")
@click.pass_context
def schedule_remove(ctx: click.Context) -> int:
    """Take the schedules out of the crontab.

    Removes this workspace's block only; every other line stays. A crontab left empty is removed.
    """
    from runner.commands.schedule import remove_schedules

    return remove_schedules(_workspace(ctx))


@schedule.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def schedule_status(ctx: click.Context, as_json: bool) -> int:
    """Last cron run, next due time, and missed runs.

    Per schedule entry: the outcome of that entry's own last cron firing (succeeded, failed, waiting
    since TIME, refused: locked by RUN), the next due time (local time, as cron reads it), and MISSED
    when the latest due time since install passed without a firing of the entry within 10 minutes.

    Exit 0, or 1 when an entry is MISSED, or its last firing failed or was refused (for monitoring).
    """
    from runner.commands.schedule import show_status

    return show_status(_workspace(ctx), as_json)


@cli.command()
@click.argument("name")
@click.option("--year", type=click.IntRange(1900, 2999), help="The year to show (default: this year).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def calendar(ctx: click.Context, name: str, year: int | None, as_json: bool) -> int:
    """A business-day calendar of runbook.toml ([calendars.NAME]): the year's days off with their names.

    Public holidays (substitute holidays included), company days off (`extra`, MM-DD every year) and
    closures from `dates_file`; `+YYYY-MM-DD` lines there are working days whatever else says. Schedule
    entries with `calendar: NAME` fire on business days only (`on_holiday: skip`), or move to the next or
    previous business day (`next` / `previous`).
    """
    from runner.commands.calendar import show_calendar

    return show_calendar(_workspace(ctx), name, year, as_json)


@cli.command()
@click.argument("name", required=False)
@click.option("--status", type=click.Choice(_STATUSES), help="Only runs with this status.")
@click.option("--since", metavar="DUR", help="Only runs started within DUR (e.g. 7d).")
@click.option("-n", "limit", type=click.IntRange(1), default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def history(ctx: click.Context, name: str | None, status: str | None, since: str | None, limit: int, as_json: bool) -> int:
    """Past runs, newest first."""
    from runner.commands.history import history as show_history

    return show_history(_workspace(ctx), name, status, since, limit, as_json)


@cli.command()
@click.option("--listen", metavar="HOST:PORT", help="Where to listen (default: [serve] listen, else 127.0.0.1:8470).")
@click.pass_context
def serve(ctx: click.Context, listen: str | None) -> int:
    """The service: alerts in on POST /hooks/NAME start the runbooks whose `triggers:` match them.

    \b
    Runs queue in the store and this instance's [serve] workers execute them; GET /healthz, GET /metrics.
    SIGTERM: stops taking work, lets running runs finish up to [serve] stop_timeout, then cancels them.
    """
    from runner.commands.serve import serve as run_serve

    return run_serve(_workspace(ctx), listen)


@cli.command()
@click.option("--since", metavar="DUR", help="Only alerts received within DUR (e.g. 1d).")
@click.option("-n", "limit", type=click.IntRange(1), default=50, show_default=True, help="How many alerts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def alerts(ctx: click.Context, since: str | None, limit: int, as_json: bool) -> int:
    """Alerts received by `runbook serve`, newest first, with their outcome and run."""
    from runner.commands.serve import alerts as show_alerts

    return show_alerts(_workspace(ctx), since, min(limit, 10**6), as_json)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--step", help="Only this step (name or number).")
@click.option("--host", help="Only this host's results.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the run goes on.")
@click.option("--data", is_flag=True, help="What each step recorded instead of its output: step data (set_stats) and sign-offs.")
@click.pass_context
def log(ctx: click.Context, run_ref: str, step: str | None, host: str | None, follow: bool, data: bool) -> int:
    """The recorded output of a run (RUN: an id, a unique prefix, or `last`)."""
    from runner.commands.log import show_log

    return show_log(_workspace(ctx), run_ref, step, host, follow, data)


@cli.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--since", metavar="DUR", help="The periodic summary of the runs started within DUR (e.g. 7d).")
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json", "junit"]), default="md", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@click.pass_context
def report(ctx: click.Context, run_ref: str | None, since: str | None, fmt: str, output: str | None) -> int:
    """One run as a document (RUN: id, prefix or `last`), or the periodic summary with --since:
    counts, success rate (check-mode runs counted apart), operations and maintenance by class, durations,
    failures by host with the reason of each failed run; in HTML with charts (inline SVG) and capacity trends."""
    from runner.commands.report import report as make_report

    return make_report(_workspace(ctx), run_ref, since, fmt, output)


@cli.command()
@click.option("--host", metavar="HOST", help="Only this host.")
@click.option("--since", metavar="DUR", default="30d", show_default=True,
              help="The window of capacity-report runs the growth is fitted over.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def capacity(ctx: click.Context, host: str | None, since: str, as_json: bool) -> int:
    """Capacity trends from the capacity-report runs: per host and filesystem the current use, the
    growth per day (least-squares fit over the window) and the projected date it is full.

    Filesystems that fill within 30 days at that rate are flagged (FILLS IN N DAYS; "fills_soon" in JSON).
    """
    from runner.commands.capacity import capacity as show_capacity

    return show_capacity(_workspace(ctx), host, since, as_json)


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="html", show_default=True)
@click.option("-o", "--output", metavar="DIR", required=True, help="Folder for the manual (index + a page per runbook).")
@click.pass_context
def docs(ctx: click.Context, names: tuple[str, ...], fmt: str, output: str) -> int:
    """The procedure manual generated from the runbooks (all by default)."""
    from runner.commands.docs import docs as write_docs

    return write_docs(_workspace(ctx), list(names), fmt, output)


@cli.command()
@click.option("-o", "--output", metavar="DIR", required=True, help="Folder for the site (index.html first).")
@click.option("--since", metavar="DUR", default="30d", show_default=True, help="The summary's window.")
@click.option("-n", "--recent", type=click.IntRange(1, 10000), default=50, show_default=True, metavar="N",
              help="Runs listed on the index.")
@click.pass_context
def site(ctx: click.Context, output: str, since: str, recent: int) -> int:
    """A static site: catalog, recent runs and summary; a page per runbook (manual, history) and per run.
    Relative links, no scripts, no CDN: publish DIR with any web server."""
    from runner.commands.site import site as write_site

    return write_site(_workspace(ctx), output, since, recent)


@cli.command()
@click.option("--older-than", required=True, metavar="DUR", help="Delete finished runs started more than DUR ago (e.g. 90d).")
@click.option("--keep", type=click.IntRange(0), metavar="N", help="Always keep the newest N runs of each runbook.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@click.option("--key", metavar="FILE", help="Sign the prune record with this SSH key (with [team]: else the agent's).")
@click.pass_context
def prune(ctx: click.Context, older_than: str, keep: int | None, dry_run: bool, key: str | None) -> int:
    """Delete old run logs and their history rows together (running and waiting runs are kept); the
    chain keeps a prune record of what went, by whom and when."""
    from runner.commands.prune import prune as prune_runs

    return prune_runs(_workspace(ctx), older_than, keep, dry_run, key)


@cli.group(context_settings=_CONTEXT)
def db() -> None:
    """The store: schema, the team's shared database, the tamper-evident chain.

    \b
    SQLite in the state dir by default; PostgreSQL when RUNBOOK_DATABASE_URL (or [store] url
    in runbook.toml) holds a postgresql:// URL.
    """


@db.command("upgrade")
@click.option("--grant", metavar="ROLE", help="PostgreSQL: grant ROLE what runbook needs, without UPDATE or "
              "DELETE of finished runs (run as the tables' owner).")
@click.pass_context
def db_upgrade(ctx: click.Context, grant: str | None) -> int:
    """Apply the schema migrations the database lacks; seal runs linked before the full digest."""
    from runner.commands.db import upgrade

    return upgrade(_workspace(ctx), grant)


@db.command("import")
@click.argument("state_dir", metavar="[STATE_DIR]", required=False)
@click.pass_context
def db_import(ctx: click.Context, state_dir: str | None) -> int:
    """Copy a local history (default: this workspace's state dir) into the team's database; idempotent."""
    from runner.commands.db import import_history

    return import_history(_workspace(ctx), state_dir)


@db.command("sync")
@click.pass_context
def db_sync(ctx: click.Context) -> int:
    """Upload the runs kept locally while the team's database was away."""
    from runner.commands.db import sync

    return sync(_workspace(ctx))


@db.command("verify")
@click.option("--checkpoints", metavar="FILE", help="Also check that the chain extends every checkpoint in FILE.")
@click.option("--key", metavar="FILE", help="Without [team]: require checkpoints signed by this (public) key.")
@click.pass_context
def db_verify(ctx: click.Context, checkpoints: str | None, key: str | None) -> int:
    """Check the hash chain over finished runs; exit 1 naming the first run that no longer matches."""
    from runner.commands.db import verify

    return verify(_workspace(ctx), checkpoints, key)


@db.command("checkpoint")
@click.option("--key", metavar="FILE", help="The SSH key to sign with (a private key, or a public key in the agent).")
@click.option("-o", "--output", metavar="FILE", help="Append the line to FILE (default: print it).")
@click.pass_context
def db_checkpoint(ctx: click.Context, key: str | None, output: str | None) -> int:
    """Append a signed line (chain length, head hash, time, signer) to a file kept outside the database."""
    from runner.commands.db import checkpoint

    return checkpoint(_workspace(ctx), key, output)


@db.command("rebuild")
@click.pass_context
def db_rebuild(ctx: click.Context) -> int:
    """Rebuild the index from the run folders (run.json is the source of truth)."""
    from runner.commands.db import rebuild

    return rebuild(_workspace(ctx))


@cli.command()
@click.argument("directory", metavar="DIR")
def init(directory: str) -> int:
    """Create a workspace in DIR holding the standard library of runbooks."""
    from runner.commands.init import init as init_workspace

    return init_workspace(directory)


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place where errors become messages and exit codes."""
    from runner.errors import RunbookError
    from runner.output import terminal_safe

    # Recorded text (operator names, notes, Ansible output) may hold terminal controls: show, never obey.
    sys.stdout, sys.stderr = terminal_safe(sys.stdout), terminal_safe(sys.stderr)
    try:
        code = cli.main(args=argv, prog_name="runbook", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        code = 130
    except click.ClickException as exc:
        exc.show()
        code = 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except RunbookError as exc:
        from runner.store.redact import scrub_seen

        for problem in getattr(exc, "problems", ()):
            print(scrub_seen(str(problem)), file=sys.stderr)
        print(scrub_seen(f"runbook: {exc}"), file=sys.stderr)
        code = int(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # noqa: BLE001 - one line for people, the traceback kept for bug reports
        code = _no_space(exc) or _crash(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _no_space(exc: Exception) -> int:
    """A full disk is the environment's problem, not a bug: one clear line, exit 1."""
    from runner.store.files import is_disk_full

    if not is_disk_full(exc):
        return 0
    where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
    print(f"runbook: no space left on the device{where}: free some space and try again", file=sys.stderr)
    return 1


def _crash(exc: Exception) -> int:
    """One line on stderr and the traceback in a private log, both scrubbed of the run's secrets (a
    template error names the value it failed on)."""
    import tempfile
    import traceback

    from runner.store.redact import scrub_seen

    fd, path = tempfile.mkstemp(prefix="runbook-error-", suffix=".log")
    with open(fd, "w") as handle:
        handle.write(scrub_seen(traceback.format_exc()))
    print(scrub_seen(f"runbook: internal error: {exc.__class__.__name__}: {exc} (traceback in {path})"),
          file=sys.stderr)
    return 1
