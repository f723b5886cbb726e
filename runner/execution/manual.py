"""Manual and approval steps: walking a checklist with the operator at a terminal, and the words that
tell an unattended run's reader exactly how to continue."""
from __future__ import annotations

import os
import sys
from typing import Callable, Mapping, TextIO

from runner.definition.model import Step
from runner.execution.signoffs import counted_approvers
from runner.store.records import RunRecord, Signoff, StepRecord

# Makes one sign-off of a checklist item: (item, decision, note) -> Signoff (signed with [team] on).
SignItem = Callable[[str, str, str], Signoff]


class TerminalLost(Exception):
    """The operator's terminal went away at a question (end of input, EIO, SIGHUP): the run waits, it is
    not aborted; `signoffs` holds the items confirmed before."""

    def __init__(self, signoffs: list[Signoff] | None = None) -> None:
        super().__init__("the terminal was lost at the checklist")
        self.signoffs = signoffs or []


def detach_from_terminal() -> None:
    """Point stdin, stdout and stderr at /dev/null, so that what is left to do (record the run as waiting,
    notify, exit 5) does not fail writing to a terminal that is gone."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


class Prompter:
    """Questions on the terminal: stdin for answers, stderr for everything shown."""

    def __init__(self, stdin: TextIO | None = None, out: TextIO | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.out = out or sys.stderr

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, question: str) -> str:
        """The answer; TerminalLost at end of input or when the terminal is gone (EIO)."""
        try:
            self.out.write(question)
            self.out.flush()
            line = self.stdin.readline()
        except OSError as exc:
            raise TerminalLost() from exc
        if not line:
            raise TerminalLost()
        return line.strip()


def checklist(step: Step) -> tuple[str, ...]:
    return step.checklist or ("Step done",)


def walk(step: Step, prompter: Prompter, sign: SignItem, done: frozenset[str] = frozenset()) -> tuple[bool, list[Signoff]]:
    """Confirm each checklist item not in `done`, or abort with an explicit "a"; (completed, signoffs).
    A lost terminal raises TerminalLost carrying the items confirmed so far."""
    signoffs: list[Signoff] = []
    try:
        prompter.say(_indent(step.manual or ""))
        for item in checklist(step):
            if item in done:
                prompter.say(f"  [x] {item} (confirmed before)")
                continue
            if not _confirm_item(prompter, sign, item, signoffs):
                return False, signoffs
    except TerminalLost as lost:
        raise TerminalLost(signoffs) from lost
    except OSError as exc:  # `say` on a terminal that is gone
        raise TerminalLost(signoffs) from exc
    return True, signoffs


def _confirm_item(prompter: Prompter, sign: SignItem, item: str, signoffs: list[Signoff]) -> bool:
    note = ""
    while True:
        choice = prompter.ask(f"  [ ] {item}: (c)onfirm, (n)ote, (a)bort? ")[:1].lower()
        if choice in ("c", "y"):
            signoffs.append(sign(item, "confirmed", note))
            prompter.say(f"  [x] {item}")
            return True
        if choice == "n":
            note = prompter.ask("      note: ")
        elif choice == "a":
            signoffs.append(sign(item, "aborted", note))
            return False


def confirmed_items(step_record: StepRecord) -> frozenset[str]:
    """Checklist items already confirmed in this step (before a terminal was lost)."""
    return frozenset(s.item for s in step_record.signoffs if s.decision == "confirmed")


def confirm_all(step: Step, sign: SignItem, note: str, done: frozenset[str] = frozenset()) -> list[Signoff]:
    """`resume --confirm`: every checklist item not confirmed yet, at once, with the operator's note."""
    return [sign(item, "confirmed", note) for item in checklist(step) if item not in done]


def waiting_message(record: RunRecord, step: Step, total: int,
                    groups: Mapping[str, tuple[str, ...]] | None = None) -> str:
    where = f"run {record.id} waits at step {record.steps.index(_record_of(record, step)) + 1}/{total} {step.name!r}"
    if step.type == "manual":
        lines = [f"{where} (manual):", _indent(step.manual or "")]
        lines += [f"  [ ] {item}" for item in checklist(step)]
        lines.append(f"continue with: runbook resume {record.id} --confirm [--note TEXT]"
                     f"  (or on a terminal: runbook resume {record.id})")
        return "\n".join(lines)
    assert step.approval is not None
    have = counted_approvers(_record_of(record, step), step.approval, record.operator, groups or {})
    who = f"someone other than {record.operator}" + (f" in {' or '.join(step.approval.from_groups)}"
                                                     if step.approval.from_groups else "")
    lines = [f"{where} for approval: {step.approval.message}",
             f"  approvals: {len(have)}/{step.approval.approvers}" + (f" ({', '.join(have)})" if have else ""),
             f"{who} runs: runbook approve {record.id} [--note TEXT]"
             f"  (or --reject to end the run)",
             f"then continue with: runbook resume {record.id}"]
    return "\n".join(lines)


def _record_of(record: RunRecord, step: Step) -> StepRecord:
    return next(s for s in record.steps if s.name == step.name and not s.handler)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" if line else "" for line in text.strip().splitlines())


def rehearsal(step: Step, runbook: str) -> Step:
    """The step as `--check` shows it: what a real run would wait for, not the real run's words
    ("The host is drained" is untrue when nothing was drained)."""
    import dataclasses

    items = "; ".join(checklist(step))
    text = (f"Check mode: nothing was changed, so there is nothing to do here now.\n"
            f"A real run stops here and waits until someone does the work and confirms: {items}.\n"
            f"The instructions: runbook show {runbook}")
    return dataclasses.replace(step, manual=text)


def rehearsed(step: Step) -> str:
    """What the record of a --check run says at a manual or approval step it went past."""
    if step.type == "manual":
        return f"rehearsed (check mode): a real run waits here until someone confirms: {'; '.join(checklist(step))}"
    assert step.approval is not None
    count = step.approval.approvers
    return (f"rehearsed (check mode): a real run waits here for {count} approval{'s' if count > 1 else ''}: "
            f"{step.approval.message}")


def rehearsal_notice(step: Step, runbook: str) -> str:
    """What a --check run shows at a manual or approval step before it goes on without waiting."""
    if step.type == "manual":
        lines = [_indent(rehearsal(step, runbook).manual or "")] + [f"  [ ] {item}" for item in checklist(step)]
    else:
        lines = [f"  {rehearsed(step).removeprefix('rehearsed (check mode): ')}"]
    return "\n".join([f"step {step.name!r} ({step.type}), rehearsed: check mode does not wait", *lines])
