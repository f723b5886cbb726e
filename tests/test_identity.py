"""Identities that are proven: with [team] allowed_signers every sign-off is an `ssh-keygen -Y` signed
statement, its principal comes from the key (real keys, a real ssh-agent), and a sign-off that does not
verify is refused. Approvals given at the same time are all kept, once each, on both backends."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import IN_CI, copy_workspace, runbook

GATED = """apiVersion: runbook/v1
name: gated
title: A change that needs sign-offs
version: 1.0.0
kind: operation
steps:
  - name: announce
    manual: Announce the change.
    checklist: [Announced]
  - name: change-approval
    approval: {message: Apply the change, approvers: APPROVERS}
"""
LEADS = """apiVersion: runbook/v1
name: leads-gate
title: A change two leads approve
version: 1.0.0
kind: operation
steps:
  - name: change-approval
    approval: {message: Apply the change, approvers: 2, from: [leads]}
"""
PEOPLE = ("alice", "bob", "carol", "dave", "erin")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One ed25519 key per person (and a second one for bob), made by the real ssh-keygen."""
    if shutil.which("ssh-keygen") is None or shutil.which("ssh-agent") is None:
        if IN_CI:
            pytest.fail("ssh-keygen/ssh-agent are missing: install openssh-client", pytrace=False)
        pytest.skip("OpenSSH client tools are not installed")
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name in (*PEOPLE, "bob2"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)],
                       check=True)
        made[name] = folder / name
    return made


def _public(key: Path) -> str:
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


@pytest.fixture
def team(tmp_path: Path, keys: dict[str, Path]) -> Path:
    """A workspace with [team] on: alice, bob (two keys), carol, erin; dave's key expired in 2020;
    leads = alice, bob."""
    ws = copy_workspace("alien-workspace", tmp_path / "ws")
    (ws / "team").mkdir()
    lines = [f"{n} {_public(keys[n])}" for n in ("alice", "bob", "carol", "erin")]
    lines += [f"bob {_public(keys['bob2'])}", f'dave valid-before="20200101" {_public(keys["dave"])}']
    (ws / "team" / "allowed_signers").write_text("\n".join(lines) + "\n")
    with open(ws / "runbook.toml", "a") as toml:
        toml.write('\n[team]\nallowed_signers = "team/allowed_signers"\ngroups = {leads = ["alice", "bob"]}\n')
    _runbooks(ws)
    return ws


def _runbooks(ws: Path, approvers: int = 1) -> None:
    (ws / "runbooks" / "gated.yml").write_text(GATED.replace("APPROVERS", str(approvers)))
    (ws / "runbooks" / "leads-gate.yml").write_text(LEADS)


