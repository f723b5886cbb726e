"""Scrub known secret values from everything a run keeps or prints, in every form Ansible, JSON and a
shell give them.

A secret is looked for as a set of plain strings (the value, each line of a multi-line value, its
shell-quoted, URL-encoded and base64 forms), each of them also at up to three levels of JSON escaping
(a command's JSON output inside Ansible's JSON result inside an event record), every character in
any of its escapes (JSON and Python `\\u`/`\\x`, HTML/XML character references). The forms are grouped by an anchor, a run of letters and digits that looks the same
in every encoding; each group is one compiled regex, longest form first, run only on text that holds
its anchor, so output without a secret streams through at the speed of a substring search."""
from __future__ import annotations

import base64
import json
import re
import shlex
import string
from typing import Any, Iterable
from urllib.parse import quote, quote_plus

from runner.store.records import REDACTED

JSON_LEVELS = 3
# Lines of a multi-line secret (a PEM key) are scrubbed one by one from this length on: Ansible's
# stdout_lines and YAML block output split it; shorter lines are not worth hiding (and too common).
MIN_LINE = 4
# Base64 fragments shorter than this are not looked for on their own (too likely in ordinary text).
_MIN_BASE64 = 8
# Line widths of wrapped base64: `base64` (76) and `openssl base64` / PEM (64).
_BASE64_WIDTHS = (64, 76)
# A run of letters and digits this long in every form makes a cheap prefilter; shorter: always scan.
_MIN_ANCHOR = 3
_SHELL_SPECIAL = frozenset(string.punctuation + " \t") - frozenset("_-./,:=@%+")
# Every secret a Scrubber was made for in this process: what a crash message or traceback is scrubbed of.
_SEEN: set[str] = set()


def scrub_seen(text: str) -> str:
    """`text` scrubbed of every secret this process has known (for errors raised outside any run's
    scrubber: a crash message, the traceback in the error log)."""
    return Scrubber(sorted(_SEEN)).text(text) if _SEEN else text


