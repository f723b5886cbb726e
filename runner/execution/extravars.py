"""Extra vars as ansible-playbook reads them (`-e @file`): a YAML document marked `!unsafe`, so Ansible
never renders a value as a Jinja2 template, whoever wrote it (a caller's parameter, a schedule, a step's
`vars:` built from parameters, a secret, the built-in runbook_* vars): it reaches the playbook as the
literal text. AWX protects survey answers the same way.

ansible-core 2.19 propagates `!unsafe` from a mapping to everything inside it, keys included, but reads a
tagged scalar again as if it were plain (`!unsafe "true"` becomes a boolean): there the root mapping
carries the tag and every string is double-quoted. Older releases wrap only what the tag sits on and
build a tagged mapping's nested values too late to wrap them: there every string carries the tag."""
from __future__ import annotations

import functools
from typing import Any, Mapping

import yaml

_UNSAFE = "!unsafe"


class _Root(dict[str, Any]):
    """The document's top mapping."""


class _Dumper(yaml.SafeDumper):
    tag_strings = False

    def ignore_aliases(self, data: Any) -> bool:
        return True  # every value written out in full: no anchors for Ansible to resolve


class _TaggingDumper(_Dumper):
    tag_strings = True


def _represent_str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    # Double quotes carry any character exactly (escaped where YAML needs it), always read back as a
    # string, and never fold lines.
    tag = _UNSAFE if dumper.tag_strings else "tag:yaml.org,2002:str"
    return dumper.represent_scalar(tag, value, style='"')


def _represent_root(dumper: _Dumper, value: _Root) -> yaml.MappingNode:
    tag = "tag:yaml.org,2002:map" if dumper.tag_strings else _UNSAFE
    return dumper.represent_mapping(tag, value.items())


for _cls in (_Dumper, _TaggingDumper):
    _cls.add_representer(str, _represent_str)
    _cls.add_multi_representer(str, _represent_str)  # str subclasses too
    _cls.add_representer(_Root, _represent_root)


@functools.cache
def _propagating() -> bool:
    """Whether this ansible-core propagates `!unsafe` into mappings (2.19 and later)."""
    from ansible.release import __version__

    return tuple(int(p) for p in __version__.split(".")[:2] if p.isdigit()) >= (2, 19)


def unsafe_yaml(values: Mapping[str, Any], propagating: bool | None = None) -> bytes:
    """`values` as YAML for `-e @file`, every string unsafe; ints, floats, booleans and nulls are never
    templated and keep their type."""
    if propagating is None:
        propagating = _propagating()
    root = _Root(plain(values))
    return yaml.dump(root, Dumper=_Dumper if propagating else _TaggingDumper, allow_unicode=True,
                     sort_keys=False, width=float("inf"), default_flow_style=False).encode("utf-8", "backslashreplace")


def plain(value: Any) -> Any:
    """`value` as mappings with string keys, lists and scalars; anything else becomes its text."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)
