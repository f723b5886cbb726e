"""The procedure manual, the run reports people read and the static site: their structure as a
CommonMark parser (what GitHub and GitLab render) and a real headless Chromium see it, hostile text
shown as text, values written as a person writes them, and a site without a broken link."""
from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

from conftest import chromium_dom, copy_workspace, runbook

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
# What a reader must never see: Python's spelling of a value.
_REPRS = re.compile(r"\bNone\b|\bFalse\b|\bTrue\b|\['|\{'|': ")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# -- helpers -----------------------------------------------------------------------------------------
_chromium_dom = chromium_dom


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def elements(self) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node)]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.elements:
            if (tag is None or child.tag == tag) and all(
                    v in (child.attrs.get(k.rstrip("_")) or "").split() for k, v in attrs.items()):
                found.append(child)
            found += child.find_all(tag, **attrs)
        return found

    def by_id(self, ident: str) -> Node:
        found = [n for n in self.find_all() if n.attrs.get("id") == ident]
        assert len(found) == 1, f"#{ident}: {len(found)} elements"
        return found[0]

    def next_element(self) -> Node:
        assert self.parent is not None
        siblings = self.parent.elements
        return siblings[siblings.index(self) + 1]


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = self.node = Node("#document", {}, None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        if tag not in _VOID:
            self.node = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.node = node.parent

    def handle_data(self, data: str) -> None:
        self.node.children.append(data)


def dom_tree(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    return tree.root


def _section(tokens: list, title: str) -> list:  # type: ignore[type-arg]
    """The block tokens of the level-2 section named `title`, up to the next level-2 heading."""
    start = next(i for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"
                 and tokens[i + 1].content == title)
    end = next((i for i in range(start + 3, len(tokens)) if tokens[i].type == "heading_open" and tokens[i].tag == "h2"),
               len(tokens))
    return tokens[start + 3:end]


def _top_items(tokens: list, open_type: str) -> list[list]:  # type: ignore[type-arg]
    """The items of the first list of `open_type` at the section's top level, each as its tokens."""
    start = next(i for i, t in enumerate(tokens) if t.type == open_type and t.level == 0)
    items: list[list] = []  # type: ignore[type-arg]
    for token in tokens[start + 1:]:
        if token.level == 0:
            break
        if token.type == "list_item_open" and token.level == 1:
            items.append([])
        items[-1].append(token)
    return items


def _repo(tmp_path: Path) -> Path:
    return copy_workspace("repo", tmp_path / "ws")


def _visible(html: str) -> str:
    """What a reader of the page sees: the text of the body, without the style sheet."""
    return dom_tree(html).find_all("body")[0].text()


# -- the manual through a CommonMark parser ---------------------------------------------------------
def test_manual_markdown_is_one_ordered_list_of_steps_for_a_commonmark_parser(tmp_path: Path) -> None:
    ws = _repo(tmp_path)
    out = tmp_path / "md"
    assert runbook("docs", "hardware-replacement", "patch-rollout", "--format", "md", "-o", str(out), cwd=ws).returncode == 0
    tokens = MarkdownIt("commonmark").parse((out / "hardware-replacement.md").read_text())
    procedure = _section(tokens, "Procedure")
    steps = _top_items(procedure, "ordered_list_open")
    assert len(steps) == 4  # identify, drain, replace-part, postcheck: one item each, nothing spilled out
    assert sum(1 for t in procedure if t.type == "ordered_list_open" and t.level == 0) == 1
    names = [next(t for t in item if t.type == "inline").content.split(":")[0] for item in steps]
    assert names == ["**identify**", "**drain**", "**replace-part**", "**postcheck**"]
    identify = steps[0]
    assert any(t.type == "bullet_list_open" for t in identify)  # its task list, nested
    assert "Read the system's vendor, model and serial (DMI)" in [t.content for t in identify if t.type == "inline"]
    manual = steps[2]
    inlines = [t.content for t in manual if t.type == "inline"]
    for item in ("Old part serial noted", "Part replaced", "New part serial noted"):
        assert f"[ ] {item}" in inlines  # a checklist inside the step, not a step of its own
    code = [t.content for t in manual if t.type in ("code_block", "fence")]
    assert any('runbook resume RUN --confirm --note "old=OLDSERIAL new=NEWSERIAL"' in c for c in code)
    fails = _section(tokens, "When it fails")
    cases = _top_items(fails, "bullet_list_open")
    assert len(cases) >= 7 and "**more than one host**" in next(t for t in cases[0] if t.type == "inline").content
    assert "No runs yet" in _text(_section(tokens, "Expected duration"))
    assert "#platform-oncall" in _text(_section(tokens, "Escalation"))
    assert "hardware" in _text(_section(tokens, "What each step records"))
    assert "runbook log RUN --data" in _text(_section(tokens, "What each step records"))
    rollback = _text(_section(tokens, "Rollback"))
    assert "no `on_failure` steps" in rollback or "no on_failure steps" in rollback
    assert "start the stopped services by hand" in rollback
    run_it = [t.content for t in _section(tokens, "Run it") if t.type == "fence"]
    assert run_it == ["runbook run hardware-replacement -i INVENTORY -l HOST -p part=PART\n"]
    before = _text(_section(tokens, "Before you start"))
    assert "replace-part" in before and "Physical access to the host" in before
    patch = MarkdownIt("commonmark").parse((out / "patch-rollout.md").read_text())
    assert "rollback" in _text(_section(patch, "Rollback"))  # the on_failure step, with its tasks
    assert _top_items(_section(patch, "Rollback"), "ordered_list_open")


def _text(tokens: list) -> str:  # type: ignore[type-arg]
    return "\n".join(t.content for t in tokens if t.type in ("inline", "fence", "code_block"))


def test_manual_expected_duration_counts_successful_runs_outside_check_mode(alien: Path, tmp_path: Path) -> None:
    for extra in ([], [], ["--check"]):
        assert runbook("run", "conditional", *extra, cwd=alien).returncode == 0
    assert runbook("run", "fail-on-host", cwd=alien).returncode == 1
    out = tmp_path / "md"
    assert runbook("docs", "conditional", "fail-on-host", "--format", "md", "-o", str(out), cwd=alien).returncode == 0
    tokens = MarkdownIt("commonmark").parse((out / "conditional.md").read_text())
    assert re.search(r"Median \d+(\.\d+)?s, p95 \d+(\.\d+)?s, from 2 successful runs", _text(_section(tokens, "Expected duration")))
    failed = MarkdownIt("commonmark").parse((out / "fail-on-host.md").read_text())
    assert "No runs yet" in _text(_section(failed, "Expected duration"))
    shown = json.loads(runbook("show", "conditional", "--json", cwd=alien).stdout)
    assert shown["expected_duration"]["runs"] == 2 and shown["escalation"] == ""


# -- the manual in Chromium ---------------------------------------------------------------------------
def test_manual_html_in_chromium_has_one_list_of_steps_with_checklists(tmp_path: Path) -> None:
    ws = _repo(tmp_path)
    out = tmp_path / "html"
    assert runbook("docs", "-o", str(out), cwd=ws).returncode == 0
    dom = dom_tree(_chromium_dom(out / "hardware-replacement.html", tmp_path))
    steps = dom.by_id("steps")
    assert steps.tag == "ol"
    items = [li for li in steps.elements if li.tag == "li"]
    assert len(items) == 4 and items[3].text().strip().startswith("postcheck")
    boxes = items[2].find_all("input")
    assert [b.attrs.get("type") for b in boxes] == ["checkbox"] * 3
    assert [li.text().strip() for li in items[2].find_all("ul", class_="checklist")[0].elements] == [
        "Old part serial noted", "Part replaced", "New part serial noted"]
    assert any("runbook resume RUN" in pre.text() for pre in items[2].find_all("pre"))
    assert items[0].find_all("ul")[0].text().count("\n") >= 10  # the tasks: a list, not one paragraph
    cases = dom.by_id("when-it-fails-cases")
    assert cases.tag == "ul" and len(cases.elements) >= 7
    assert dom.by_id("when-it-fails").tag == "h2"
    assert "No runs yet" in dom.by_id("expected-duration").next_element().text()
    assert "#platform-oncall" in dom.by_id("escalation").next_element().text()
    assert not dom.find_all("script") and "- [ ]" not in dom.text()


def test_hostile_description_is_text_in_docs_reports_and_site(alien: Path, tmp_path: Path) -> None:
    book = alien / "runbooks" / "conditional.yml"
    text = book.read_text().replace("kind: operation\n", f"kind: operation\ndescription: |\n  Hello {HOSTILE}\n\n"
                                    f"  ## Rollback\n  [click](javascript:alert(1)) {HOSTILE}\n", 1)
    book.write_text(text)
    assert runbook("run", "conditional", "-p", f"greeting={HOSTILE}", cwd=alien).returncode == 0
    docs = tmp_path / "docs"
    assert runbook("docs", "conditional", "-o", str(docs), cwd=alien).returncode == 0
    assert runbook("docs", "conditional", "--format", "md", "-o", str(tmp_path / "md"), cwd=alien).returncode == 0
    report = tmp_path / "run.html"
    assert runbook("report", "last", "--format", "html", "-o", str(report), cwd=alien).returncode == 0
    site = tmp_path / "site"
    assert runbook("site", "-o", str(site), cwd=alien).returncode == 0
    run_id = json.loads(runbook("history", "--json", cwd=alien).stdout)[0]["id"]
    for page in (docs / "conditional.html", report, site / "runbooks" / "conditional.html", site / "runs" / f"{run_id}.html"):
        dom = dom_tree(_chromium_dom(page, tmp_path))
        assert not dom.find_all("script") and not dom.find_all("img"), page
        assert not [a for a in dom.find_all("a") if "javascript:" in (a.attrs.get("href") or "")], page
        assert 'alert("x")' in dom.text() and "onerror=alert(1)" in dom.text(), page  # shown, as text
    for md in (tmp_path / "md" / "conditional.md",):
        tokens = MarkdownIt("commonmark").parse(md.read_text())  # raw HTML on: what GitHub would see
        assert not [t for t in tokens if t.type == "html_block"]
        assert not [c for t in tokens if t.children for c in t.children if c.type == "html_inline"]
    md_report = runbook("report", "last", "--format", "md", cwd=alien).stdout
    tokens = MarkdownIt("commonmark").enable("table").parse(md_report)
    assert not [c for t in tokens if t.children for c in t.children if c.type == "html_inline"]


# -- run reports --------------------------------------------------------------------------------------
def _signed_off_run(alien: Path) -> str:
    """maintenance-window: confirmed with a note, approved by someone else with a note, finished."""
    log = alien / "change.log"
    assert runbook("run", "maintenance-window", "-p", f"log_file={log}", cwd=alien).returncode == 5
    note = "old=SN-OLD-123 new=SN-NEW-456 | bay 2"
    assert runbook("resume", "last", "--confirm", "--note", note, cwd=alien).returncode == 5
    assert runbook("approve", "last", "--note", "go ahead, CHG-42", cwd=alien,
                   env={"RUNBOOK_USER": "bob@example"}).returncode == 0
    assert runbook("resume", "last", cwd=alien).returncode == 0
    return str(json.loads(runbook("history", "--json", cwd=alien).stdout)[0]["id"])


def test_markdown_report_keeps_every_signoff_and_the_step_data(alien: Path, tmp_path: Path) -> None:
    run_id = _signed_off_run(alien)
    md = runbook("report", run_id, "--format", "md", cwd=alien).stdout
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    cells = [t.content for t in tokens if t.type == "inline"]
    for item in ("Window announced", "On-call engineer informed"):
        row = cells[cells.index(item) - 1: cells.index(item) + 5]
        assert row[0] == "announce" and row[2] == "confirmed" and row[5] == "old=SN-OLD-123 new=SN-NEW-456 | bay 2"  # the note, whole
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ([A-Z]{2,5}|[+-]\d{4})$", row[4])  # when
    assert "bob@example" in cells and "go ahead, CHG-42" in cells and "approved" in cells
    fences = [t.content for t in tokens if t.type == "fence"]
    assert any("notes:" in f and "precheck" in f for f in fences)  # the step data, as YAML
    html = tmp_path / "run.html"
    assert runbook("report", run_id, "--format", "html", "-o", str(html), cwd=alien).returncode == 0
    dom = dom_tree(_chromium_dom(html, tmp_path))
    signoffs = dom.by_id("signoffs").text()
    assert "old=SN-OLD-123 new=SN-NEW-456 | bay 2" in signoffs and "go ahead, CHG-42" in signoffs
    assert "notes:" in dom.by_id("step-data").text()
    data = runbook("log", run_id, "--data", cwd=alien)
    assert data.returncode == 0 and "go ahead, CHG-42" in data.stdout and "notes:" in data.stdout
    one = runbook("log", run_id, "--step", "precheck", "--data", cwd=alien).stdout
    assert "precheck" in one and "CHG-42" not in one


def test_no_python_reprs_in_reports_docs_or_show(alien: Path, tmp_path: Path) -> None:
    _signed_off_run(alien)
    assert runbook("run", "disk-report", "-p", "path=/tmp", cwd=alien, env={"ALIEN_API_TOKEN": "s3cret-value"}).returncode in (0, 1)
    shown = [runbook("show", name, cwd=alien).stdout for name in ("disk-report", "maintenance-window", "nightly-note")]
    docs = tmp_path / "docs"
    assert runbook("docs", "--format", "md", "-o", str(docs), cwd=alien).returncode == 0
    assert runbook("docs", "-o", str(tmp_path / "html"), cwd=alien).returncode == 0
    site = tmp_path / "site"
    assert runbook("site", "-o", str(site), cwd=alien).returncode == 0
    texts = shown + [p.read_text() for p in docs.glob("*.md")]
    texts += [_visible(p.read_text()) for p in (tmp_path / "html").glob("*.html")]
    texts += [_visible(p.read_text()) for p in site.rglob("*.html")]
    for run in json.loads(runbook("history", "--json", cwd=alien).stdout):
        texts.append(runbook("report", run["id"], "--format", "md", cwd=alien).stdout)
    assert len(texts) > 20
    for text in texts:
        assert not _REPRS.search(text), _REPRS.search(text).group(0) + ": " + text[max(0, _REPRS.search(text).start() - 200):][:400]


def test_check_mode_manual_step_says_what_a_real_run_waits_for(alien: Path) -> None:
    done = runbook("run", "maintenance-window", "--check", "-p", "log_file=/tmp/x", cwd=alien)
    assert done.returncode == 0  # a rehearsal shows what it would ask and goes on (tests/test_rehearsal.py)
    assert "A real run stops here and waits until someone does the work and confirms: " \
           "Window announced; On-call engineer informed." in done.stderr
    assert "Announce the maintenance window" not in done.stderr


# -- the static site ----------------------------------------------------------------------------------
class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        for key in ("href", "src"):
            if values.get(key):
                self.links.append((tag, str(values[key])))


def test_site_in_chromium_has_no_broken_link(alien: Path, tmp_path: Path) -> None:
    run_id = _signed_off_run(alien)
    assert runbook("run", "fail-on-host", cwd=alien).returncode == 1
    assert runbook("run", "conditional", "--check", cwd=alien).returncode == 0
    site = tmp_path / "site"
    done = runbook("site", "-o", str(site), cwd=alien)
    assert done.returncode == 0, done.stderr
    pages = sorted(site.rglob("*.html"))
    runbooks = sorted(p.stem for p in (alien / "runbooks").glob("*.yml"))
    assert sorted(p.stem for p in (site / "runbooks").glob("*.html")) == runbooks
    assert len(list((site / "runs").glob("*.html"))) == 3
    checked = 0
    for page in pages:
        links = _Links()
        links.feed(page.read_text())
        for tag, link in links.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                assert tag == "a", f"{page}: {tag} loads {link} from the network"
                continue
            assert not link.startswith("/"), f"{page}: absolute link {link}"
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            assert target.is_file(), f"{page.relative_to(site)}: broken link {link}"
            if parts.fragment:
                anchors = _Links()
                anchors.feed(target.read_text())
                assert parts.fragment in anchors.ids, f"{page.relative_to(site)}: no #{parts.fragment} in {target.name}"
            checked += 1
        assert "<script" not in page.read_text()
    assert checked > 30
    index = dom_tree(_chromium_dom(site / "index.html", tmp_path))
    catalog = index.by_id("catalog-table")
    assert len(catalog.find_all("tr")) == len(runbooks) + 1
    assert run_id in index.by_id("recent-runs").text()
    summary = index.by_id("summary")  # the periodic summary, embedded (its figures are tested with it)
    assert summary.find_all("table") and "fail-on-host" in summary.text() and index.by_id("total").text().strip()
    page = dom_tree(_chromium_dom(site / "runbooks" / "maintenance-window.html", tmp_path))
    assert len([li for li in page.by_id("steps").elements if li.tag == "li"]) == 5
    assert run_id in page.by_id("runbook-runs").text()
    run = dom_tree(_chromium_dom(site / "runs" / f"{run_id}.html", tmp_path))
    assert run.by_id("run-status").text().strip() == "succeeded" and "CHG-42" in run.by_id("signoffs").text()


def test_values_are_written_as_people_write_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.reports.values import human, human_block, human_time

    monkeypatch.setenv("TZ", "UTC")  # times are written in the machine's zone (runner/times.py)
    time.tzset()

    assert [human(v) for v in (None, False, True, ["cron"], [], {"a": None, "b": 2}, 1.0, 2.5, "x")] == [
        "-", "false", "true", "cron", "(none)", "a=-, b=2", "1", "2.5", "x"]
    assert human_block({"disk": {"serial": None, "ok": False, "tags": ("a",)}}) == \
        "disk:\n  serial: null\n  ok: false\n  tags:\n  - a"
    assert human_time(0) == "1970-01-01 00:00:00 UTC"


@pytest.mark.parametrize("text", ["1. not a list", "- nor this", "# nor a heading", "a | b", "`tick` *star* _u_",
                                  "<b>tag</b>", "[link](javascript:x)", "&amp; entity"])
def test_escaped_text_reads_back_literally_through_commonmark(text: str) -> None:
    from runner.reports.markup import code, escape

    for markdown, kind in ((f"- {escape(text, line_start=True)}", "text"), (f"- {code(text)}", "code_inline")):
        tokens = MarkdownIt("commonmark").parse(markdown)
        assert [t.type for t in tokens][:3] == ["bullet_list_open", "list_item_open", "paragraph_open"]
        inline = next(t for t in tokens if t.type == "inline")
        assert "".join(c.content for c in inline.children if c.type in ("text", "code_inline")) == text
        assert kind in [c.type for c in inline.children]


def test_contact_is_escalation_with_owner_as_fallback(alien: Path, tmp_path: Path) -> None:
    shown = json.loads(runbook("show", "disk-report", "--json", cwd=alien).stdout)
    assert (shown["contact"], shown["escalation"]) == (None, "lab-team")
    book = alien / "runbooks" / "disk-report.yml"
    book.write_text(book.read_text().replace("owner: lab-team\n", "owner: lab-team\ncontact: '#lab-oncall, +81-3-0000-0000'\n"))
    shown = json.loads(runbook("show", "disk-report", "--json", cwd=alien).stdout)
    assert shown["escalation"] == "#lab-oncall, +81-3-0000-0000"
    assert runbook("docs", "disk-report", "--format", "md", "-o", str(tmp_path / "md"), cwd=alien).returncode == 0
    tokens = MarkdownIt("commonmark").parse((tmp_path / "md" / "disk-report.md").read_text())
    assert "#lab-oncall, +81-3-0000-0000" in _text(_section(tokens, "Escalation"))
    book.write_text(book.read_text().replace("contact: '#lab-oncall, +81-3-0000-0000'", "contact: 42"))
    done = runbook("validate", "disk-report", "--no-syntax-check", cwd=alien)
    assert done.returncode == 3 and "contact" in done.stdout + done.stderr


def test_log_data_for_one_host(alien: Path) -> None:
    assert runbook("run", "conditional", "-p", "greeting=hi there", cwd=alien).returncode == 0
    everyone = runbook("log", "last", "--data", cwd=alien).stdout
    hosts = re.findall(r"^ {5}(\S+): hi there$", everyone, re.MULTILINE)
    assert len(hosts) >= 2, everyone
    one = runbook("log", "last", "--data", "--host", hosts[0], cwd=alien).stdout
    assert f"{hosts[0]}: hi there" in one and f"{hosts[1]}: hi there" not in one


def test_access_needed_sees_writes_under_var_and_become_in_roles(tmp_path: Path) -> None:
    """A playbook that writes under /var without become needs root (or that folder's owner); a role's
    task-level become is sudo all the same. The manual used to say "no root needed" for both."""
    ws = tmp_path / "ws"
    for folder in ("runbooks", "playbooks", "inventories", "roles/priv/tasks"):
        (ws / folder).mkdir(parents=True)
    (ws / "inventories" / "local.yml").write_text("all: {hosts: {localhost: {ansible_connection: local}}}\n")
    (ws / "playbooks" / "writes.yml").write_text(
        "- hosts: all\n  tasks:\n    - name: Write the config\n      ansible.builtin.copy:\n"
        "        dest: /var/lib/app/app.conf\n        content: x\n    - name: Scratch is fine\n"
        "      ansible.builtin.file: {path: /var/tmp/scratch, state: directory}\n")
    (ws / "playbooks" / "role.yml").write_text("- hosts: all\n  roles: [priv]\n")
    (ws / "roles" / "priv" / "tasks" / "main.yml").write_text(
        "- name: Restart\n  ansible.builtin.command: systemctl restart app\n  become: true\n")
    for name, playbook in (("writes", "writes.yml"), ("role", "role.yml")):
        (ws / "runbooks" / f"{name}.yml").write_text(
            f"apiVersion: runbook/v1\nname: {name}\ntitle: T\nversion: 1.0.0\nkind: operation\nowner: me\n"
            f"steps:\n  - name: go\n    playbook: {playbook}\n")
    assert runbook("docs", "--format", "md", "-o", str(tmp_path / "out"), cwd=ws).returncode == 0
    writes = (tmp_path / "out" / "writes.md").read_text()
    access = next(line for line in writes.splitlines() if "**Access needed**" in line)
    assert "no root needed" not in access and "`/var/lib/app`" in access and "/var/tmp" not in access
    role = (tmp_path / "out" / "role.md").read_text()
    assert "with sudo (the playbooks use `become`)" in role
