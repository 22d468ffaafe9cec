"""Reading a spec: YAML/JSON text parsed under size and depth limits, and
`load_spec`, which parses and validates and raises one `SpecError` listing every problem."""

from __future__ import annotations

from typing import Any

import yaml

from loopengt_core.engine.validation.problems import Problem, SpecError, kind_of
from loopengt_core.engine.validation.structure import validate_data
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.limits import MAX_JSON_DEPTH, MAX_SPEC_BYTES, MAX_SPEC_VALUES, checked
from loopengt_core.model.spec import LoopSpec

# keys of which a loop spec has at least one: a file without any is not echoed back (see `parse_file_text`)
SPEC_KEYS = frozenset({"name", "goal", "steps", "agents", "pattern", "policy"})


# --- reading -----------------------------------------------------------------------------------


def parse_text(text: str) -> Any:
    """YAML (or JSON, a subset) to data. Raises SpecError with the line and column of a syntax error.

    The size, the nesting depth and the number of values (YAML aliases count each time they are
    used) are checked on the parser's events before any data is built: the loaders recurse, and an
    alias used in a thousand places costs a thousand copies' time in validation.
    """
    maximum = MAX_SPEC_BYTES.get()
    if len(text) > maximum or len(text.encode("utf-8", "replace")) > maximum:
        raise SpecError(
            [
                Problem(
                    "(document)",
                    f"the spec is larger than the {maximum} byte limit ({MAX_SPEC_BYTES.variable})",
                )
            ]
        )
    _check_shape(text)
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # the C build of SafeLoader: cold loads 5x faster
        except yaml.YAMLError:
            pass  # the pure-Python loader below gives the precise message
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        what = exc.problem or exc.context or "invalid YAML"
        raise SpecError([Problem(where, f"invalid YAML: {what}")]) from None
    except yaml.reader.ReaderError as exc:  # a forbidden character (NUL, U+FFFE): its str() spans two lines
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        where = f"line {line}, column {column}"
        raise SpecError([Problem(where, f"invalid YAML: character U+{char:04X} is not allowed")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem("(document)", f"invalid YAML: {' '.join(str(exc).split())}")]) from None


def _check_shape(text: str) -> None:
    """Refuse a document nested deeper than LOOPENGT_MAX_JSON_DEPTH or holding more values than
    LOOPENGT_MAX_SPEC_VALUES, reading only the parser's events (the parser does not recurse).

    A syntax error is left to the loader, which reports it precisely: up to that point the document
    was within the limits, so the loader's recursion is bounded too.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            _walk_events(text, fast)
            return
        except yaml.YAMLError:
            pass  # libyaml stops at its own nesting limit before an event says how deep: ask the pure one
    try:
        _walk_events(text, yaml.SafeLoader)
    except yaml.YAMLError:
        return


def _walk_events(text: str, loader: Any) -> None:
    max_depth, max_values = MAX_JSON_DEPTH.get(), MAX_SPEC_VALUES.get()
    anchors: dict[str, tuple[int, int]] = {}
    open_nodes: list[list[Any]] = []  # [anchor, deepest child, values] of each open collection
    total = 0

    def add(depth: int, values: int) -> None:
        nonlocal total
        total += values
        if open_nodes:
            open_nodes[-1][1] = max(open_nodes[-1][1], depth)
            open_nodes[-1][2] += values

    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 0, 1])
            depth = len(open_nodes)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, deepest, values = open_nodes.pop()
            if anchor is not None:
                anchors[anchor] = (deepest + 1, values)
            add(deepest + 1, values)
            depth = deepest + 1 + len(open_nodes)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchors[event.anchor] = (0, 1)
            add(0, 1)
            depth = 0
        elif isinstance(event, yaml.AliasEvent):
            own, values = anchors.get(event.anchor or "", (0, 1))
            add(own, values)
            depth = own + len(open_nodes)
        else:
            continue
        if depth > max_depth:
            mark = event.start_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
            raise SpecError(
                [
                    Problem(
                        where,
                        f"nested more than {max_depth} levels deep; the limit is {max_depth} levels "
                        f"({MAX_JSON_DEPTH.variable})",
                    )
                ]
            )
        if total > max_values:
            raise SpecError(
                [
                    Problem(
                        "(document)",
                        f"the spec holds more than {max_values} values (a YAML alias counts each time "
                        f"it is used); the limit is {max_values} ({MAX_SPEC_VALUES.variable})",
                    )
                ]
            )


def spec_data(spec: Any) -> Any:
    """A spec as a client sends it (YAML/JSON text, or an object) as data, within the spec limits."""
    if isinstance(spec, str):
        return parse_text(spec)
    if isinstance(spec, dict):
        try:
            return checked(spec, "the spec", MAX_SPEC_BYTES)[0]
        except LoopengtError as exc:
            raise SpecError([Problem("(document)", exc.message)]) from None
    raise SpecError(
        [Problem("(document)", f"a spec is YAML/JSON text or an object, not {type(spec).__name__}")]
    )


def parse_file_text(text: str, source: str) -> dict[str, Any]:
    """A spec file read for a client, as data; a file that is not a loop spec is refused without
    echoing a word of it (it may be any file in the project: a key file, a `.env`)."""
    try:
        data = parse_text(text)
    except SpecError as exc:
        if exc.problems and "invalid YAML" not in exc.problems[0].message:
            raise  # a limit: names no content
        where = exc.problems[0].location if exc.problems else "(document)"
        raise SpecError(
            [Problem(where, f"{source} is not a loop spec: not valid YAML")], source=source
        ) from None
    if not isinstance(data, dict) or not SPEC_KEYS & {str(k) for k in data}:
        raise SpecError(
            [
                Problem(
                    "(document)",
                    f"not a loop spec (a YAML mapping with name, goal and steps; found {kind_of(data)})",
                )
            ],
            source=source,
        )
    return data


def load_spec(data_or_text: Any, *, source: str = "spec", quote: bool = True) -> LoopSpec:
    """A valid LoopSpec from text or already-parsed data. Raises SpecError listing every problem.

    `quote=False`: the messages name keys and locations but never quote a value (a file read for a
    client, see `parse_file_text`).
    """
    if isinstance(data_or_text, str):
        data = parse_text(data_or_text) if quote else parse_file_text(data_or_text, source)
    else:
        data = data_or_text
    spec, problems = validate_data(data, quote=quote)
    if problems or spec is None:
        raise SpecError(problems, source=source)
    return spec


# --- structure ---------------------------------------------------------------------------------
