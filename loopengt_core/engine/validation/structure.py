"""Checking a spec's structure with the pydantic models. When that fails, the offending parts are set
aside and the rest is checked too, so a spec with five mistakes gets five lines back, not one."""

from __future__ import annotations

import copy
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from loopengt_core.engine.validation.problems import Problem, kind_of, short, suggest
from loopengt_core.engine.validation.semantics import check_semantics
from loopengt_core.model import gatetypes
from loopengt_core.model.spec import Gate, LoopSpec


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
            location(loc), f"unknown key '{key}' ({suggest(key, allowed)}allowed: {', '.join(allowed)})"
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
        hint = suggest(value, allowed) if isinstance(value, str) and quote else ""
        shown = short(value) if quote else "this value"
        return Problem(location(loc), f"{shown} is not allowed ({hint}allowed: {', '.join(allowed)})")
    message = err["msg"].removeprefix("Value error, ")
    if not quote:  # a validator's own message may quote the value: only pydantic's generic ones are kept
        generic = message if kind != "value_error" else "not a valid value here"
        return Problem(location(loc), f"{generic} (got {kind_of(err.get('input'))})")
    return Problem(location(loc), f"{message} (got {short(err.get('input'))})")


def _unknown_gate_key(key: str, fields: list[str]) -> str:
    """A key a gate does not have: a typo, or a gate type whose plugin is not installed."""
    plugins = [k for k in gatetypes.registered_keys() if k not in fields]
    allowed = ", ".join(fields) + (f"; gate types from plugins: {', '.join(plugins)}" if plugins else "")
    hint = suggest(key, fields + plugins)
    missing = "" if hint else f"; no installed plugin provides a gate type '{key}'"
    return f"unknown key '{key}' ({hint}allowed: {allowed}{missing})"


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
