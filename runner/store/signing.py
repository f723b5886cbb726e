"""OpenSSH signatures (`ssh-keygen -Y`) over bytes: sign with a key file or the agent, verify against an
allowed_signers file or, without one, against the key embedded in the signature. Each kind of statement
has its own namespace (`runbook-checkpoint`, `runbook-prune`) so one cannot be replayed as another.
Data goes through stdin and temp files in a private folder: nothing is written beside the caller's files."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from runner.errors import InvalidError, RunbookError

_FINGERPRINT = re.compile(r"(SHA256:[A-Za-z0-9+/=]+)")


class SignatureError(RunbookError):
    """A signature that cannot be made or does not verify."""


@dataclass(frozen=True)
class Signer:
    """Who verified: the principal (from allowed_signers) or, without one, the key's fingerprint."""

    principal: str
    fingerprint: str


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise InvalidError("ssh-keygen is not installed: signatures need OpenSSH's ssh-keygen (openssh-client)")
    return found


@contextmanager
def signing_key(key: str | None) -> Iterator[Path]:
    """The key to sign with: `key` (a private key file, or a public one whose private half is in the
    agent), else the first key of the agent (SSH_AUTH_SOCK)."""
    if key:
        path = Path(key).expanduser()
        if not path.is_file():
            raise InvalidError(f"--key {key}: no such key file")
        yield path
        return
    if not os.environ.get("SSH_AUTH_SOCK"):
        raise InvalidError("nothing to sign with: give --key FILE (a private key, or a public key held by "
                           "ssh-agent) or start ssh-agent (SSH_AUTH_SOCK)")
    listed = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, timeout=30)
    first = listed.stdout.strip().splitlines()[:1]
    if listed.returncode != 0 or not first:
        raise InvalidError("ssh-agent holds no key: add one with ssh-add, or give --key FILE")
    with tempfile.TemporaryDirectory(prefix="runbook-sign-") as folder:
        (Path(folder) / "agent.pub").write_text(first[0] + "\n")
        yield Path(folder) / "agent.pub"


def key_fingerprint(key: str | None) -> str:
    """SHA256:... of the key `sign` would use."""
    with signing_key(key) as path:
        return fingerprint_of(path)


def sign(namespace: str, data: bytes, key: str | None) -> str:
    """The armored signature of `data` in `namespace` with `key` (see signing_key)."""
    with signing_key(key) as path:
        done = subprocess.run([_ssh_keygen(), "-q", "-Y", "sign", "-f", str(path), "-n", namespace],
                              input=data, capture_output=True, timeout=60)
    if done.returncode != 0 or b"BEGIN SSH SIGNATURE" not in done.stdout:
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no signature"]
        raise SignatureError(f"ssh-keygen -Y sign failed: {why[0]}")
    return done.stdout.decode().strip()


def verify(namespace: str, data: bytes, signature: str, allowed_signers: Path | None) -> Signer:
    """Who signed `data`: against `allowed_signers` when given (the principal must be listed and
    valid), else only the signature itself (the signer is then the key's fingerprint)."""
    with tempfile.TemporaryDirectory(prefix="runbook-verify-") as tmp:
        sig = Path(tmp) / "sig"
        sig.write_text(signature + "\n")
        if allowed_signers is None:
            done = _run(["-Y", "check-novalidate", "-n", namespace, "-s", str(sig)], data)
            return Signer("", _fingerprint(done))
        found = _run(["-Y", "find-principals", "-s", str(sig), "-f", str(allowed_signers)], b"")
        principal = found.strip().splitlines()[0]
        done = _run(["-Y", "verify", "-f", str(allowed_signers), "-I", principal, "-n", namespace,
                     "-s", str(sig)], data)
        return Signer(principal, _fingerprint(done))


def fingerprint_of(public_key: Path) -> str:
    """SHA256:... of a public (or private) key file."""
    return _fingerprint(_run(["-l", "-f", str(public_key)], b""))


def _run(args: list[str], data: bytes) -> str:
    done = subprocess.run([_ssh_keygen(), *args], input=data, capture_output=True, timeout=60)
    text = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        raise SignatureError(lines[-1] if lines else "the signature does not verify")
    return text


def _fingerprint(text: str) -> str:
    found = _FINGERPRINT.search(text)
    return found.group(1) if found else ""
