"""Loading and validating a loop spec, reporting every problem at once with its location.

Structure is checked by the pydantic models; when that fails, the offending parts are set aside and
the rest is checked too, so a spec with five mistakes gets five lines back, not one.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from loopengt_core import gatetypes
from loopengt_core.errors import LoopengtError
from loopengt_core.expressions import STOP_NAMES
from loopengt_core.gates import condition_problems
from loopengt_core.limits import MAX_JSON_DEPTH, MAX_SPEC_BYTES, MAX_SPEC_VALUES, checked
from loopengt_core.paths import UnreadableFile, read_regular
from loopengt_core.render import BUILTIN_VARIABLES, placeholders
from loopengt_core.spec import Gate, LoopSpec, Step

# keys of which a loop spec has at least one: a file without any is not echoed back (see `parse_file_text`)
SPEC_KEYS = frozenset({"name", "goal", "steps", "agents", "pattern", "policy"})


@dataclass(frozen=True)
class Problem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class SpecError(LoopengtError):
    """A spec that cannot be used; `problems` lists every mistake found."""

    code = "invalid_spec"

    def __init__(self, problems: list[Problem], *, source: str = "spec") -> None:
        self.problems = problems
        lines = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{source} is not a valid loop spec: {lines}{more}")


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


def read_spec_file(path: str | Path, *, root: Path | None = None) -> str:
    """The text of a spec file (a regular file within LOOPENGT_MAX_SPEC_BYTES); else a one-line SpecError.

    `root`: the project root `path` was confined to (see `paths.read_regular`).
    """
    p = Path(path)
    try:
        return read_regular(p, MAX_SPEC_BYTES, "the spec file", root=root).decode("utf-8")
    except UnreadableFile as exc:
        message = exc.message.removeprefix(f"{p}: ")
        raise SpecError([Problem(str(p), message)], source=str(p)) from None
    except UnicodeDecodeError:
        raise SpecError([Problem(str(p), "not a loop spec (not UTF-8 text)")], source=str(p)) from None
    except LoopengtError as exc:  # too large
        raise SpecError([Problem(str(p), exc.message)], source=str(p)) from None


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
                    f"not a loop spec (a YAML mapping with name, goal and steps; found {_kind(data)})",
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


def load_spec_file(path: str | Path) -> tuple[LoopSpec, str]:
    """The spec at `path` and its text (runs keep the text frozen)."""
    text = read_spec_file(path)
    return load_spec(text, source=str(path)), text


# --- structure ---------------------------------------------------------------------------------


def location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a person reads it in a spec: `steps[2].gates`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list, dict):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = LoopSpec
    for part in loc:
        if isinstance(part, int):
            continue
        if model is Gate and part not in model.model_fields:
            gate_type = gatetypes.find(str(part))
            model = _model_of(gate_type.config) if gate_type is not None else None
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _model_of(model.model_fields[part].annotation)
    return model


def _suggest(word: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(word, allowed, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _structure_problem(err: Any, quote: bool = True) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model else []
        key = str(loc[-1])
        if model is Gate:
            return Problem(location(loc), _unknown_gate_key(key, allowed))
        return Problem(
            location(loc), f"unknown key '{key}' ({_suggest(key, allowed)}allowed: {', '.join(allowed)})"
        )
    if kind == "unknown_gate_type":
        ctx = err.get("ctx", {})
        package = f" (package '{ctx['package']}' did)" if quote else " (the package named by `plugin` did)"
        return Problem(
            location(loc), f"unknown gate type '{ctx['key']}': no installed plugin provides it{package}"
        )
    if kind == "missing":
        return Problem(location(loc), "required, but missing")
    if kind in ("literal_error", "enum"):
        allowed = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
        value = err.get("input")
        hint = _suggest(value, allowed) if isinstance(value, str) and quote else ""
        shown = _short(value) if quote else "this value"
        return Problem(location(loc), f"{shown} is not allowed ({hint}allowed: {', '.join(allowed)})")
    message = err["msg"].removeprefix("Value error, ")
    if not quote:  # a validator's own message may quote the value: only pydantic's generic ones are kept
        generic = message if kind != "value_error" else "not a valid value here"
        return Problem(location(loc), f"{generic} (got {_kind(err.get('input'))})")
    return Problem(location(loc), f"{message} (got {_short(err.get('input'))})")


def _unknown_gate_key(key: str, fields: list[str]) -> str:
    """A key a gate does not have: a typo, or a gate type whose plugin is not installed."""
    plugins = [k for k in gatetypes.registered_keys() if k not in fields]
    allowed = ", ".join(fields) + (f"; gate types from plugins: {', '.join(plugins)}" if plugins else "")
    hint = _suggest(key, fields + plugins)
    missing = "" if hint else f"; no installed plugin provides a gate type '{key}'"
    return f"unknown key '{key}' ({hint}allowed: {allowed}{missing})"


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


_DROP = object()


def _container(data: Any, loc: tuple[int | str, ...]) -> Any:
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _set_aside(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Remove the smallest part around `loc` whose loss keeps the rest checkable. False if none."""
    for cut in range(len(loc), 0, -1):
        parent = _container(data, loc[: cut - 1])
        key = loc[cut - 1]
        if isinstance(parent, list) and isinstance(key, int) and key < len(parent):
            parent[key] = _DROP
            return True
        if isinstance(parent, dict) and key in parent:
            model = _model_at(loc[: cut - 1])
            field = model.model_fields.get(str(key)) if model else None
            if field is None or not field.is_required():
                del parent[key]
                return True
    return False