def as_(ws: Path, key: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return runbook(*args, cwd=ws, env={"RUNBOOK_SIGNING_KEY": str(key), **env})


def _record(state: Path) -> dict[str, Any]:
    [path] = sorted((state / "runs").glob("*/run.json"))
    return dict(json.loads(path.read_text()))


def _approval(record: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in record["steps"] if s["name"] == "change-approval")


def _waiting_for_approval(ws: Path, key: Path) -> None:
    assert as_(ws, key, "run", "gated").returncode == 5
    confirmed = as_(ws, key, "resume", "last", "--confirm")
    assert confirmed.returncode == 5, confirmed.stderr


@pytest.fixture
def agent(tmp_path: Path, keys: dict[str, Path]) -> Iterator[str]:
    """A real ssh-agent on its own socket, holding alice's key."""
    sock = str(tmp_path / "agent.sock")
    started = subprocess.run(["ssh-agent", "-a", sock, "-s"], capture_output=True, text=True, check=True)
    pid = int(started.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        subprocess.run(["ssh-add", "-q", str(keys["alice"])], env=dict(os.environ, SSH_AUTH_SOCK=sock), check=True,
                       capture_output=True)
        yield sock
    finally:
        os.kill(pid, signal.SIGTERM)


# -- who signs ------------------------------------------------------------------------------------------
def test_bob_approves_alices_run_signed_and_counted(team: Path, keys: dict[str, Path], state_dir: Path,
                                                   agent: str) -> None:
    started = runbook("run", "gated", cwd=team, env={"SSH_AUTH_SOCK": agent, "RUNBOOK_USER": "mallory"})
    assert started.returncode == 5, started.stderr
    record = _record(state_dir)
    assert record["operator"] == "alice"  # from the agent's key; RUNBOOK_USER is only a label
    [start] = record["signed"]
    assert start["decision"] == "started" and "BEGIN SSH SIGNATURE" in start["signature"]
    assert json.loads(start["statement"])["kind"] == "start"
    assert runbook("resume", "last", "--confirm", cwd=team, env={"SSH_AUTH_SOCK": agent}).returncode == 5
    approved = as_(team, keys["bob"], "approve", "last", "--note", "lgtm")
    assert approved.returncode == 0, approved.stderr
    assert "approved by bob (1/1)" in approved.stderr
    statement = json.loads(_approval(_record(state_dir))["signoffs"][0]["statement"])
    assert statement | {"at": "-"} == {
        "kind": "approve", "run": record["id"], "step": "change-approval", "item": "", "decision": "approved",
        "note": "lgtm", "runbook_sha256": record["runbook_sha256"], "at": "-", "principal": "bob"}
    finished = runbook("resume", "last", cwd=team, env={"SSH_AUTH_SOCK": agent})
    assert finished.returncode == 0, finished.stderr
    assert _record(state_dir)["status"] == "succeeded"
    report = runbook("report", "last", "--format", "md", cwd=team).stdout
    assert "Identities are verified" in report and "unverified" not in report


def test_a_checklist_walked_on_a_terminal_is_signed_item_by_item(team: Path, keys: dict[str, Path],
                                                                   state_dir: Path) -> None:
    import pexpect

    assert as_(team, keys["alice"], "run", "gated").returncode == 5
    child = pexpect.spawn(sys.executable, ["-m", "runner", "resume", "last"], cwd=str(team), encoding="utf-8",
                          env=dict(os.environ, RUNBOOK_SIGNING_KEY=str(keys["carol"])), timeout=60)
    child.expect(r"Announced: \(c\)onfirm, \(n\)ote, \(a\)bort\? ")
    child.sendline("c")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5  # at the approval now
    record = _record(state_dir)
    [confirmed] = record["steps"][0]["signoffs"]
    assert json.loads(confirmed["statement"]) | {"at": "-"} == {
        "kind": "confirm", "run": record["id"], "step": "announce", "item": "Announced", "decision": "confirmed",
        "note": "", "runbook_sha256": record["runbook_sha256"], "at": "-", "principal": "carol"}
    assert [s["who"] for s in record["resumes"]] == ["carol"] and record["resumes"][0]["signature"]


def test_the_operator_cannot_approve_under_another_name(team: Path, keys: dict[str, Path], state_dir: Path) -> None:
    _waiting_for_approval(team, keys["alice"])
    own = as_(team, keys["alice"], "approve", "last")
    assert own.returncode == 3 and "alice started run" in own.stderr and "cannot approve it" in own.stderr
    disguised = as_(team, keys["alice"], "approve", "last", RUNBOOK_USER="bob", CI="1", GITHUB_ACTOR="bob")
    assert disguised.returncode == 3 and "alice started run" in disguised.stderr
    assert _approval(_record(state_dir))["signoffs"] == []


def test_two_keys_of_one_principal_count_once_and_groups_are_enforced(team: Path, keys: dict[str, Path],
                                                                       state_dir: Path) -> None:
    assert as_(team, keys["alice"], "run", "leads-gate").returncode == 5
    outsider = as_(team, keys["carol"], "approve", "last")
    assert outsider.returncode == 3 and "carol is not in leads" in outsider.stderr
    assert as_(team, keys["bob"], "approve", "last").returncode == 0
    again = as_(team, keys["bob2"], "approve", "last")  # bob's second key: still bob
    assert again.returncode == 2 and "bob has already approved" in again.stderr
    waiting = as_(team, keys["bob"], "resume", "last")
    assert waiting.returncode == 5 and "approvals: 1/2 (bob)" in waiting.stderr


def test_an_expired_or_unknown_key_is_refused(team: Path, keys: dict[str, Path], state_dir: Path,
                                              tmp_path: Path) -> None:
    _waiting_for_approval(team, keys["alice"])
    expired = as_(team, keys["dave"], "approve", "last")
    assert expired.returncode == 3 and "not in allowed_signers, or not valid now" in expired.stderr
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "eve")], check=True)
    unknown = as_(team, tmp_path / "eve", "approve", "last", RUNBOOK_USER="bob")
    assert unknown.returncode == 3 and "not in allowed_signers" in unknown.stderr
    assert _approval(_record(state_dir))["signoffs"] == []
    _forge(state_dir, lambda r: _approval(r)["signoffs"].append(_backdated(r, keys["dave"])))
    backdated = as_(team, keys["alice"], "resume", "last")  # signed while dave's key was valid, in 2019
    assert backdated.returncode == 3 and "dated 2019-06-01T00:00:00.000000Z, outside the run's life" in backdated.stderr
    _forge(state_dir, lambda r: _approval(r)["signoffs"].clear())
    assert as_(team, keys["carol"], "cancel", "last", RUNBOOK_USER="alice").returncode == 0
    record = _record(state_dir)
    assert record["status"] == "canceled" and record["message"] == "canceled by carol while waiting"
    assert [(s["who"], json.loads(s["statement"])["kind"]) for s in record["signed"]] == [
        ("alice", "start"), ("carol", "cancel")]


