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
        return None, [_yaml_problem(exc, text, filename)]
    finally:
        loader.dispose()
    return Document(filename, data, lines), problems


def _yaml_problem(exc: yaml.YAMLError, text: str, filename: str) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    reason = getattr(exc, "problem", None) or str(exc)
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and (mark is None or mark.line >= len(text.splitlines())):
        # Stopped at the end of the file: the cause is where the unclosed quote, bracket... began.
        mark, reason = context_mark, f"{reason} {context}"
    return Problem(filename, mark.line + 1 if mark is not None else None, "", f"invalid YAML: {reason}")


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
            # Keys are text as written: YAML 1.1 would read `on:`, `no:`, `y:` as booleans.
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(loader.construct_object(key_node))
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
