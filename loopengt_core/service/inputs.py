"""Tool arguments turned into what the service works with: spec text, a run's context, paths, digests.

Kept apart from the transition kernel so that what a client may pass (and the clear errors for what it may
not) is read in one place; nothing here takes a lock or touches the store.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from loopengt_core.engine.validation import spec_data
from loopengt_core.model.errors import InvalidArgument
from loopengt_core.model.spec import LoopSpec
from loopengt_core.service.catalog import template_text
from loopengt_core.service.paths import confine, text_path, worktree_path
from loopengt_core.service.specfiles import read_spec_file

MAX_TASK_ID_CHARS = 200


def digest(output: Any, outcome: str, error: str | None, *, canonical: str | None = None) -> str:
    """Identity of a submission, to recognise the same one sent twice: the SHA-256 of
    `[output, outcome, error]` as compact JSON with sorted keys. `canonical`: the output so encoded
    already (`checked_canonical`), which is not encoded again."""
    if canonical is None:
        canonical = json.dumps(output, sort_keys=True, separators=(",", ":"), default=str)
    rest = json.dumps([outcome, error], separators=(",", ":"), default=str)  # '["success",null]'
    blob = f"[{canonical},{rest[1:]}"
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def slug(name: str) -> str:
    """A run id's readable part, from the loop's name."""
    found = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return found or "run"


def has_commands(spec: LoopSpec) -> bool:
    """Whether the spec makes the server run programs (command steps or command gates)."""
    return any(s.run for s in spec.steps) or any(g.command for g in spec.policy.verification_gates)


def resolve(given: str, cwd: Path) -> Path:
    """`given` with `~` expanded, relative to `cwd` unless absolute."""
    path = Path(given).expanduser()
    return path if path.is_absolute() else cwd / path


def fork_worktree_path(given: Any, cwd: Path, confine_paths: bool) -> Path:
    """Where a fork's worktree goes: a client's only inside the project's worktree folder."""
    if confine_paths:
        return worktree_path(given, cwd)
    try:
        return resolve(text_path(given, "worktree"), cwd)
    except InvalidArgument:
        raise InvalidArgument("worktree must be a directory path (text) that does not exist yet") from None


def spec_file_text(spec_path: Any, cwd: Path, confine_paths: bool) -> str:
    """The text of the spec file at `spec_path` (relative to `cwd`); confined when paths are."""
    if confine_paths:
        return read_spec_file(confine(spec_path, cwd, "spec_path"), root=cwd)
    path = Path(text_path(spec_path, "spec_path"))
    return read_spec_file(path if path.is_absolute() else cwd / path)


def spec_text(
    spec_path: str | None, template: str | None, spec: Any, cwd: Path, confine_paths: bool
) -> tuple[str, str]:
    """The spec's text and where it came from, from exactly one of a file, a template or an inline spec."""
    if spec_path is not None:
        return spec_file_text(spec_path, cwd, confine_paths), spec_path
    if template is not None:
        if not isinstance(template, str):
            raise InvalidArgument("template must be a template name (text)")
        return template_text(template), f"template {template}"
    if isinstance(spec, str):
        return spec, "inline spec"
    if isinstance(spec, dict):  # within the limits before it is dumped: yaml recurses
        return yaml.safe_dump(spec_data(spec), sort_keys=False, allow_unicode=True), "inline spec"
    raise InvalidArgument(f"spec must be YAML/JSON text or an object (got {type(spec).__name__})")


def run_context(spec: LoopSpec, inputs: dict[str, Any]) -> dict[str, Any]:
    """The run's context: the spec's, its inputs' defaults, then the inputs given (required ones checked)."""
    context = dict(spec.context)
    for decl in spec.inputs:
        if decl.name not in inputs and decl.default is not None:
            context[decl.name] = decl.default
    missing = [d.name for d in spec.inputs if d.required and d.name not in inputs and d.default is None]
    if missing:
        raise InvalidArgument(
            f"missing required input{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
            "(pass them in inputs, or --input name=value)"
        )
    context.update(inputs)
    return context