def _backdated(record: dict[str, Any], key: Path) -> dict[str, Any]:
    """dave's approval of `record`, dated 2019 and signed by hand with ssh-keygen."""
    at = "2019-06-01T00:00:00.000000Z"
    text = json.dumps({"kind": "approve", "run": record["id"], "step": "change-approval", "item": "",
                       "decision": "approved", "note": "", "runbook_sha256": record["runbook_sha256"], "at": at,
                       "principal": "dave"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signature = subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-n", "runbook-approve", "-f", str(key)],
                               input=text, capture_output=True, text=True, check=True).stdout
    return {"who": "dave", "at": at, "note": "", "item": "", "decision": "approved", "host": "x",
            "statement": text, "signature": signature}


# -- sign-offs that were not given ---------------------------------------------------------------------------
def _forge(state: Path, change: Any) -> None:
    [path] = sorted((state / "runs").glob("*/run.json"))
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_a_signoff_added_by_hand_is_refused_by_resume(backend: str, team: Path, keys: dict[str, Path],
                                                      state_dir: Path) -> None:
    _waiting_for_approval(team, keys["alice"])
    forged = {"who": "bob", "at": "2026-12-07T10:00:00.000000Z", "note": "", "item": "", "decision": "approved",
              "host": "x", "statement": "", "signature": ""}
    _forge(state_dir, lambda r: _approval(r)["signoffs"].append(forged))
    if backend == "postgresql":
        _forge_row(state_dir, forged)
    refused = as_(team, keys["alice"], "resume", "last")
    assert refused.returncode == 3, refused.stderr
    assert "'approved' sign-off of 'bob' at step 'change-approval' is not signed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert _record(state_dir)["status"] == "waiting" and _record(state_dir)["resumes"][-1]["decision"] == "resumed"
    assert len(_record(state_dir)["resumes"]) == 1  # the refused resume left nothing


def _forge_row(state: Path, forged: dict[str, Any]) -> None:
    """The same sign-off written into the runs.record column of the team database."""
    import psycopg

    with psycopg.connect(os.environ["RUNBOOK_DATABASE_URL"], autocommit=True) as conn:
        run_id, text = conn.execute("SELECT id, record FROM runs").fetchone()  # type: ignore[misc]
        record = json.loads(text)
        _approval(record)["signoffs"].append(forged)
        conn.execute("UPDATE runs SET record = %s WHERE id = %s", (json.dumps(record), run_id))


def test_a_confirmation_replayed_as_an_approval_is_refused(team: Path, keys: dict[str, Path], state_dir: Path) -> None:
    """Bob confirmed the checklist; his signed confirmation is copied into the approval step."""
    assert as_(team, keys["alice"], "run", "gated").returncode == 5
    assert as_(team, keys["bob"], "resume", "last", "--confirm").returncode == 5

    def replay(record: dict[str, Any]) -> None:
        confirmation = dict(record["steps"][0]["signoffs"][0])
        _approval(record)["signoffs"].append(dict(confirmation, decision="approved", item=""))
    _forge(state_dir, replay)
    refused = as_(team, keys["alice"], "resume", "last")
    assert refused.returncode == 3 and "does not match its signed statement" in refused.stderr

    def restate(record: dict[str, Any]) -> None:  # the statement rewritten too: the signature then fails
        signoff = _approval(record)["signoffs"][0]
        text = json.loads(signoff["statement"]) | {"kind": "approve", "decision": "approved", "item": "",
                                                   "step": "change-approval"}
        signoff["statement"] = json.dumps(text, sort_keys=True, separators=(",", ":"))
    _forge(state_dir, restate)
    refused = as_(team, keys["alice"], "resume", "last")
    assert refused.returncode == 3 and "does not verify in runbook-approve" in refused.stderr
    assert _record(state_dir)["status"] == "waiting"


def test_a_signed_approval_copied_from_another_run_is_refused(team: Path, keys: dict[str, Path],
                                                              state_dir: Path) -> None:
    _waiting_for_approval(team, keys["alice"])
    assert as_(team, keys["bob"], "approve", "last").returncode == 0
    assert as_(team, keys["alice"], "resume", "last").returncode == 0
    first = next(p for p in (state_dir / "runs").glob("*/run.json"))
    approval = _approval(json.loads(first.read_text()))["signoffs"][0]
    _waiting_for_approval(team, keys["alice"])
    second = next(p for p in sorted((state_dir / "runs").glob("*/run.json")) if p != first)
    record = json.loads(second.read_text())
    _approval(record)["signoffs"].append(approval)
    second.write_text(json.dumps(record))
    refused = as_(team, keys["alice"], "resume", record["id"])
    assert refused.returncode == 3 and "copied from another run" in refused.stderr


# -- without [team] ----------------------------------------------------------------------------------------
def test_without_team_names_hiding_characters_are_refused_and_labels_are_said_unverified(
        alien: Path, state_dir: Path) -> None:
    _runbooks(alien)
    assert runbook("run", "gated", cwd=alien, env={"RUNBOOK_USER": "bob"}).returncode == 5
    assert runbook("resume", "last", "--confirm", cwd=alien, env={"RUNBOOK_USER": "bob"}).returncode == 5
    hidden = runbook("approve", "last", cwd=alien, env={"RUNBOOK_USER": "bob\u200b"})
    assert hidden.returncode == 3 and "U+200B" in hidden.stderr
    wide = runbook("approve", "last", cwd=alien, env={"RUNBOOK_USER": "ｂｏｂ"})  # fullwidth: NFKC is bob
    assert wide.returncode == 1 and "cannot approve it" in wide.stderr
    assert runbook("approve", "last", cwd=alien, env={"RUNBOOK_USER": "carol"}).returncode == 0
    for fmt in ("md", "html"):
        assert "Identities are unverified" in runbook("report", "last", "--format", fmt, cwd=alien).stdout
    no_group = runbook("run", "leads-gate", cwd=alien)
    assert no_group.returncode == 3 and "no group 'leads' in runbook.toml [team] groups" in no_group.stderr
    shown = runbook("show", "gated", cwd=alien)
    assert "sign-offs:   identities are unverified" in shown.stdout


# -- approvals at the same time ---------------------------------------------------------------------------
@pytest.mark.parametrize("signed", [False, True], ids=["labels", "signed"])
def test_concurrent_approvals_are_all_kept_once(backend: str, signed: bool, team: Path, alien: Path,
                                                keys: dict[str, Path], state_dir: Path) -> None:
    ws = team if signed else alien
    _runbooks(ws, approvers=3)
    people = ("bob", "carol", "erin")
    start = {"RUNBOOK_SIGNING_KEY": str(keys["alice"]), "RUNBOOK_USER": "alice"}
    assert runbook("run", "gated", cwd=ws, env=start).returncode == 5
    assert runbook("resume", "last", "--confirm", cwd=ws, env=start).returncode == 5
    children = [subprocess.Popen([sys.executable, "-m", "runner", "approve", "last", "--note", f"by {n} {i}"],
                                 cwd=ws, env=dict(os.environ, RUNBOOK_USER=n, RUNBOOK_SIGNING_KEY=str(keys[n])),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i, n in enumerate(people)]
    codes = [c.wait(timeout=120) for c in children]
    kept = [(s["who"], s["note"]) for s in _approval(_record(state_dir))["signoffs"]]
    assert codes == [0, 0, 0], [c.stderr.read() for c in children if c.stderr]
    assert sorted(kept) == [("bob", "by bob 0"), ("carol", "by carol 1"), ("erin", "by erin 2")]
    assert all(bool(s["signature"]) == signed for s in _approval(_record(state_dir))["signoffs"])
    resumed = runbook("resume", "last", cwd=ws, env=start)
    assert resumed.returncode == 0, resumed.stderr


# -- cancel of a running run -------------------------------------------------------------------------------
def _wait_until_running(state: Path, proc: subprocess.Popen[str]) -> None:
    for _ in range(600):
        runs = sorted((state / "runs").glob("*/run.json")) if (state / "runs").is_dir() else []
        try:
            if runs and json.loads(runs[0].read_text())["steps"][0]["status"] == "running":
                return
        except (ValueError, KeyError, IndexError):
            pass  # being written
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the run never reached its playbook step")


def test_cancel_of_a_running_run_is_signed_and_an_unknown_key_is_refused(team: Path, keys: dict[str, Path],
                                                                         state_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", "sleeper", "-p", "seconds=97"], cwd=team,
                            env=dict(os.environ, RUNBOOK_SIGNING_KEY=str(keys["alice"])), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_until_running(state_dir, proc)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "eve")], check=True)
        unknown = as_(team, tmp_path / "eve", "cancel", "last", RUNBOOK_USER="carol")
        assert unknown.returncode == 3 and "not in allowed_signers" in unknown.stderr
        assert len(unknown.stderr.strip().splitlines()) == 1
        assert proc.poll() is None and _record(state_dir)["status"] == "running"  # refused: nothing was done
        canceled = as_(team, keys["carol"], "cancel", "last", RUNBOOK_USER="alice")
        assert canceled.returncode == 0, canceled.stderr
        assert "canceled (canceled by carol)" in canceled.stderr
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    record = _record(state_dir)
    assert record["status"] == "canceled" and record["message"] == "canceled by carol"
    assert [(s["who"], json.loads(s["statement"])["kind"]) for s in record["signed"]] == [
        ("alice", "start"), ("carol", "cancel")]
    assert "BEGIN SSH SIGNATURE" in record["signed"][1]["signature"]
    assert not list((state_dir / "runs").glob("*/cancel.json"))


def test_a_cancel_planted_in_the_run_folder_is_not_recorded(team: Path, keys: dict[str, Path], state_dir: Path) -> None:
    """A cancel statement copied into the folder of a running run (here: signed by no one) is dropped
    by the run as it ends, and the record says the cancel did not verify."""
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", "sleeper", "-p", "seconds=98"], cwd=team,
                            env=dict(os.environ, RUNBOOK_SIGNING_KEY=str(keys["alice"])), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_until_running(state_dir, proc)
        [folder] = (state_dir / "runs").iterdir()
        forged = {"who": "carol", "at": json.loads((folder / "run.json").read_text())["started_at"], "note": "",
                  "item": "", "decision": "canceled", "host": "x", "statement": "{}", "signature": ""}
        (folder / "cancel.json").write_text(json.dumps(forged))
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    record = _record(state_dir)
    assert record["status"] == "canceled" and "the cancel request did not verify" in record["message"]
    assert "is not signed" in record["message"], record["message"]
    assert [s["who"] for s in record["signed"]] == ["alice"]