def _purge(node: Any) -> Any:
    if isinstance(node, list):
        return [_purge(x) for x in node if x is not _DROP]
    if isinstance(node, dict):
        return {k: _purge(v) for k, v in node.items()}
    return node


def validate_data(data: Any, *, quote: bool = True) -> tuple[LoopSpec | None, list[Problem]]:
    """Check parsed data. Returns the spec (None if its structure is beyond repair) and every problem.

    `quote=False`: no problem quotes a value of the data (see `load_spec`).
    """
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        return None, [Problem("(document)", f"a loop spec is a mapping (name, goal, steps, ...), not {kind}")]
    problems: list[Problem] = []
    work: Any = copy.deepcopy(data)
    spec: LoopSpec | None = None
    for _ in range(8):
        try:
            spec = LoopSpec.model_validate(work)
            break
        except ValidationError as exc:
            errors = _unbranched(exc.errors())
            problems.extend(_structure_problem(e, quote) for e in errors)
            if not all(_set_aside(work, tuple(e["loc"])) for e in errors):
                return None, _unique(problems)
            work = _purge(work)
    if spec is None:
        return None, _unique(problems)
    reported = [p.location for p in problems]
    for problem in check_semantics(spec):
        if not any(
            problem.location == r or problem.location.startswith((r + ".", r + "[")) for r in reported
        ):
            problems.append(problem)
    return (spec if not problems else None), _unique(problems)


def _branch_labels(loc: tuple[int | str, ...]) -> set[int]:
    """Positions in `loc` that are pydantic's union branch labels (`bool`, `ApprovalRule`) rather than keys
    of the document: a label follows a field whose annotation is a union and names one of its members."""
    labels: set[int] = set()
    model: type[BaseModel] | None = LoopSpec
    members: dict[str, Any] = {}
    for i, part in enumerate(loc):
        if isinstance(part, int):
            continue
        if part in members:
            labels.add(i)
            model, members = _model_of(members[part]), {}
            continue
        if model is None or part not in model.model_fields:
            return labels
        annotation = model.model_fields[part].annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        args: tuple[Any, ...] = typing.get_args(annotation) if union else ()
        members = {_member_label(a): a for a in args}
        model = _model_of(annotation)
    return labels


def _member_label(member: Any) -> str:
    """The label pydantic gives a union member in an error's location (`StuckPolicy`, `literal[False]`)."""
    if typing.get_origin(member) is typing.Literal:
        return f"literal[{','.join(repr(v) for v in typing.get_args(member))}]"
    return str(getattr(member, "__name__", member))


