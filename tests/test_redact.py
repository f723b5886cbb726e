"""Secrets in every shape Ansible, JSON and a shell give them are scrubbed from everything a run keeps or
prints: awkward secrets through a careless real playbook, then every output and file searched."""
from __future__ import annotations

import base64
import gzip
import html
import json
import random
import shlex
import sqlite3
import urllib.parse
import xml.sax.saxutils
from pathlib import Path

import pytest

from conftest import runbook
from runner.store.records import REDACTED
from runner.store.redact import Scrubber

QUOTED = 'pä"ss\\wörd-é7f3a'  # é, a double quote and a backslash
PEM = ("-----BEGIN PRIVATE KEY-----\n"
       "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
       "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
       "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n"
       "-----END PRIVATE KEY-----")
SPACED = "correct horse $battery staple"  # spaces and a dollar sign
APOSTROPHE = "it's-Quoted token 9x$"  # printed through `| quote` in a shell task
ENCODED = "b64/Url+Secret=42 é"  # base64- and URL-encoded by the playbook
SECRETS = (QUOTED, PEM, SPACED, APOSTROPHE, ENCODED)


def forms_of(secret: str) -> set[str]:
    """What a leak would look like: an independent list of the encodings, not the scrubber's own."""
    plain = {secret, secret.replace("\n", "\r\n"), shlex.quote(secret)[1:-1],
             urllib.parse.quote(secret), urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
             base64.b64encode(secret.encode()).decode(), base64.b64encode(secret.encode()).decode().rstrip("=")}
    plain |= {line for line in secret.splitlines() if len(line) >= 4 and secret.count("\n")}
    escaped = set(plain)
    for _ in range(2):  # JSON, and JSON inside JSON
        escaped |= {json.dumps(f)[1:-1] for f in escaped} | {json.dumps(f, ensure_ascii=False)[1:-1] for f in escaped}
    return {f for f in escaped if len(f) >= 4}


def test_every_form_of_an_awkward_secret_is_scrubbed() -> None:
    scrub = Scrubber(SECRETS)
    for secret in SECRETS:
        for form in forms_of(secret):
            text = scrub.text(f"<{form}>")
            assert REDACTED in text and not any(f in text for f in forms_of(secret) if len(f) >= 6), (form, text)


@pytest.mark.parametrize("written", [
    "\\u00e9\\\"\\\\",  # JSON with ASCII escaping
    "\\u00E9\\\"\\\\",  # upper-case hex
    "é\\\"\\\\",  # JSON without ASCII escaping
    "\\\\u00e9\\\\\\\"\\\\\\\\",  # JSON inside JSON
    "\\xc3\\xa9\"\\",  # UTF-8 bytes escaped, as Python's bytes repr
])
def test_unicode_escapes_in_any_case_and_depth(written: str) -> None:
    assert Scrubber(['xyzé"\\']).text(f"a xyz{written} b") == f"a {REDACTED} b"


MARKUP = "R&D<2024>'s \"café\""  # every character HTML and XML escape, and a non-ASCII one
_MARKUP_CHARS = "&<>'\"é"


@pytest.mark.parametrize("written", [
    html.escape(MARKUP),  # &amp; &lt; &gt; &#x27; &quot;
    html.escape(MARKUP, quote=False),
    xml.sax.saxutils.escape(MARKUP, {"'": "&apos;", '"': "&quot;"}),
    MARKUP.encode("ascii", "xmlcharrefreplace").decode(),  # &#233; from an ASCII-only XML writer
    "".join(f"&#{ord(c)};" if c in _MARKUP_CHARS else c for c in MARKUP),  # decimal references
    "".join(f"&#x{ord(c):x};" if c in _MARKUP_CHARS else c for c in MARKUP),  # hexadecimal, lower case
    "".join(f"&#X{ord(c):X};" if c in _MARKUP_CHARS else c for c in MARKUP),  # hexadecimal, upper case
    html.escape(MARKUP).replace("&amp;", "&#38;"),  # mixed
    json.dumps(MARKUP)[1:-1].replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"),  # Go
    json.dumps(html.escape(MARKUP)),  # an HTML page's text inside JSON
    urllib.parse.quote(MARKUP, safe=""),
    shlex.quote(MARKUP),
])
def test_markup_escapes_are_scrubbed_like_the_value(written: str) -> None:
    out = Scrubber([MARKUP]).text(f"<p>{written}</p>")
    assert REDACTED in out and "2024" not in out, (written, out)
    assert out.startswith("<p>") and out.endswith("</p>"), out


