"""Sign-offs: who started, confirmed, approved, rejected, resumed or canceled a run.

With `[team] allowed_signers` each one is a statement (canonical JSON: kind, run, step, item, decision,
note, the runbook's sha256, time, principal) signed with `ssh-keygen -Y sign` in a namespace of its kind
(`runbook-approve`, `runbook-confirm`, ...), so that one kind is never replayed as another; the principal
is the one allowed_signers gives the key, and every statement is verified again before it counts.
Without [team] they are labels (RUNBOOK_USER, the CI's user, user@host), and say so."""
from __future__ import annotations

import atexit
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

from runner.definition.model import Approval
from runner.definition.signatures import (SignatureError, agent_keys, find_principals, listed_principals, sign,
                                          verify)
from runner.definition.workspace import Workspace
from runner.identity import folded, normalized, same_person
from runner.store.base import stamp_time
from runner.store.records import RunRecord, Signoff, StepRecord, from_iso, iso, now

KIND = {"started": "start", "confirmed": "confirm", "aborted": "confirm", "approved": "approve",
        "rejected": "reject", "resumed": "resume", "canceled": "cancel"}
UNVERIFIED = ("identities are unverified: names are labels anyone can set (RUNBOOK_USER, CI variables); "
              "[team] allowed_signers in runbook.toml makes them signed")
KEY_ENV = "RUNBOOK_SIGNING_KEY"
_WHOAMI = "runbook-whoami"
_SKEW = 300.0  # seconds of clock difference allowed between the machines of a team
CANCEL_FILE = "cancel.json"  # a signed cancel handed by `runbook cancel` to the running process


def namespace(decision: str) -> str:
    return f"runbook-{KIND[decision]}"