def _unbranched(errors: list[Any]) -> list[Any]:
    """Errors of a field typed as a union (`approval: bool | ApprovalRule`) without pydantic's branch
    labels in their locations; when a mapping was given, only the mapping branch's errors are kept (the
    author meant the rule, not `true`)."""
    out = []
    for err in errors:
        loc = tuple(err["loc"])
        labels = _branch_labels(loc)
        branch = next((str(loc[i]) for i in sorted(labels)), None)
        kept = tuple(part for i, part in enumerate(loc) if i not in labels)
        out.append({**err, "loc": kept, "branch": branch})
    mapped = {e["loc"] for e in out if e["branch"] is not None and e["branch"][:1].isupper()}
    fields = {loc[:i] for loc in mapped for i in range(1, len(loc) + 1)}
    return [
        e
        for e in out
        if not (e["branch"] is not None and not e["branch"][:1].isupper() and e["loc"] in fields)
    ]


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# --- meaning -----------------------------------------------------------------------------------


def _names(kind: str, names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    return f"{kind}: {', '.join(unique)}" if unique else f"no {kind} defined"


def check_semantics(spec: LoopSpec) -> list[Problem]:
    """Every problem that relates one part of a valid-looking spec to another."""
    return [
        *_duplicates(spec),
        *_step_references(spec),
        *_cycles(spec),
        *_gates(spec),
        *_schemas(spec),
        *_placeholders(spec),
        *_stop_conditions(spec),
        *_pattern_rules(spec),
        *_budget(spec),
        *_isolation(spec),
        *_resolve(spec),
    ]


def _isolation(spec: LoopSpec) -> Iterator[Problem]:
    """`isolation: worktree` needs git, and a join that merges the branch back into the run's line."""
    isolated = [(i, s) for i, s in enumerate(spec.steps) if spec.isolated(s)]
    if not isolated:
        return
    if spec.workspace == "none":
        where = "isolation" if spec.isolation == "worktree" else f"steps[{isolated[0][0]}].isolation"
        yield Problem(
            where,
            "isolation: worktree needs the run's files in git: remove `workspace: none` (use auto or git), "
            "or set isolation: none",
        )
    for i, step in isolated:
        if not any(d.step_name == step.name for s in spec.steps for d in s.dependencies):
            yield Problem(
                f"steps[{i}].isolation",
                f"step '{step.name}' works in its own worktree, but no step depends on it, so its work would "
                "never be merged: add a join step that lists it in dependencies, or set isolation: none",
            )
        if spec.joins(step):
            yield Problem(
                f"steps[{i}].isolation",
                f"step '{step.name}' joins worktree branches ({', '.join(spec.joins(step))}): it works in "
                "their merge, so it cannot have a worktree of its own; set isolation: none",
            )


def _resolve(spec: LoopSpec) -> Iterator[Problem]:
    """A join's `resolve` names a step that runs only on that join's conflicts: never on its own."""
    steps = {s.name: s for s in spec.steps}
    targets = {t for s in spec.steps for t in [*(s.next or []), *_route_targets(s), s.on_failure] if t}
    for i, step in enumerate(spec.steps):
        name, where = step.resolve, f"steps[{i}].resolve"
        if name is None:
            continue
        found = steps.get(name)
        if found is None:
            yield Problem(where, f"unknown step '{name}' ({_names('steps', list(steps))})")
        elif name == step.name:
            yield Problem(where, f"step '{name}' cannot resolve its own conflicts: name another step")
        elif not spec.joins(step):
            yield Problem(
                where,
                f"step '{step.name}' merges no worktree branches, so it has no conflicts to resolve: list "
                "steps with isolation: worktree in its dependencies, or remove resolve",
            )
        elif spec.pattern not in ("parallel_fan_out", "custom"):
            yield Problem(where, f"resolve needs pattern parallel_fan_out or custom, not {spec.pattern}")
        elif (
            found.dependencies
            or spec.isolated(found)
            or any(d.step_name == name for s in spec.steps for d in s.dependencies)
            or name in targets
            or (spec.pattern == "custom" and spec.steps[0].name == name)
        ):
            yield Problem(
                where,
                f"step '{name}' resolves conflicts, so it runs only when the merge has some: it cannot be "
                "the first step, have dependencies or a worktree of its own, nor be another step's "
                "dependency, next, route or on_failure",
            )
        elif found.on_failure or found.next or found.routes:
            yield Problem(
                where,
                f"step '{name}' resolves conflicts, so when it ends the run goes back to its join "
                f"'{step.name}': it cannot have next, routes or on_failure of its own",
            )


def _route_targets(step: Step) -> list[str]:
    if step.routes is None:
        return []
    return [*step.routes.map.values(), *([step.routes.default] if step.routes.default else [])]


def _budget(spec: LoopSpec) -> Iterator[Problem]:
    """policy.budget.steps names steps, and only agent steps report usage."""
    budget = spec.policy.budget
    steps = {s.name: s for s in spec.steps}
    for name in budget.steps if budget is not None else {}:
        where = f"policy.budget.steps.{name}"
        if name not in steps:
            yield Problem(where, f"unknown step '{name}' ({_names('steps', list(steps))})")
        elif steps[name].run is not None:
            yield Problem(where, f"step '{name}' is a command step: it reports no usage, so no limit applies")


def _duplicates(spec: LoopSpec) -> Iterator[Problem]:
    groups: list[tuple[str, str, list[str]]] = [
        ("agents", "agent", [a.name for a in spec.agents]),
        ("steps", "step", [s.name for s in spec.steps]),
        ("tools", "tool", [t.name for t in spec.tools]),
        ("policy.verification_gates", "gate", [g.name for g in spec.policy.verification_gates]),
        ("inputs", "input", [i.name for i in spec.inputs]),
    ]
    for where, kind, names in groups:
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in first:
                yield Problem(
                    f"{where}[{i}].name", f"duplicate {kind} name '{name}' (first at {where}[{first[name]}])"
                )
            else:
                first[name] = i
    for i, name in enumerate(s.name for s in spec.steps):
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}", name):
            yield Problem(f"steps[{i}].name", f"'{name}' is not a usable step name (letters, digits, _ . -)")


