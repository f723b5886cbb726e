"""The catalog cache: `runbook list` re-reads only changed files, and never shows stale data."""
from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import copy_workspace, runbook


def _listing(ws: Path) -> dict[str, str]:
    done = runbook("list", "--json", cwd=ws)
    assert done.returncode == 0, done.stderr
    return {e["name"]: e["version"] for e in json.loads(done.stdout)}


def test_list_follows_edits_additions_and_removals(alien: Path, state_dir: Path) -> None:
    before = _listing(alien)
    assert before["conditional"] == "1.2.0"
    assert (state_dir / "cache" / "catalog.v2.json").exists()
    path = alien / "runbooks" / "conditional.yml"
    text = path.read_text().replace("version: 1.2.0", "version: 1.3.0")
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # same second edits still count
    (alien / "runbooks" / "slow.yml").unlink()
    (alien / "runbooks" / "extra.yml").write_text(text.replace("name: conditional", "name: extra"))
    after = _listing(alien)
    assert after["conditional"] == "1.3.0" and "slow" not in after and after["extra"] == "1.3.0"
    assert set(after) == set(before) - {"slow"} | {"extra"}


def test_list_shows_the_good_runbooks_and_each_unreadable_file_on_stderr_then_exits_3(alien: Path) -> None:
    (alien / "runbooks" / "broken.yml").write_text("name: broken\nversion: [unclosed\n")
    (alien / "runbooks" / "laughs.yml").write_text("a: &a [x, x]\nb: &b [*a, *a]\ntitle: *b\n")
    for args in (("list",), ("list", "--json"), ("list", "--tag", "nothing-has-it")):
        done = runbook(*args, cwd=alien)
        assert done.returncode == 3, done.stderr
        assert "broken" not in done.stdout and "laughs" not in done.stdout
        assert "runbooks/broken.yml:2: invalid YAML" in done.stderr
        assert "runbooks/laughs.yml:1: anchor &a: anchors and aliases are not allowed" in done.stderr
        assert "internal error" not in done.stderr
    listed = json.loads(runbook("list", "--json", cwd=alien).stdout)
    assert "conditional" in {e["name"] for e in listed}


def test_examples_of_maintenance_runbooks_name_an_inventory() -> None:
    """A maintenance runbook never falls back on `local`: an example run without `-i` (and no `inventory:` in
    the runbook) fails with exit 3 for whoever copies it."""
    import yaml

    from conftest import REPO

    for path in sorted((REPO / "runbooks").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind") != "maintenance" or doc.get("inventory"):
            continue
        lines = doc.get("description", "").replace("\\\n", " ").splitlines()  # continuation lines joined
        for line in (line for line in lines if f"runbook run {doc['name']}" in line):
            words = line.split(f"runbook run {doc['name']}", 1)[1].split("`")[0].split()
            assert "-i" in words or "--inventory" in words, f"{path.name}: {line.strip()}"


def _search_workspace(root: Path) -> Path:
    (root / "runbooks").mkdir(parents=True)
    for name, title, tags, description in (
            ("disk-cleanup", "Free Disk space", "[storage]", "Compress then remove old files when the disk is full."),
            ("failure-signs", "Fault signs", "[hardware]", "障害予兆の検知: SMART health, OOM kills."),
            ("tidy", "Tidy", "[storage]", "Nothing about space.")):
        (root / "runbooks" / f"{name}.yml").write_text(
            f"apiVersion: runbook/v1\nname: {name}\ntitle: {title}\nversion: 1.0.0\nkind: operation\n"
            f"tags: {tags}\ndescription: '{description}'\nsteps: [{{name: s, manual: x}}]\n")
    return root


def test_list_search_matches_every_word_in_name_title_tags_and_description(tmp_path: Path) -> None:
    ws = _search_workspace(tmp_path / "ws")

    def names(*words: str) -> list[str]:
        done = runbook("list", "--json", "--search", " ".join(words), cwd=ws)
        assert done.returncode == 0, done.stderr
        return [e["name"] for e in json.loads(done.stdout)]

    assert names("DISK") == ["disk-cleanup"]  # the title, any case
    assert names("storage") == ["disk-cleanup", "tidy"]  # a tag
    assert names("storage", "full") == ["disk-cleanup"]  # every word must match; `full` is in the description
    assert names("予兆") == ["failure-signs"] and names("ｓｍａｒｔ") == ["failure-signs"]  # Unicode, full width
    assert names("signs", "cleanup") == []
    assert names("failure-signs") == ["failure-signs"]  # cached entries are searched the same
    table = runbook("list", "--search", "oom", cwd=ws)
    assert table.returncode == 0 and "failure-signs" in table.stdout and "tidy" not in table.stdout
    none = runbook("list", "--search", "nothing-has-this", cwd=ws)
    assert none.returncode == 0 and "no runbooks match" in none.stderr


def test_list_search_finds_a_runbook_by_its_translation(tmp_path: Path) -> None:
    ws = copy_workspace("repo", tmp_path / "ws")
    done = runbook("list", "--json", "--search", "ディスク", cwd=ws)
    assert done.returncode == 0, done.stderr
    found = [e["name"] for e in json.loads(done.stdout)]
    assert "disk-cleanup" in found and "account-audit" not in found  # its Japanese title and description
