"""Safe YAML loading that remembers the line of every key and item, for `file:line: path:` errors."""
from __future__ import annotations

from typing import Any

import yaml

from runner.errors import Problem

KeyPath = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    """Parse `text` safely; problems instead of exceptions for bad YAML and duplicate keys."""
    loader = _Loader(text)
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {(): 1}
        data = _construct(loader, node, (), lines, problems, filename) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(filename, line, "", f"invalid YAML: {reason}")]
    finally:
        loader.dispose()
    return Document(filename, data, lines), problems


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    problems: list[Problem],
    filename: str,
) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                key = str(key)
            child: KeyPath = path + (str(key),)
            if key in result:
                problems.append(
                    Problem(filename, key_node.start_mark.line + 1, format_path(child), "duplicate key")
                )
            lines[child] = key_node.start_mark.line + 1
            result[key] = _construct(loader, value_node, child, lines, problems, filename)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            items.append(_construct(loader, item, path + (index,), lines, problems, filename))
        return items
    return loader.construct_object(node, deep=True)