class Scrubber:
    """`text` replaces every known form of every secret with `***`; `data` does it in every string of a
    JSON-like structure (so the result stays valid JSON); `json` dumps a structure scrubbed."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.values = frozenset(value for value in secrets if value)  # the secrets themselves, as given
        _SEEN.update(self.values)
        bases: set[str] = set()
        for value in self.values:
            bases |= plain_forms(value)
        # Forms are grouped by their anchor (a run of letters and digits every encoding keeps): a group's
        # regex runs only on text holding its anchor. Forms without one are always looked for, last.
        by_anchor: dict[str, list[str]] = {}
        for base in bases:
            anchor = _anchor(base)
            by_anchor.setdefault(anchor if len(anchor) >= _MIN_ANCHOR else "", []).append(base)
        always = by_anchor.pop("", [])
        # Longest first, within a group and across groups: a whole secret wins over its lines or pieces.
        groups = sorted(by_anchor.items(), key=lambda item: (-max(map(len, item[1])), item[0]))
        self._groups = [(anchor, _compile(forms)) for anchor, forms in groups]
        self._always = _compile(always) if always else None

    def __bool__(self) -> bool:
        return bool(self._groups) or self._always is not None

    def text(self, text: str) -> str:
        return self._scrub(text, self._groups)

    def data(self, value: Any) -> Any:
        """`value` (dicts, lists, strings, scalars) with every string, keys included, scrubbed."""
        return self._walk(value, self._groups)

    def json(self, value: Any, **options: Any) -> str:
        """`value` as JSON, every string scrubbed before it is escaped, then the text once more."""
        dumped = json.dumps(value, default=str, **options)
        # Only the groups whose anchor occurs anywhere in the document can match inside it.
        groups = [group for group in self._groups if group[0] in dumped]
        if not groups and self._always is None:
            return dumped
        clean = json.dumps(self._walk(value, groups), default=str, **options)
        # Once more over the document, for forms that span strings (a command line split into argv);
        # kept only if still JSON (a secret like "1" would otherwise eat digits of numbers).
        scrubbed = self._scrub(clean, groups)
        if scrubbed != clean:
            try:
                json.loads(scrubbed)
            except ValueError:
                return clean
        return scrubbed

    def _scrub(self, text: str, groups: list[tuple[str, re.Pattern[str]]]) -> str:
        if not text:
            return text
        for anchor, pattern in groups:
            if anchor in text:
                text = pattern.sub(REDACTED, text)
        return self._always.sub(REDACTED, text) if self._always is not None else text

    def _walk(self, value: Any, groups: list[tuple[str, re.Pattern[str]]]) -> Any:
        if isinstance(value, str):
            return self._scrub(value, groups)
        if isinstance(value, dict):
            return {self._scrub(k, groups) if isinstance(k, str) else k: self._walk(v, groups) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._walk(v, groups) for v in value]
        return value


def _compile(bases: list[str]) -> re.Pattern[str]:
    """One regex for `bases` at every JSON level, longest first; a level that escapes nothing in a base
    (letters, digits, most punctuation) gives the same pattern and is kept once."""
    alternatives = {(len(b), _pattern(b, level)) for b in bases for level in range(JSON_LEVELS + 1)}
    # The value as it is, too: a character's escaped forms are tried first, atomically, so a secret that
    # itself holds text like `&amp;` is found by this one.
    alternatives |= {(len(b), re.escape(b)) for b in bases}
    ordered = sorted(alternatives, key=lambda a: (-a[0], -len(a[1]), a[1]))
    return re.compile("|".join(pattern for _, pattern in ordered))


def plain_forms(value: str) -> set[str]:
    """The strings to look for before any JSON escaping: the secret with either line ending, and each
    line of a multi-line secret; each of these shell-quoted and URL-encoded (for a multi-line secret
    its lines are, which covers the whole); and base64."""
    unix = value.replace("\r\n", "\n")
    lines = [line.strip() for line in unix.split("\n")]
    lines = [line for line in lines if len(line) >= MIN_LINE] if len(lines) > 1 else [value]
    forms = {value, unix} | set(lines)
    for line in lines:
        forms |= _shell_forms(line) | _url_forms(line)
    for raw in {value.encode(), unix.encode()}:
        forms |= _base64_forms(raw)
    return {f for f in forms if f}


def _shell_forms(text: str) -> set[str]:
    """Inside single quotes (shlex.quote, Ansible's `quote` filter, the classic '\\'' form, and YAML's
    '' doubling), inside double quotes ("\\$", "\\""), and backslash-escaped (printf %q)."""
    quoted = shlex.quote(text)
    inner = quoted[1:-1] if quoted.startswith("'") and quoted.endswith("'") else quoted
    return {inner, text.replace("'", "'\\''"), text.replace("'", "''"),
            "".join("\\" + c if c in '"$`\\' else c for c in text),
            "".join("\\" + c if c in _SHELL_SPECIAL else c for c in text)}


def _url_forms(text: str) -> set[str]:
    forms = {quote(text), quote(text, safe=""), quote_plus(text), quote_plus(text, safe="/")}
    return forms | {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), f) for f in forms}


