"""Property test: validation never crashes, whatever is done to a valid spec.

Valid specs (the 0.1.0 samples and the built-in templates) are mutated at random: keys deleted,
renamed or added, values replaced by JSON-ish values of another type, list items duplicated or
removed, names swapped. `validate_data` must answer with either a spec and no problems, or a
non-empty list of problems that each have a location and a message; `load_spec` may raise only
SpecError.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_helpers import SPECS_010

from loopengt_core.engine.validation import Problem, SpecError, load_spec, validate_data
from loopengt_core.model.spec import LoopSpec
from loopengt_core.service.catalog import template_names, template_text

SAMPLES = SPECS_010


def _bases() -> list[Any]:
    texts = [p.read_text("utf-8") for p in sorted(SAMPLES.glob("*.yaml"))]
    texts += [template_text(name) for name in template_names()]
    return [yaml.safe_load(text) for text in texts]


BASES = _bases()

# Keys the models know, so that renames and insertions often hit a real field with a wrong value.
KNOWN_KEYS = sorted(
    {
        "name", "goal", "pattern", "agents", "steps", "policy", "stop_conditions", "output_schema",
        "context", "inputs", "metadata", "tools", "trigger", "version", "description", "agent",
        "prompt_template", "dependencies", "step_name", "verification_gates", "timeout_seconds",
        "allow_retry", "run", "next", "routes", "on_failure", "field", "map", "default", "condition",
        "command", "approval", "prompt", "feedback", "max_turns", "max_total_time_seconds", "retry",
        "max_retries", "initial_delay_seconds", "backoff", "max_delay_seconds", "jitter",
        "backoff_seconds", "backoff_multiplier", "allow_parallel", "max_concurrency", "fail_fast",
        "condition_type", "value", "schema_def", "required_fields", "system_prompt", "capabilities",
        "input_schema", "tool_type", "config", "required", "type", "properties", "trigger_type",
        "$schema", "$ref", "items", "enum", "format",
    }
)  # fmt: skip

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["{goal}", "{nope}", "{steps.x.output}", "a..b", "output.score", "`1`", "retry", "custom"]
    ),
)
KEYS = st.one_of(
    st.sampled_from(KNOWN_KEYS), st.text(max_size=10), st.integers(-3, 3), st.none(), st.booleans()
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(KEYS, inner, max_size=3),
    ),
    max_leaves=6,
)
MUTATIONS = [
    "delete", "rename", "replace", "insert", "duplicate", "remove_item", "swap_names", "retarget", "schema",
]  # fmt: skip
# JSON Schema keywords whose odd values have crashed schema checking before (`$schema: 5`).
SCHEMA_KEYWORDS = ["$schema", "$ref", "$id", "type", "properties", "required", "items", "enum", "pattern"]
SCHEMA_FIELDS = ("output_schema", "input_schema", "schema_def")


def _containers(node: Any) -> list[Any]:
    """Every dict and list in the tree, the root first."""
    found = [node] if isinstance(node, dict | list) else []
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        found += _containers(child)
    return found


def _schemas(node: Any) -> list[dict[Any, Any]]:
    """The JSON Schemas in a spec (and the 0.1.0 `output_schema: {schema_def: ...}` wrapper)."""
    found = []
    for container in _containers(node):
        if isinstance(container, dict):
            found += [v for k, v in container.items() if k in SCHEMA_FIELDS and isinstance(v, dict)]
    return found


def _named(root: Any) -> list[dict[Any, Any]]:
    return [c for c in _containers(root) if isinstance(c, dict) and isinstance(c.get("name"), str)]


def _mutate(root: Any, draw: Any) -> None:
    nodes = _containers(root)
    node = draw(st.sampled_from(nodes))
    kind = draw(st.sampled_from(MUTATIONS))
    if kind == "swap_names":
        named = _named(root)
        if len(named) >= 2:
            a, b = draw(st.lists(st.sampled_from(range(len(named))), min_size=2, max_size=2, unique=True))
            named[a]["name"], named[b]["name"] = named[b]["name"], named[a]["name"]
        return
    if kind == "retarget":
        # Point a reference (agent, dependency, gate, next) at another name that exists somewhere.
        names = [n["name"] for n in _named(root)] or ["x"]
        if isinstance(node, dict):
            key = draw(
                st.sampled_from(["agent", "step_name", "next", "on_failure", "default", "verification_gates"])
            )
            target = draw(st.sampled_from(names))
            node[key] = [target] if key == "verification_gates" else target
        return
    if kind == "schema":
        schemas = _schemas(root)
        if schemas:
            draw(st.sampled_from(schemas))[draw(st.sampled_from(SCHEMA_KEYWORDS))] = draw(JSONISH)
        return
    if isinstance(node, dict):
        keys = list(node)
        if kind == "insert" or not keys:
            node[draw(KEYS)] = draw(JSONISH)
            return
        key = draw(st.sampled_from(keys))
        if kind == "delete":
            del node[key]
        elif kind == "rename":
            node[draw(KEYS)] = node.pop(key)
        else:
            node[key] = draw(JSONISH)
    elif isinstance(node, list):
        if kind == "insert" or not node:
            node.insert(draw(st.integers(0, len(node))), draw(JSONISH))
            return
        i = draw(st.integers(0, len(node) - 1))
        if kind == "duplicate":
            node.insert(i, copy.deepcopy(node[i]))
        elif kind in ("delete", "remove_item"):
            del node[i]
        else:
            node[i] = draw(JSONISH)


def _check(data: Any) -> None:
    try:
        spec, problems = validate_data(data)
    except Exception as exc:
        raise AssertionError(f"validate_data raised {type(exc).__name__}: {exc}") from exc
    assert isinstance(problems, list)
    if problems:
        assert spec is None
        for problem in problems:
            assert isinstance(problem, Problem)
            assert isinstance(problem.location, str)
            assert problem.location
            assert isinstance(problem.message, str)
            assert problem.message
    else:
        assert isinstance(spec, LoopSpec)
    if isinstance(data, str):
        return  # load_spec reads a string as YAML text; the text test covers that path
    refused: list[Problem] = []
    try:
        load_spec(data)
    except SpecError as exc:
        refused = exc.problems
    except Exception as exc:
        raise AssertionError(f"load_spec raised {type(exc).__name__}, not SpecError: {exc}") from exc
    assert refused == problems, "load_spec and validate_data disagree"


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(base=st.sampled_from(range(len(BASES))), count=st.integers(1, 4), data=st.data())
def test_mutated_specs_never_crash_validation(base: int, count: int, data: st.DataObject) -> None:
    spec = copy.deepcopy(BASES[base])
    for _ in range(count):
        _mutate(spec, data.draw)
    _check(spec)


@settings(max_examples=60, deadline=None)
@given(value=JSONISH)
def test_any_document_never_crashes_validation(value: Any) -> None:
    _check(value)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=80))
def test_any_text_raises_only_spec_error(text: str) -> None:
    refused: list[Problem] | None = None
    try:
        load_spec(text)
    except SpecError as exc:
        refused = exc.problems
    except Exception as exc:
        raise AssertionError(f"load_spec raised {type(exc).__name__}, not SpecError: {exc}") from exc
    assert refused is None or refused, "a SpecError without problems"


def test_the_bases_are_valid() -> None:
    """The fuzz starts from valid specs; if one stops validating, the mutations test less than intended."""
    assert len(BASES) >= 5
    for data in BASES:
        spec, problems = validate_data(data)
        assert problems == []
        assert spec is not None