def test_a_secret_that_itself_holds_an_entity_is_found_as_written() -> None:
    scrub = Scrubber(["&amp;x-token-7f3a"])
    assert scrub.text("a &amp;x-token-7f3a b") == f"a {REDACTED} b"
    assert scrub.text("a &amp;amp;x-token-7f3a b") == f"a {REDACTED} b"  # its own HTML escape


def test_surrogate_pairs_and_long_escapes() -> None:
    scrub = Scrubber(["key😀x"])
    assert scrub.text("key\\ud83d\\ude00x / key\\U0001F600x") == f"{REDACTED} / {REDACTED}"


def test_each_line_of_a_multi_line_secret_and_crlf() -> None:
    scrub = Scrubber([PEM])
    lines = PEM.split("\n")
    assert scrub.text(json.dumps({"stdout_lines": lines})).count(REDACTED) == len(lines)
    assert scrub.text(PEM.replace("\n", "\r\n")) == REDACTED
    assert scrub.text("ok: x\r\n" + PEM.replace("\n", "\r\n") + "\r\n") == f"ok: x\r\n{REDACTED}\r\n"


def test_short_lines_and_fragments_are_left_alone() -> None:
    scrub = Scrubber(["abc\nlong-enough-line"])
    assert scrub.text("abc") == "abc"
    assert scrub.text("long-enough-line") == REDACTED


def test_command_split_into_argv_is_scrubbed() -> None:
    scrub = Scrubber([SPACED])
    shown = json.dumps({"cmd": ["echo", *SPACED.split()]}, indent=4)
    assert "battery" not in scrub.text(shown) and "battery" not in scrub.text(json.dumps(shown))


def test_base64_inside_a_longer_blob() -> None:
    scrub = Scrubber([ENCODED])
    for prefix in ("", "u", "us", "use"):
        blob = base64.b64encode(f"{prefix}:{ENCODED}\n".encode()).decode()
        assert REDACTED in scrub.text(blob), prefix


def test_data_stays_valid_json_and_keys_are_scrubbed() -> None:
    scrub = Scrubber([QUOTED, 'a\\"b'])
    event = {"stdout": json.dumps({"msg": QUOTED}), QUOTED: ['x a\\"b y', 3, None]}
    out = json.loads(scrub.json(event))
    assert out == {"stdout": json.dumps({"msg": REDACTED}), REDACTED: [f"x {REDACTED} y", 3, None]}


def test_backslash_heavy_secrets_do_not_blow_up() -> None:
    # Forms of one character never share a prefix, so the scan needs no backtracking (with plain
    # alternatives a run of backslashes backtracks exponentially). Two backslashes in a row must
    # still match at every depth.
    secret = "\\" * 25 + '"' * 10 + "X"
    scrub = Scrubber([secret, "a\\\\b"])
    assert scrub.text(json.dumps("\\" * 3000 + '"' * 3000 + "Y")) == json.dumps("\\" * 3000 + '"' * 3000 + "Y")
    assert scrub.text(json.dumps(json.dumps(secret))) == f'"\\"{REDACTED}\\""'
    for depth in range(4):
        text = "a\\\\b"
        for _ in range(depth):
            text = json.dumps(text)[1:-1]
        assert scrub.text(f"<{text}>") == f"<{REDACTED}>", depth


def test_empty_scrubber_passes_text_through() -> None:
    scrub = Scrubber(["", ""])
    assert not scrub and scrub.text("anything") == "anything" and scrub.data({"a": 1}) == {"a": 1}


CARELESS_RUNBOOK = """\
apiVersion: runbook/v1
name: awkward
title: A careless runbook that prints awkward secrets in every shape
version: 0.1.0
kind: operation
targets: db
concurrency: parallel
parameters:
  quoted: {type: secret, env: AWK_QUOTED, required: true}
  pem: {type: secret, env: AWK_PEM, required: true}
  spaced: {type: secret, env: AWK_SPACED, required: true}
  apostrophe: {type: secret, env: AWK_APOSTROPHE, required: true}
  encoded: {type: secret, env: AWK_ENCODED, required: true}
steps:
  - name: leak
    playbook: awkward.yml
"""

