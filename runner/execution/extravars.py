"""Extra vars as ansible-playbook reads them (`-e @file`): a YAML document in which every string, mapping
keys included, carries `!unsafe`. Ansible then never renders a value as a Jinja2 template, whoever wrote
it (a caller's parameter, a schedule, a step's `vars:` built from parameters, a secret): it reaches the
playbook as the literal text. AWX protects survey answers the same way."""
from __future__ import annotations

from typing import Any, Mapping

import yaml


class _UnsafeDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # every value written out in full: no anchors for Ansible to resolve


def _unsafe_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Double quotes carry any character exactly (escaped where YAML needs it) and never fold lines.
    return dumper.represent_scalar("!unsafe", value, style='"')


_UnsafeDumper.add_representer(str, _unsafe_str)
_UnsafeDumper.add_multi_representer(str, _unsafe_str)  # str subclasses too


def unsafe_yaml(values: Mapping[str, Any]) -> bytes:
    """`values` as YAML for `-e @file`, every string marked `!unsafe` (ints, floats, booleans and nulls are
    never templated and keep their type)."""
    return yaml.dump(plain(values), Dumper=_UnsafeDumper, allow_unicode=True, sort_keys=False,
                     width=float("inf"), default_flow_style=False).encode("utf-8", "backslashreplace")


def plain(value: Any) -> Any:
    """`value` as mappings with string keys, lists and scalars; anything else becomes its text."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)