def _step_references(spec: LoopSpec) -> Iterator[Problem]:
    agents = [a.name for a in spec.agents]
    steps = [s.name for s in spec.steps]
    tools = [t.name for t in spec.tools]
    for i, step in enumerate(spec.steps):
        here = f"steps[{i}]"
        if (step.agent is None) == (step.run is None):
            yield Problem(
                here, "a step needs exactly one of 'agent' (a task for an agent) or 'run' (a command)"
            )
        if step.agent is not None and step.agent not in agents:
            yield Problem(f"{here}.agent", f"unknown agent '{step.agent}' ({_names('agents', agents)})")
        if step.run is not None and not step.run:
            yield Problem(f"{here}.run", "empty command: give an argv list such as ['pytest', '-q']")
        for j, dep in enumerate(step.dependencies):
            if dep.step_name not in steps:
                yield Problem(
                    f"{here}.dependencies[{j}].step_name",
                    f"unknown step '{dep.step_name}' ({_names('steps', steps)})",
                )
        targets = [("next", n) for n in step.next or []]
        if step.routes is not None:
            targets += [(f"routes.map.{k}", v) for k, v in step.routes.map.items()]
            if step.routes.default is not None:
                targets.append(("routes.default", step.routes.default))
        if step.on_failure is not None:
            targets.append(("on_failure", step.on_failure))
        if targets and spec.pattern != "custom":
            key = targets[0][0].split(".")[0]
            yield Problem(
                f"{here}.{key}", f"'{key}' applies only to pattern 'custom' (pattern is '{spec.pattern}')"
            )
        for key, target in targets:
            if target not in steps:
                yield Problem(f"{here}.{key}", f"unknown step '{target}' ({_names('steps', steps)})")
    if tools:
        for i, agent in enumerate(spec.agents):
            for j, tool in enumerate(agent.tools):
                if tool not in tools:
                    yield Problem(
                        f"agents[{i}].tools[{j}]", f"unknown tool '{tool}' ({_names('tools', tools)})"
                    )


