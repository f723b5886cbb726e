"""Property-based fuzzing of the YAML loader, the runbook loader and parameter parsing (issue #8, F4).

Not collected on its own: tests/test_fuzz.py runs this file in a child pytest held to a memory limit and a
time bound, so an input that exhausts memory fails the test instead of the machine. Every property says
the same thing: whatever the input, the answer is data or an error of the RunbookError family (problems
with file and line), never another exception, and each example finishes within the deadline. The runs are
derandomized: the same examples every time, so CI never flakes on a new one."""
from __future__ import annotations

import functools
import os
import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from runner.definition.loader import check_runbook
from runner.definition.model import Runbook
from runner.definition.params import parse_assignments, read_params_file, resolve
from runner.definition.yamlfile import load_document
from runner.errors import InvalidError, Problem, RunbookError

SCALE = float(os.environ.get("RUNBOOK_FUZZ_SCALE", "1"))
COMMON = dict(deadline=2000, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="runbook-fuzz-"))

# Pieces of YAML that have broken loaders: anchors, aliases, tags, merge keys, directives, odd scalars.
TOKENS = ["a", "b", "name", ":", ": ", " ", "\n", "  ", "    ", "- ", "[", "]", "{", "}", ", ", "&a ", "*a", "&b ",
          "*b", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!foo ",
          "!!python/name:os.system ", "! ", "? ", "'", '"', "# c", "2001-02-30", "2001-02-03", "9" * 4400, "~",
          "<<: ", "=", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "\t", "|\n", ">-\n", "\\", "é",
          "\x85", "\u2028", "\ufeff", "0x1F", "0o17", "1e999", ".nan", "-.inf", "yes", "on", "null", "\"\\x00\"",
          "\"\\u2029\"", "((((", "{{ params.x }}", "{% if %}", "a{4294967296}", "(a+)+$"]
yamlish = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)
texts = st.one_of(st.text(max_size=200), yamlish, st.text(alphabet=string.printable, max_size=200))

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts, st.sampled_from(TOKENS),
                    st.sampled_from(["hello", "1.0.0", "10m", "1h30m", "0 0 31 2 *", "@daily", "check.yml",
                                     "../x.yml", "/etc/passwd", "operation", "maintenance", "string", "list"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)
KEYS = ["apiVersion", "name", "title", "version", "kind", "maintenance_type", "owner", "tags", "description",
        "targets", "inventory", "concurrency", "lock", "timeout", "rollout", "parameters", "steps", "on_failure",
        "schedule", "typo"]
STEP_KEYS = ["name", "playbook", "manual", "checklist", "approval", "timeout", "retries", "when", "on_failure",
             "vars", "description"]
PARAM_SPEC_KEYS = ["type", "required", "default", "pattern", "min", "max", "choices", "env", "description"]


def base(name: str) -> dict[str, Any]:
    return {"apiVersion": "runbook/v1", "name": name, "title": "Fuzzed", "version": "1.0.0", "kind": "operation",
            "parameters": {"p": {"type": "string"}},
            "steps": [{"name": "check", "playbook": "check.yml"}],
            "schedule": [{"cron": "@daily", "params": {"p": "x"}}]}


@st.composite
def runbook_texts(draw: st.DrawFn) -> str:
    """A valid runbook with some keys (top level, a step, a parameter, a schedule) replaced by fuzz, dumped as
    YAML; sometimes with YAML fuzz spliced into the text."""
    data = base("fuzz")
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        data[key] = draw(values)
    step = data["steps"][0] if isinstance(data.get("steps"), list) and data["steps"] else None
    if isinstance(step, dict):
        for key in draw(st.lists(st.sampled_from(STEP_KEYS), max_size=3)):
            step[key] = draw(values)
    spec = data["parameters"].get("p") if isinstance(data.get("parameters"), dict) else None
    if isinstance(spec, dict):
        for key in draw(st.lists(st.sampled_from(PARAM_SPEC_KEYS), max_size=3)):
            spec[key] = draw(values)
    text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(yamlish) + text[at:]
    return text


def assert_problems(problems: list[Problem]) -> None:
    assert all(isinstance(p, Problem) and p.message for p in problems)


@settings(max_examples=int(1200 * SCALE), **COMMON)  # type: ignore[arg-type]
@given(texts)
def test_yaml_loader_answers_data_or_problems(text: str) -> None:
    doc, problems = load_document(text, "fuzz.yml")
    assert_problems(problems)
    assert doc is not None or problems


@settings(max_examples=int(400 * SCALE), **COMMON)  # type: ignore[arg-type]
@given(runbook_texts())
def test_runbook_loader_answers_a_runbook_or_problems(text: str) -> None:
    path = WORK / "fuzz.yml"
    path.write_text(text, encoding="utf-8")
    runbook, problems = check_runbook(path, "runbooks/fuzz.yml")
    assert_problems(problems)
    assert (runbook is None) == bool(problems)


SPECS = """\
parameters:
  s: {type: string, pattern: '^[a-z0-9._-]+$', max: 40}
  i: {type: integer, min: -5, max: 10**9}
  n: {type: number, min: 0.5}
  b: {type: boolean}
  c: {type: choice, choices: [graceful, hard, 3]}
  l: {type: list, pattern: '(a+)+$', max: 5}
  t: {type: secret, env: FUZZ_TOKEN}
"""
PARAMS_RUNBOOK = "apiVersion: runbook/v1\nname: fuzz-params\ntitle: t\nversion: 1.0.0\nkind: operation\n" + \
    SPECS.replace("10**9", "1000000000") + "steps:\n  - {name: s, playbook: check.yml}\n"
@functools.cache
def params_runbook() -> Runbook:
    path = WORK / "fuzz-params.yml"
    path.write_text(PARAMS_RUNBOOK, encoding="utf-8")
    runbook, problems = check_runbook(path)
    assert runbook is not None, problems
    return runbook


NAMES = st.sampled_from(["s", "i", "n", "b", "c", "l", "t", "unknown", "", " s", "s "])


@settings(max_examples=int(1200 * SCALE), **COMMON)  # type: ignore[arg-type]
@given(st.lists(st.one_of(st.tuples(NAMES, st.one_of(texts, yamlish)).map(lambda kv: f"{kv[0]}={kv[1]}"), texts),
                max_size=6),
       st.dictionaries(NAMES, st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=3))
def test_parameters_parse_into_values_or_an_invalid_error(pairs: list[str], file_values: dict[str, Any]) -> None:
    runbook = params_runbook()
    try:
        cli = parse_assignments(pairs)
        resolved = resolve(runbook, cli, file_values, environ={})
    except RunbookError as exc:
        if isinstance(exc, InvalidError):
            assert_problems(list(exc.problems))
        return
    assert set(resolved.values) == {p.name for p in runbook.parameters}


@settings(max_examples=int(400 * SCALE), **COMMON)  # type: ignore[arg-type]
@given(st.one_of(st.binary(max_size=300), texts.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_a_params_file_reads_as_a_mapping_or_an_error(raw: bytes) -> None:
    path = WORK / "params.yml"
    path.write_bytes(raw)
    try:
        values = read_params_file(path)
    except RunbookError:
        return
    assert isinstance(values, dict)