def _base64_forms(raw: bytes) -> set[str]:
    """The secret's base64, standard and URL-safe, padded or not; inside a longer encoded blob (where
    it may start at any of three byte offsets, and only the characters made of its own bits alone are
    fixed); and, when long, in pieces that also match the lines of wrapped output."""
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        forms.add(encoded[(0, 2, 3)[offset]:(offset + len(raw)) // 3 * 4])
        if offset == 0:
            forms |= {encoded, encoded.rstrip("=")}
    for form in [f for f in forms if len(f) > max(_BASE64_WIDTHS)]:
        forms.discard(form)
        forms |= {form[i:i + width] for width in _BASE64_WIDTHS for i in range(0, len(form), width)}
    whole = base64.b64encode(raw).decode()
    forms = {f for f in forms if len(f) >= _MIN_BASE64 or f in (whole, whole.rstrip("="))}
    return forms | {f.translate(str.maketrans("+/", "-_")) for f in forms}


def _anchor(base: str) -> str:
    runs = re.findall(r"[A-Za-z0-9]+", base)
    return max(runs, key=len) if runs else ""


def _pattern(base: str, level: int) -> str:
    """A regex for `base` at `level` levels of JSON escaping: each character in any of its forms."""
    return "".join(_char_pattern(c, level) for c in base)


_CHAR_CACHE: dict[tuple[str, int], str] = {}


def _char_pattern(char: str, level: int) -> str:
    cached = _CHAR_CACHE.get((char, level))
    if cached is None:
        forms = [re.escape(f) for f in sorted(_char_forms(char, level), key=lambda f: (-len(f), f))]
        if char in " \t" and level:
            forms.append(_argv_gap(level))
        # Atomic: the forms of one character at one level are never prefixes of each other, so there
        # is nothing to backtrack into, and a secret of many backslashes cannot make the scan explode.
        cached = forms[0] if len(forms) == 1 else "(?>" + "|".join(forms) + ")"
        _CHAR_CACHE[(char, level)] = cached
    return cached


def _char_forms(char: str, level: int) -> set[str]:
    """`char` as written at `level` levels of JSON escaping, starting from its Python/YAML escapes."""
    forms = {char} | _escape_forms(char) | _entity_forms(char)
    if char == "\n":
        forms.add("\r\n")  # a pty turns every newline into CRLF
    for _ in range(level):
        forms = {escaped for form in forms for escaped in _json_forms(form)}
    return forms


def _escape_forms(char: str) -> set[str]:
    """Backslash escapes of a non-ASCII or control character: \\uXXXX (with surrogate pairs),
    \\UXXXXXXXX, \\xXX and its UTF-8 bytes as \\xXX, hex in either case."""
    code = ord(char)
    if char in _HTML_SPECIAL:
        return {f"\\u{code:04x}", f"\\u{code:04X}"}  # HTML-safe JSON encoders (Go's, Jackson's)
    if 32 <= code < 127:
        return set()
    forms: set[str] = set()
    if code > 0xFFFF:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms |= {f"\\u{high:04x}\\u{low:04x}", f"\\U{code:08x}"}
    else:
        forms.add(f"\\u{code:04x}")
    if code <= 0xFF:
        forms.add(f"\\x{code:02x}")
    if code > 0x7F:
        forms.add("".join(f"\\x{byte:02x}" for byte in char.encode()))
    return forms | {_upper_hex(f) for f in forms}


_HTML_SPECIAL = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _entity_forms(char: str) -> set[str]:
    """`char` as an HTML or XML character reference: named (`&amp;`, `&apos;`), decimal (`&#38;`) or
    hexadecimal (`&#x26;`, either case), for the characters markup escapes and every non-ASCII one (an
    ASCII-only XML writer's `&#233;`). Other ASCII is left as is: no encoder writes it as a reference."""
    code = ord(char)
    if char not in _HTML_SPECIAL and code < 128:
        return set()
    forms = {f"&#{code};", f"&#x{code:x};", f"&#x{code:X};", f"&#X{code:x};", f"&#X{code:X};"}
    return forms | ({f"&{_HTML_SPECIAL[char]};"} if char in _HTML_SPECIAL else set())


def _upper_hex(form: str) -> str:
    """`\\x0a\\u00e9` as `\\x0A\\u00E9` (the escape letters kept)."""
    return re.sub(r"(?<=\\[xuU])[0-9a-f]+", lambda m: m.group().upper(), form)


def _json_forms(form: str) -> set[str]:
    """`form` inside a JSON string as encoders write it: ASCII-only or not, hex in either case, `/`
    escaped or not."""
    ascii_form = json.dumps(form)[1:-1]
    forms = {json.dumps(form, ensure_ascii=False)[1:-1], ascii_form, _upper_hex(ascii_form)}
    if "/" in form:
        forms |= {f.replace("/", "\\/") for f in forms}
    return forms


def _argv_gap(level: int) -> str:
    """Where one shell word ends and the next begins once a command line is split into argv and shown
    as a list at `level` (>= 1): `", "` in JSON, one item a line or not; `', '` in Python's repr."""
    quote_mark, blanks = '"', {" ", "\n", "\r", "\t"}
    for _ in range(level - 1):
        quote_mark = json.dumps(quote_mark)[1:-1]
        blanks |= {json.dumps(b)[1:-1] for b in blanks}
    space = "(?:" + "|".join(re.escape(b) for b in sorted(blanks, key=len, reverse=True)) + ")*+"
    json_gap = re.escape(quote_mark) + space + "," + space + re.escape(quote_mark)
    return json_gap if level > 1 else f"(?:{json_gap}|'\\s*+,\\s*+')"
