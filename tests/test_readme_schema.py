"""README's "Runbook format" lists every key and sub-key of the JSON Schema (tests/schema_keys.py)."""
from __future__ import annotations

from conftest import REPO
from schema_keys import block, key_lines, readme_block


def test_readme_lists_every_key_and_sub_key_of_the_schema() -> None:
    shown = readme_block((REPO / "README.md").read_text())
    assert shown == block(), "README.md's key list is stale: run `python tests/schema_keys.py --write`"
    assert any("`steps[].approval`" in line and "`approvers`" in line for line in key_lines())


def test_the_key_list_follows_a_new_sub_key() -> None:
    schema = {"type": "object", "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/step"}}},
              "$defs": {"step": {"type": "object", "properties": {"approval": {
                  "type": "object", "properties": {"message": {}, "from": {}}}}}}}
    assert "- `steps[].approval`: `message`, `from`" in key_lines(schema)
