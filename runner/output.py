"""Results on stdout: aligned tables for people, one JSON document for programs. Everything printed is
terminal-safe: control characters from recorded text (operator names, notes, Ansible output) are shown,
never obeyed."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from runner.errors import UsageError

# C0 controls but tab and newline, DEL, C1 controls, bidi overrides, isolates and marks, and the
# Unicode line and paragraph separators: what can move the cursor, recolour, retitle or reorder a terminal.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every terminal control character written out as an escape (ESC as `\\x1b`, U+202E as
    `\\u202e`); CRLF, which Ansible's pty writes, becomes a newline."""
    text = text.replace("\r\n", "\n")
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def shorten(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut at a word boundary and ended with `…` when it is longer
    (a word cut in half reads as a different word: `planned 2.0` must not become `plan`)."""
    if len(text) <= width:
        return text
    space = text.rfind(" ", 0, width)  # the end of the last word that leaves room for the `…`
    cut = text[:space] if space >= width // 2 else text[:width - 1]  # one long word: cut it all the same
    return cut.rstrip(" ,;:") + "…"


class TerminalSafe:
    """A text stream (stdout, stderr) that writes everything through `printable`. A CR at the end of one
    write waits for the next, so CRLF split across writes (or flushes) is still a newline."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._cr = ""

    def write(self, text: str) -> int:
        joined = self._cr + text
        self._cr = "\r" if joined.endswith("\r") else ""
        self.stream.write(printable(joined[:-1] if self._cr else joined))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        # A pending CR stays pending (`log --follow` flushes after every chunk); one left at exit is
        # a lone CR at the very end, which shows nothing.
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's own
        return getattr(self.stream, name)


def terminal_safe(stream: TextIO) -> TextIO:
    return stream if isinstance(stream, TerminalSafe) else TerminalSafe(stream)  # type: ignore[return-value]


def raw(stream: TextIO) -> TextIO:
    """The stream under a TerminalSafe one: for code that writes its own escapes (progress colours)
    and makes the rest printable itself."""
    return stream.stream if isinstance(stream, TerminalSafe) else stream


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[printable(str(c)) for c in headers]] + [["" if c is None else printable(str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def emit(text: str) -> None:
    sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def check_writable(path: Path, option: str) -> None:
    """UsageError (exit 2) unless `path` can be written, checked before the work that would fill it.
    Missing parent folders are created (as the write would); a new file is created and removed again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        if not existed:
            path.unlink()
    except OSError as exc:
        raise cannot_write(path, option, exc) from None


def write_file(path: Path, text: str, option: str) -> None:
    """Write a document the user asked for with `option`; any failure is one clear UsageError line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise cannot_write(path, option, exc) from None


def cannot_write(path: Path, option: str, exc: OSError) -> UsageError:
    """`exc` from writing where `option` said, as one usage-error line."""
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return UsageError(f"cannot write {option} {path}: {exc.strerror or exc}{where}")
