"""Safe YAML loading that remembers the line of every key and item, for `file:line: path:` errors.

Hostile text gets a problem, never an exception and never unbounded time or memory: anchors and aliases
are refused (a few hundred bytes of aliases expand to gigabytes: the "billion laughs"), so are tags
outside YAML's core schema, values their tag cannot hold (`!!int abc`, `2001-02-30`, integers of more
than 4,300 digits), nesting deeper than MAX_DEPTH and files larger than MAX_BYTES."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from runner.errors import Problem

KeyPath = tuple[str | int, ...]

MAX_DEPTH = 64  # a runbook nests about 6 deep; Python's own recursion would fail near 300
MAX_BYTES = 2 * 1024 * 1024
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")}
_TYPE_NAMES = {_CORE + "int": "an integer", _CORE + "float": "a number", _CORE + "bool": "a boolean",
               _CORE + "timestamp": "a date", _CORE + "null": "null"}
# Where an anchor (&), alias (*) or tag (!) may start a node: at a line start, after white space, a flow
# indicator or an adjacent `:`. Text without one is never scanned twice (runbook list stays fast).
_PROPERTY = re.compile(r"(?:^|[\s\[\]{},:])[&*!]")


class YamlRefused(ValueError):
    """Text `load_data` will not turn into data; `problem` says where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def read_limited(path: Path) -> bytes:
    """The bytes of the regular file `path`; OSError if it cannot be read, is not a regular file (a FIFO
    would block, a device never end) or is larger than MAX_BYTES."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        raw = handle.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise OSError(0, f"too large (more than {MAX_BYTES} bytes)")
    return raw


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of `path`, or of its nearest recorded ancestor."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


class Document:
    """A loaded YAML file: its data and where each key path stands."""

    def __init__(self, filename: str, data: Any, lines: dict[KeyPath, int]) -> None:
        self.filename = filename
        self.data = data
        self.lines = lines

    def problem(self, path: KeyPath, message: str) -> Problem:
        return Problem(self.filename, line_of(self.lines, path), format_path(path), message)


def load_document(text: str, filename: str) -> tuple[Document | None, list[Problem]]:
    """Parse `text` safely; problems instead of exceptions for bad or hostile YAML and duplicate keys."""
    if len(text) > MAX_BYTES:
        return None, [Problem(filename, None, "", f"too large ({len(text)} characters; at most {MAX_BYTES})")]
    refused = refusal(text, filename)
    if refused is not None:
        return None, [refused]
    loader = _Loader(text)
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {(): 1}
        builder = _Builder(loader, lines, problems, filename)
        data = builder.construct(node, (), 0) if node is not None else None
    except yaml.YAMLError as exc:
        return None, [_yaml_problem(exc, text, filename)]
    finally:
        loader.dispose()
    return Document(filename, data, lines), problems


def load_data(text: str, filename: str) -> Any:
    """The data in `text` (a parameters file, a `-p` list), or YamlRefused naming the first problem."""
    doc, problems = load_document(text, filename)
    if problems or doc is None:
        raise YamlRefused(problems[0])
    return doc.data


def refusal(text: str, filename: str) -> Problem | None:
    """The first anchor, alias or tag outside the core schema in `text`, as a problem; None if there is none
    (or the text is not YAML at all: loading it says so)."""
    if not _PROPERTY.search(text):
        return None
    loader: Any = _Loader(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent):
                return Problem(filename, line, "", f"alias *{event.anchor}: anchors and aliases are not allowed "
                                                   "(write the value out)")
            if getattr(event, "anchor", None) is not None:
                return Problem(filename, line, "", f"anchor &{event.anchor}: anchors and aliases are not allowed "
                                                   "(write the value out)")
            tag = getattr(event, "tag", None)
            if tag is not None and tag != "!" and tag not in _ALLOWED_TAGS:
                shown = "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag
                return Problem(filename, line, "", f"tag {shown} is not allowed (only str, int, float, bool, null, "
                                                   "seq, map and timestamp)")
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None


def _yaml_problem(exc: yaml.YAMLError, text: str, filename: str) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    reason = getattr(exc, "problem", None) or str(exc)
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and (mark is None or mark.line >= len(text.splitlines())):
        # Stopped at the end of the file: the cause is where the unclosed quote, bracket... began.
        mark, reason = context_mark, f"{reason} {context}"
    return Problem(filename, mark.line + 1 if mark is not None else None, "", f"invalid YAML: {reason}")


class _Builder:
    """Nodes to Python data, recording each key's and item's line; a value its tag cannot hold, a key
    that is not text or nesting past MAX_DEPTH becomes a problem (and None) instead of an exception."""

    def __init__(self, loader: yaml.SafeLoader, lines: dict[KeyPath, int], problems: list[Problem],
                 filename: str) -> None:
        self.loader, self.lines, self.problems, self.filename = loader, lines, problems, filename

    def _problem(self, node: yaml.Node, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.filename, node.start_mark.line + 1, format_path(path), message))

    def construct(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        if depth > MAX_DEPTH:
            self._problem(node, path[:4], f"nested more than {MAX_DEPTH} levels deep")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.construct(item, path + (index,), depth + 1))
            return items
        try:
            return self.loader.construct_object(node, deep=True)
        except Exception:  # noqa: BLE001 - ValueError, KeyError, ConstructorError...: PyYAML's own constructors
            what = _TYPE_NAMES.get(node.tag)
            hint = " (quote it to make it text)" if what is None or node.tag == _CORE + "timestamp" else ""
            self._problem(node, path, f"{_short(str(node.value))!r} " + (f"is not {what}" if what else "cannot be read")
                          + hint)
            return str(node.value)  # checked further as the text it is, as if quoted

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, path, "a key must be text, not a list or mapping")
                continue
            # Keys are text as written: YAML 1.1 would read `on:`, `no:`, `y:` as booleans.
            key = key_node.value
            child: KeyPath = path + (str(key),)
            if key in result:
                self._problem(key_node, child, "duplicate key")
            self.lines[child] = key_node.start_mark.line + 1
            result[key] = self.construct(value_node, child, depth + 1)
        return result


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"