def statement(record: RunRecord, step: str, decision: str, note: str, item: str, at: float, principal: str) -> str:
    """The canonical text signed for one sign-off (sorted keys, no spaces, UTF-8)."""
    return json.dumps({"kind": KIND[decision], "run": record.id, "step": step, "item": item, "decision": decision,
                       "note": note, "runbook_sha256": record.runbook_sha256, "at": iso(at),
                       "principal": principal}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Signer:
    """Makes the sign-offs of the person at this terminal (signed with [team] on, labels otherwise) and
    verifies those a record holds."""

    def __init__(self, label: str, allowed_signers: Path | None = None) -> None:
        self.label = label
        self.allowed_signers = allowed_signers
        self._key: Path | None = None
        self._principal: str | None = None
        self._proven = False  # the key was shown to be the principal's and valid now

    @classmethod
    def for_workspace(cls, ws: Workspace, label: str) -> Signer:
        return cls(label, ws.allowed_signers)

    @property
    def signed(self) -> bool:
        return self.allowed_signers is not None

    @property
    def who(self) -> str:
        """The principal the key proves ([team] on), else the label."""
        if self.allowed_signers is None:
            return self.label
        if self._principal is None:
            self._principal = self._find_principal(self.allowed_signers)
        return self._principal

    def signoff(self, record: RunRecord, step: str, decision: str, note: str = "", item: str = "") -> Signoff:
        at = from_iso(iso(now())) or now()  # the time exactly as the record keeps it
        if self.allowed_signers is None:
            return Signoff(self.label, at, note, item, decision)
        who = self.who
        text = statement(record, step, decision, note, item, at, who)
        signature = sign(namespace(decision), text.encode(), self.key)
        if not self._proven:  # once: the key is the principal's and valid now, or nothing is recorded
            try:
                verify(namespace(decision), text.encode(), signature, self.allowed_signers, principal=who, at=at)
            except SignatureError as exc:
                raise SignatureError(f"the key {self.key} is not in {_name(self.allowed_signers)}, or not valid now "
                                     f"for {who} ({exc}): nothing was done") from None
            self._proven = True
        return Signoff(who, at, note, item, decision, statement=text, signature=signature)

    def verify(self, record: RunRecord) -> None:
        """SignatureError (exit 3) naming the first sign-off of `record` that is not a statement its
        principal signed, with a key valid then, for this run, this step and this kind."""
        if self.allowed_signers is None:
            return
        start = next((s for s in record.signed if s.decision == "started"), None)
        if start is None or not same_person(start.who, record.operator):
            raise SignatureError(f"run {record.id}: no start statement signed by its operator {record.operator!r} "
                                 "(started before [team] was on, or its record was edited): refused; nothing was recorded")
        # A statement dated before the run began could have been signed with a key expired since.
        begun = stamp_time(record.id) or start.at
        for step, signoff in _signoffs(record):
            self._check(record, step, signoff, self.allowed_signers, begun)

    def take_cancel(self, record: RunRecord, folder: Path) -> None:
        """The signed cancel `runbook cancel` left in the run's folder before its SIGTERM, verified and
        added to the record (one that does not verify is dropped, and the record says so)."""
        path = folder / CANCEL_FILE
        if self.allowed_signers is None or not path.is_file():
            return
        try:
            signoff = _signoff_from_json(path.read_text(encoding="utf-8"))
            self._check(record, "", signoff, self.allowed_signers, stamp_time(record.id) or record.started_at)
        except (OSError, ValueError, TypeError, KeyError, SignatureError) as exc:
            record.message = f"canceled; the cancel request did not verify and was not recorded ({exc})"
        else:
            record.signed.append(signoff)
            record.message = f"canceled by {signoff.who}"
        path.unlink(missing_ok=True)

    def _check(self, record: RunRecord, step: str, signoff: Signoff, allowed: Path, begun: float) -> None:
        where = f"run {record.id}: the {signoff.decision!r} sign-off of {signoff.who!r}" + (f" at step {step!r}" if step else "")
        if signoff.decision not in KIND:
            raise SignatureError(f"{where} is of no known kind: refused; nothing was recorded")
        if not signoff.statement or not signoff.signature:
            raise SignatureError(f"{where} is not signed (added by hand?): refused; nothing was recorded")
        if not begun - _SKEW <= signoff.at <= now() + _SKEW:
            raise SignatureError(f"{where} is dated {iso(signoff.at)}, outside the run's life: refused; "
                                 "nothing was recorded")
        if signoff.statement != statement(record, step, signoff.decision, signoff.note, signoff.item, signoff.at,
                                          signoff.who):
            raise SignatureError(f"{where} does not match its signed statement (copied from another run, step "
                                 "or kind, or edited): refused; nothing was recorded")
        try:
            verify(namespace(signoff.decision), signoff.statement.encode(), signoff.signature, allowed,
                   principal=signoff.who, at=signoff.at)
        except SignatureError as exc:
            raise SignatureError(f"{where}: {exc}: refused; nothing was recorded") from None

    @property
    def key(self) -> Path:
        """RUNBOOK_SIGNING_KEY (a private key file, or a public one whose private half the agent holds),
        else the first key of the agent (SSH_AUTH_SOCK) that allowed_signers lists."""
        if self._key is None:
            self._key = self._choose_key()
        return self._key

    def _choose_key(self) -> Path:
        chosen = os.environ.get(KEY_ENV)
        if chosen:
            path = Path(chosen).expanduser()
            if not path.is_file():
                raise SignatureError(f"{KEY_ENV}={chosen}: no such key file")
            return path
        listed = {w for line in (self.allowed_signers.read_text().splitlines() if self.allowed_signers else ())
                  for w in line.split()}
        for line in agent_keys():
            if line.split()[1] in listed:
                return _public_key_file(line)
        raise SignatureError(f"[team] is on and no key to sign with: load a key listed in {_name(self.allowed_signers)} "
                             f"into your ssh-agent (ssh-add), or set {KEY_ENV}=PATH; nothing was done")

    def _find_principal(self, allowed: Path) -> str:
        """The first principal allowed_signers gives the key: read from the file when a line lists the key
        itself (the first signature then proves it), else (a certificate, a pattern) asked of ssh-keygen."""
        principals = listed_principals(self._public_key(), allowed)
        if not principals:
            probe = sign(_WHOAMI, _WHOAMI.encode(), self.key)
            principals = find_principals(probe, allowed, now())
            self._proven = bool(principals)
        if not principals:
            raise SignatureError(f"the key {self.key} is not in {_name(allowed)}, or not valid now: nothing was done")
        return normalized(principals[0], f"{_name(allowed)}: principal")

    def _public_key(self) -> str:
        key = self.key
        public = key if key.suffix == ".pub" else key.with_name(key.name + ".pub")
        try:
            return public.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def identity_note(record: RunRecord) -> str:
    """One line for a run's report: whether the names in it are proven."""
    given = [s for _, s in _signoffs(record)]
    if given and all(s.signature for s in given):
        return ("Identities are verified: every sign-off is a statement signed with ssh-keygen -Y by a key "
                "the team's allowed_signers lists.")
    return f"{UNVERIFIED[0].upper()}{UNVERIFIED[1:]}."


def team_note(ws: Workspace) -> str:
    """One line for a runbook's page: how the people who sign off are identified in this workspace."""
    signers = ws.config.team.allowed_signers
    return f"signed with SSH keys listed in {signers} ([team])" if signers else UNVERIFIED


def counted_approvers(step_record: StepRecord, approval: Approval | None, operator: str,
                      groups: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The distinct people whose approvals count: never the operator, once each however many keys or
    spellings, and only members of `approval.from` groups when it names some."""
    counted: dict[str, str] = {}
    for signoff in step_record.signoffs:
        name = folded(signoff.who)
        if signoff.decision != "approved" or same_person(signoff.who, operator) or name in counted:
            continue
        if in_groups(signoff.who, approval, groups):
            counted[name] = signoff.who
    return sorted(counted.values())


def in_groups(who: str, approval: Approval | None, groups: Mapping[str, tuple[str, ...]]) -> bool:
    """Whether `who` may approve: in one of the `approval.from` groups, or anyone when it names none."""
    if approval is None or not approval.from_groups:
        return True
    return folded(who) in {folded(m) for g in approval.from_groups for m in groups.get(g, ())}


def unknown_groups(approval: Approval | None, groups: Mapping[str, tuple[str, ...]]) -> list[str]:
    return [g for g in (approval.from_groups if approval else ()) if g not in groups]


def _signoffs(record: RunRecord) -> Iterator[tuple[str, Signoff]]:
    for signoff in record.signed + record.resumes:
        yield "", signoff
    for step in record.steps:
        for signoff in step.signoffs:
            yield step.name, signoff


def cancel_request(signoff: Signoff) -> bytes:
    """The signed cancel as `take_cancel` reads it back."""
    return json.dumps(dataclasses.asdict(signoff) | {"at": iso(signoff.at)}).encode()


def _signoff_from_json(text: str) -> Signoff:
    data = json.loads(text)
    fields = {f.name for f in dataclasses.fields(Signoff)}
    if not isinstance(data, dict) or set(data) != fields or not all(isinstance(v, str) for v in data.values()):
        raise ValueError("not a sign-off")
    at = from_iso(data["at"])
    if at is None or data["decision"] != "canceled":
        raise ValueError("not a cancel")
    return Signoff(**{**data, "at": at})


def _name(path: Path | None) -> str:
    return path.name if path else "allowed_signers"


def _public_key_file(line: str) -> Path:
    """The agent's public key as a file for `ssh-keygen -Y sign -f` (the agent signs), removed at exit."""
    fd, name = tempfile.mkstemp(prefix="runbook-agent-", suffix=".pub")
    with os.fdopen(fd, "w") as handle:
        handle.write(line + "\n")
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return Path(name)
