"""Markdown for people: written as CommonMark (what GitHub and GitLab render), turned into HTML by the
same CommonMark parser with raw HTML off, then sanitized. A runbook's description is untrusted text:
`<script>` or `<img onerror>` in it comes out as visible text, never as markup."""
from __future__ import annotations

import functools
import re
from typing import Any

_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
_BLOCK_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)]))")
_CHECKBOX = re.compile(r"^\[([ xX])\] ")


def escape(text: str, line_start: bool = False) -> str:
    """Inline text that Markdown shows literally (a task name, a checklist item, a table cell); at the
    start of a list item, also what would open a block there ("1." would nest a list)."""
    text = _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    if not line_start:
        return text
    match = _BLOCK_START.match(text)
    if match is None:
        return text
    # A digit cannot be escaped, its dot can: "1." becomes "1\.", "- x" becomes "\- x".
    at = match.end() if match.group(2)[0].isdigit() else match.start(2)
    return text[:at] + "\\" + text[at:]


def code(text: str) -> str:
    """An inline code span that survives backticks in the text."""
    text = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fenced(text: str, info: str = "") -> list[str]:
    """A fenced code block that survives fences in the text."""
    fence = "`" * max(3, max((len(run) + 1 for run in re.findall(r"^\s*(`{3,})", text, re.M)), default=3))
    return [f"{fence}{info}", *text.rstrip("\n").splitlines(), fence]


@functools.cache
def parser() -> Any:
    from markdown_it import MarkdownIt

    # CommonMark with tables (GFM); raw HTML off, so a description's tags are text.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def to_html(markdown_text: str, list_ids: dict[str, str] | None = None) -> str:
    """Sanitized HTML of CommonMark text. Headings get ids (anchors); a list right after a level-2
    heading named in `list_ids` gets that id; `[ ]` items become checkboxes."""
    md = parser()
    tokens = md.parse(markdown_text)
    _heading_ids(tokens, list_ids or {})
    _checkboxes(tokens)
    return sanitize(str(md.renderer.render(tokens, md.options, {})))


def sanitize(html: str) -> str:
    import nh3

    tags = set(nh3.ALLOWED_TAGS) | {"input", "details", "summary"}
    attributes = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}
    attributes["input"] = {"type", "disabled", "checked"}
    attributes["*"] = attributes.get("*", set()) | {"id", "class"}
    attributes["ol"] = attributes.get("ol", set()) | {"start"}
    return str(nh3.clean(html, tags=tags, attributes=attributes, link_rel="noopener noreferrer"))


def _heading_ids(tokens: list[Any], list_ids: dict[str, str]) -> None:
    """Ids for headings (anchors), and for the first list under the LAST level-2 heading of each
    title in `list_ids`: the page's own sections come after anything a description may hold."""
    seen: set[str] = set(list_ids.values())  # a description's "## Steps" must not take the steps' id
    lists: dict[str, Any] = {}
    pending: str | None = None
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            title = tokens[i + 1].content
            slug = base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
            n = 1
            while slug in seen:
                n += 1
                slug = f"{base}-{n}"
            seen.add(slug)
            token.attrSet("id", slug)
            pending = list_ids.get(title) if token.tag == "h2" else None
            if pending:
                lists.pop(pending, None)
        elif pending and token.type in ("ordered_list_open", "bullet_list_open") and token.level == 0:
            lists[pending] = token
            pending = None
    for ident, token in lists.items():
        token.attrSet("id", ident)


def _checkboxes(tokens: list[Any]) -> None:
    """`- [ ] item` (GitHub's task list) as a disabled checkbox, since CommonMark has none."""
    from markdown_it.token import Token

    for i, token in enumerate(tokens):
        if token.type != "inline" or i < 2 or tokens[i - 2].type != "list_item_open" or not token.children:
            continue
        first = token.children[0]
        match = _CHECKBOX.match(first.content) if first.type == "text" else None
        if not match:
            continue
        first.content = first.content[match.end():]
        box = Token("html_inline", "", 0)
        box.content = '<input type="checkbox" disabled%s> ' % (" checked" if match.group(1) != " " else "")
        token.children.insert(0, box)
        tokens[i - 2].attrSet("class", "task")
        for back in range(i - 2, -1, -1):
            if tokens[back].type == "bullet_list_open" and tokens[back].level == tokens[i - 2].level - 1:
                tokens[back].attrSet("class", "checklist")
                break


def demote(markdown_text: str, top: int) -> str:
    """The text with its highest heading level moved to `top` (a description's `#` under the page's `##`)."""
    tokens = parser().parse(markdown_text)
    heads = [(t.map, int(t.tag[1]), tokens[i + 1].content) for i, t in enumerate(tokens)
             if t.type == "heading_open" and t.level == 0 and t.map]
    if not heads:
        return markdown_text
    shift = top - min(level for _, level, _ in heads)
    lines = markdown_text.splitlines()
    for (start, end), level, title in reversed(heads):
        lines[start:end] = ["#" * max(1, min(6, level + shift)) + " " + title]
    return "\n".join(lines)


def sections(markdown_text: str) -> tuple[str, list[tuple[str, str]]]:
    """Text before the first top-level heading, and (title, body) per top-level heading."""
    tokens = parser().parse(markdown_text)
    heads = [(t.map, int(t.tag[1]), tokens[i + 1].content) for i, t in enumerate(tokens)
             if t.type == "heading_open" and t.level == 0 and t.map]
    if not heads:
        return markdown_text.strip(), []
    top = min(level for _, level, _ in heads)
    tops = [(m, title) for m, level, title in heads if level == top]
    lines = markdown_text.splitlines()
    intro = "\n".join(lines[:tops[0][0][0]]).strip()
    out = []
    for n, ((start, end), title) in enumerate(tops):
        stop = tops[n + 1][0][0] if n + 1 < len(tops) else len(lines)
        out.append((title, "\n".join(lines[end:stop]).strip("\n")))
    return intro, out


@functools.cache
def _html_parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table")


def neutral(markdown_text: str) -> str:
    """Author's Markdown with its raw HTML escaped, so that a renderer with HTML on (GitHub, GitLab,
    an IDE preview) shows `<script>` as text too. Code spans and blocks are left alone."""
    for _ in range(8):  # escaping one tag can expose the next on the same line
        tokens = _html_parser().parse(markdown_text)
        lines = markdown_text.splitlines()
        changed = False
        for token in tokens:
            if token.type == "html_block" and token.map:
                for n in range(*token.map):
                    lines[n] = re.sub(r"^(\s*)<", r"\1\\<", lines[n], count=1)
                    changed = True
            for child in token.children or []:
                if child.type == "html_inline" and token.map:
                    changed |= _escape_in(lines, range(*token.map), child.content.splitlines()[0])
        markdown_text = "\n".join(lines)
        if not changed:
            break
    return markdown_text


def _escape_in(lines: list[str], where: range, tag: str) -> bool:
    """Backslash-escape the first `tag` found on the lines `where`; whether one was found."""
    for n in where:
        if tag in lines[n]:
            lines[n] = lines[n].replace(tag, "\\" + tag, 1)
            return True
    return False
