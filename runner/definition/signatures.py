"""OpenSSH signatures (`ssh-keygen -Y`): the one place a signature is made or checked. The namespace is
a parameter, so a statement signed for one use never verifies as another. Keys come from a key file
(private, or public with its private half in the agent) or from the agent (SSH_AUTH_SOCK)."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from runner.errors import InvalidError

_TIMEOUT = 30


class SignatureError(InvalidError):
    """A signature that cannot be made or does not verify (exit 3)."""


def sign(namespace: str, payload: bytes, key: Path) -> str:
    """The armored signature of `payload` in `namespace` by `key` (a private key file, or a public key
    whose private half the agent holds)."""
    done = _keygen(["-Y", "sign", "-q", "-n", namespace, "-f", str(key)], payload)
    if done.returncode != 0 or "BEGIN SSH SIGNATURE" not in done.stdout:
        raise SignatureError(f"cannot sign with {key}: {_first_line(done.stderr) or 'ssh-keygen failed'}")
    return done.stdout


def verify(namespace: str, payload: bytes, signature: str, allowed_signers: Path, principal: str | None = None,
           at: float | None = None) -> str:
    """The principal whose key made `signature` over `payload` in `namespace`, as allowed_signers names
    it, valid at `at` (a Unix time; now when None); `principal`: only that one. SignatureError otherwise."""
    candidates = [principal] if principal else find_principals(signature, allowed_signers, at)
    if not candidates:
        raise SignatureError(f"the key that made this signature is not in {allowed_signers.name}, or not valid then")
    problem = ""
    for candidate in candidates:
        with _signature_file(signature) as sig:
            done = _keygen(["-Y", "verify", "-f", str(allowed_signers), "-I", candidate, "-n", namespace,
                            "-s", sig, *_at(at)], payload)
        if done.returncode == 0:
            return candidate
        problem = _first_line(done.stderr) or _first_line(done.stdout)
    raise SignatureError(f"the signature of {candidates[-1]!r} does not verify in {namespace} against "
                         f"{allowed_signers.name}: {problem}")


def find_principals(signature: str, allowed_signers: Path, at: float | None = None) -> list[str]:
    """The principals allowed_signers gives the key that made `signature` (valid at `at`); [] if none."""
    with _signature_file(signature) as sig:
        done = _keygen(["-Y", "find-principals", "-f", str(allowed_signers), "-s", sig, *_at(at)], b"")
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def listed_principals(public_key: str, allowed_signers: Path) -> list[str]:
    """The plain principals (no patterns) of the allowed_signers lines that list `public_key` (`type
    base64 ...`) itself; [] for a key only a certificate authority line or a pattern covers. Says
    nothing of validity: `verify` does."""
    words = public_key.split()
    if len(words) < 2:
        return []
    found = []
    for line in allowed_signers.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if line.lstrip().startswith("#") or words[1] not in fields or "cert-authority" in line.lower():
            continue
        found += [p for p in fields[0].strip('"').split(",") if p and not any(c in p for c in "*?!")]
    return found


def agent_keys() -> list[str]:
    """The public keys the agent at SSH_AUTH_SOCK holds (`type base64 comment` lines); [] without one."""
    if not os.environ.get("SSH_AUTH_SOCK") or shutil.which("ssh-add") is None:
        return []
    try:
        done = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in done.stdout.splitlines() if line.startswith(("ssh-", "ecdsa-", "sk-"))] \
        if done.returncode == 0 else []


def _keygen(args: list[str], payload: bytes) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("ssh-keygen")
    if binary is None:
        raise SignatureError("ssh-keygen is not installed: [team] signatures need OpenSSH 8.2 or newer")
    try:
        done = subprocess.run([binary, *args], input=payload, capture_output=True, timeout=_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SignatureError(f"ssh-keygen could not run: {exc}") from None
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))


class _signature_file:
    """The armored signature as a private temporary file (ssh-keygen reads it no other way)."""

    def __init__(self, signature: str) -> None:
        self.signature = signature
        self.path = ""

    def __enter__(self) -> str:
        fd, self.path = tempfile.mkstemp(prefix="runbook-sig-", suffix=".sig")
        with os.fdopen(fd, "w") as handle:
            handle.write(self.signature if self.signature.endswith("\n") else self.signature + "\n")
        return self.path

    def __exit__(self, *_exc: object) -> None:
        Path(self.path).unlink(missing_ok=True)


def _at(at: float | None) -> list[str]:
    if at is None:
        return []
    stamp = dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y%m%d%H%M%SZ")
    return ["-O", f"verify-time={stamp}"]


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""