def _cycles(spec: LoopSpec) -> Iterator[Problem]:
    index = {s.name: i for i, s in enumerate(spec.steps)}
    graph = {s.name: [d.step_name for d in s.dependencies if d.step_name in index] for s in spec.steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    seen_cycles: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> Iterator[Problem]:
        state[name] = 1
        path.append(name)
        for dep in graph[name]:
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                if frozenset(cycle) not in seen_cycles:
                    seen_cycles.add(frozenset(cycle))
                    yield Problem(
                        f"steps[{index[dep]}].dependencies",
                        f"dependency cycle: {' -> '.join(reversed(cycle))}",
                    )
            elif dep not in state:
                yield from visit(dep, path)
        path.pop()
        state[name] = 2

    for step in spec.steps:
        if step.name not in state:
            yield from visit(step.name, [])


def _gates(spec: LoopSpec) -> Iterator[Problem]:
    gates = [g.name for g in spec.policy.verification_gates]
    for i, gate in enumerate(spec.policy.verification_gates):
        here = f"policy.verification_gates[{i}]"
        pure = list(gatetypes.configured(gate))
        kinds = [t.key for t, _ in pure] + [
            k
            for k, on in (
                ("command", gate.command is not None),
                ("approval", gate.approval),
                ("judge", gate.judge is not None),
            )
            if on
        ]
        if len(kinds) != 1:
            found = f" (has {', '.join(kinds)})" if kinds else ""
            yield Problem(here, f"a gate needs exactly one of {_gate_kinds()}{found}")
        for gate_type, config in pure:
            for message in gate_type.problems(config):
                yield Problem(f"{here}.{gate_type.key}", message)
        if gate.command is not None and not gate.command:
            yield Problem(f"{here}.command", "empty command: give an argv list such as ['pytest', '-q']")
    agents = [a.name for a in spec.agents]
    judges = {g.name: (i, g.judge) for i, g in enumerate(spec.policy.verification_gates) if g.judge}
    for i, judge in judges.values():
        if judge.agent not in agents:
            yield Problem(
                f"policy.verification_gates[{i}].judge.agent",
                f"unknown agent '{judge.agent}' ({_names('agents', agents)})",
            )
    for i, step in enumerate(spec.steps):
        for j, name in enumerate(step.verification_gates):
            if name not in gates:
                yield Problem(
                    f"steps[{i}].verification_gates[{j}]",
                    f"unknown gate '{name}' ({_names('gates in policy.verification_gates', gates)})",
                )
            elif name in judges and step.agent is not None and judges[name][1].agent == step.agent:
                others = [a for a in agents if a != step.agent]
                yield Problem(
                    f"policy.verification_gates[{judges[name][0]}].judge.agent",
                    f"gate '{name}' judges step '{step.name}', whose agent is '{step.agent}': the agent under "
                    f"judgement cannot judge itself; name another role ({_names('other agents', others)})",
                )


def _gate_kinds() -> str:
    """'condition', 'command', 'approval: true', 'loop_spec' or 'judge', then the gate types from plugins."""
    builtin = ["'condition'", "'command'", "'approval: true'", "'loop_spec'", "'judge'"]
    names = builtin + [f"'{k}'" for k in gatetypes.registered_keys() if k not in gatetypes.BUILTIN_KEYS]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _condition(where: str, expression: Any, names: tuple[str, ...]) -> Iterator[Problem]:
    """A condition must be evaluable: JMESPath or a sandboxed Python-style expression (expressions.py)."""
    if not isinstance(expression, str) or not expression.strip():
        yield Problem(where, f"expected a JMESPath expression (text), got {_short(expression)}")
        return
    for message in condition_problems(expression, names):
        yield Problem(where, message)


def _schemas(spec: LoopSpec) -> Iterator[Problem]:
    found: list[tuple[str, Any]] = []
    for i, step in enumerate(spec.steps):
        found.append((f"steps[{i}].output_schema", step.output_schema))
    for i, agent in enumerate(spec.agents):
        found += [
            (f"agents[{i}].output_schema", agent.output_schema),
            (f"agents[{i}].input_schema", agent.input_schema),
        ]
    for i, tool in enumerate(spec.tools):
        found.append((f"tools[{i}].schema_def", tool.schema_def))
    if spec.output_schema is not None:
        found.append(("output_schema.schema_def", spec.output_schema.schema_def))
    if not any(schema is not None for _, schema in found):
        return
    import jsonschema  # ~50 ms to import: only for a spec that has a schema to check

    for where, schema in found:
        if schema is None:
            continue
        # validator_for looks `$schema` up in a dict: a list would raise TypeError, a number AttributeError.
        # Any other non-text value is checked against the latest draft, which reports it as not a string.
        text_meta = isinstance(schema.get("$schema", ""), str)
        cls = (
            jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            if text_meta
            else jsonschema.Draft202012Validator
        )
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            at = ".".join(str(p) for p in exc.path)
            yield Problem(where, f"not a valid JSON Schema: {exc.message}" + (f" (at {at})" if at else ""))


def _placeholders(spec: LoopSpec) -> Iterator[Problem]:
    known = set(BUILTIN_VARIABLES) | set(spec.context) | {i.name for i in spec.inputs}
    steps = [s.name for s in spec.steps]
    texts = [(f"steps[{i}].prompt_template", s.prompt_template) for i, s in enumerate(spec.steps)]
    texts += [(f"agents[{i}].system_prompt", a.system_prompt) for i, a in enumerate(spec.agents)]
    for where, text in texts:
        for path in placeholders(text or ""):
            head, _, rest = path.partition(".")
            if head not in known:
                hint = _suggest(head, sorted(known))
                yield Problem(
                    where,
                    f"placeholder {{{path}}} cannot be filled ({hint}built-ins: {', '.join(BUILTIN_VARIABLES)}; "
                    f"context keys: {', '.join(spec.context) or 'none'}; inputs: "
                    f"{', '.join(i.name for i in spec.inputs) or 'none'})",
                )
            elif head == "steps" and head not in spec.context:
                name = rest.split(".")[0]
                if not rest or name not in steps:
                    yield Problem(
                        where,
                        f"placeholder {{{path}}}: use steps.<name>.output with a step name ({_names('steps', steps)})",
                    )


def _stop_conditions(spec: LoopSpec) -> Iterator[Problem]:
    for i, cond in enumerate(spec.stop_conditions):
        where = f"stop_conditions[{i}].value"
        value = cond.value
        if cond.condition_type in ("goal_met", "custom"):
            if cond.expression is not None and value is not None:
                yield Problem(
                    f"stop_conditions[{i}]",
                    f"{cond.condition_type}: give the expression once, in 'value' or in 'expression'",
                )
            elif cond.expression is not None:
                yield from _condition(f"stop_conditions[{i}].expression", cond.expression, STOP_NAMES)
            else:
                yield from _condition(where, value, STOP_NAMES)
        elif cond.expression is not None:
            yield Problem(
                f"stop_conditions[{i}].expression",
                f"only goal_met and custom take an expression (this is {cond.condition_type})",
            )
        elif cond.condition_type == "quality_threshold":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                yield Problem(where, f"quality_threshold needs a number from 0 to 1, got {_short(value)}")
        elif cond.condition_type == "max_turns":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                yield Problem(where, f"max_turns needs a whole number of at least 1, got {_short(value)}")
        elif cond.condition_type == "timeout" and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            yield Problem(where, f"timeout needs a number of seconds above 0, got {_short(value)}")


def _pattern_rules(spec: LoopSpec) -> Iterator[Problem]:
    steps = spec.steps
    agent_steps = [s for s in steps if s.agent is not None]
    if spec.pattern == "evaluator_optimizer":
        if len(steps) != 2 or len(agent_steps) != 2:
            yield Problem(
                "steps",
                "evaluator_optimizer needs exactly two agent steps: steps[0] evaluates, steps[1] optimizes "
                f"(found {len(agent_steps)} agent steps of {len(steps)})",
            )
    elif spec.pattern == "supervisor_worker":
        if steps[0].agent is None:
            yield Problem(
                "steps[0]", "supervisor_worker: steps[0] is the supervisor and must be an agent step"
            )
        if len(steps) < 2:
            yield Problem(
                "steps", "supervisor_worker needs workers: steps after steps[0] that the supervisor picks"
            )
    elif spec.pattern == "custom" and steps[0].dependencies:
        yield Problem(
            "steps[0].dependencies", "custom: the run starts at steps[0], which cannot wait on others"
        )


def summary(spec: LoopSpec) -> str:
    """One line for a valid spec: its name, pattern and how many steps, agents and gates it has."""
    counts = (
        (len(spec.steps), "step"),
        (len(spec.agents), "agent"),
        (len(spec.policy.verification_gates), "gate"),
    )
    return (
        f"valid: loop '{spec.name}' ({spec.pattern}, "
        + ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts)
        + ")"
    )