CARELESS_PLAYBOOK = r"""
- name: Print secrets carelessly
  hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: "quoted {{ quoted }} spaced {{ spaced }}"}
    - ansible.builtin.debug: {var: pem}
    - ansible.builtin.debug: {msg: "{{ {'nested': quoted, 'pem': pem} | to_json }}"}
    - ansible.builtin.shell: "echo {{ quoted | quote }}; echo {{ apostrophe | quote }}"
      changed_when: false
    - ansible.builtin.shell: "printf '%s\\n' {{ pem | quote }}"
      changed_when: false
    - ansible.builtin.command: "echo {{ spaced }}"
      changed_when: false
    - ansible.builtin.debug: {msg: "{{ encoded | b64encode }} {{ encoded | urlencode }} {{ (encoded | urlencode) | quote }}"}
    - ansible.builtin.shell: "printf %s {{ encoded | quote }} | base64; printf %s {{ quoted | quote }} | base64"
      changed_when: false
    - ansible.builtin.set_stats: {data: {leaked: "{{ quoted }}"}}
    - ansible.builtin.fail: {msg: "failed with {{ quoted }} and {{ apostrophe }}"}
"""


def test_awkward_secrets_leave_no_trace_anywhere(alien: Path, state_dir: Path, tmp_path: Path) -> None:
    (alien / "runbooks" / "awkward.yml").write_text(CARELESS_RUNBOOK)
    (alien / "playbooks" / "awkward.yml").write_text(CARELESS_PLAYBOOK)
    env = {"AWK_QUOTED": QUOTED, "AWK_PEM": PEM, "AWK_SPACED": SPACED, "AWK_APOSTROPHE": APOSTROPHE,
           "AWK_ENCODED": ENCODED}
    junit = tmp_path / "junit.xml"
    done = runbook("run", "awkward", "-v", "--json", "--junit", str(junit), cwd=alien, env=env)
    assert done.returncode == 1, done.stderr  # the last task fails on purpose
    assert "spaced ***" in done.stderr and "failed with *** and ***" in done.stderr
    shown = {"run stdout": done.stdout, "run stderr": done.stderr, "junit": junit.read_text()}
    for args in (["log", "last"], ["log", "last", "--host", "db1"], ["history", "--json"], ["show", "awkward"],
                 *(["report", "last", "--format", f] for f in ("json", "md", "html", "junit"))):
        out = runbook(*args, cwd=alien)
        assert out.returncode == 0, (args, out.stderr)
        shown[" ".join(args)] = out.stdout + out.stderr
    for path in [p for root in (state_dir, alien, tmp_path) for p in root.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        shown[str(path)] = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8", "replace")
    with sqlite3.connect(state_dir / "history.db") as db:
        shown["history.db rows"] = repr(db.execute("SELECT * FROM host_results").fetchall())
    assert "failed with ***" in shown["history.db rows"]
    record = json.loads(done.stdout)
    assert record["steps"][0]["data"] == {"leaked": REDACTED}
    leaks = [(where, form) for secret in SECRETS for form in forms_of(secret)
             for where, text in shown.items() if form in text]
    assert not leaks, f"{len(leaks)} leaks, e.g. {leaks[:5]}"
    events = next(state_dir.rglob("events.jsonl.gz"))
    assert all(json.loads(line) for line in gzip.decompress(events.read_bytes()).splitlines())


ALPHABET = "aZ09-_.:/+=%$'\"\\ \té€😀"


def _encode(secret: str, rng: random.Random) -> str:
    """`secret` as a careless playbook and the layers around it might write it."""
    how = rng.choice(["plain", "shell", "url", "url_plus", "base64", "printf_q"])
    text = {"plain": secret, "shell": shlex.quote(secret), "url": urllib.parse.quote(secret, safe=""),
            "url_plus": urllib.parse.quote_plus(secret), "base64": base64.b64encode(secret.encode()).decode(),
            "printf_q": "".join("\\" + c if not c.isalnum() and c not in "_-./,:=@%+" and ord(c) < 128 else c
                                for c in secret)}[how]
    for _ in range(rng.randrange(4)):
        text = json.dumps(text, ensure_ascii=rng.random() < 0.5)[1:-1]
    return text


def test_random_secrets_through_random_encodings() -> None:
    rng = random.Random(20261130)
    for _ in range(120):
        secret = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(4, 24)))
        scrub = Scrubber([secret])
        shown = _encode(secret, rng)
        out = scrub.text(f"before {shown} after")
        assert REDACTED in out and shown not in out, (secret, shown, out)
        assert out.startswith("before ") and out.endswith(" after"), (secret, shown, out)


@pytest.mark.parametrize("secret", ["x", "1", "4", "ab"])
def test_a_tiny_secret_keeps_events_valid_json(secret: str) -> None:
    event = {"counter": 14, "uuid": "4f1a-x", "stdout": f"token {secret}!", "list": ["a", "b"], "n": 1.5e-4}
    out = json.loads(Scrubber([secret]).json(event))
    assert out["stdout"] == f"token {REDACTED}!" and out["counter"] == 14
