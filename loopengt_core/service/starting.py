"""Starting a run: a spec (file, template or inline), its inputs and memory, its first files, its log.

`Runs.start_run` delegates here: the arguments are checked (`loopengt_core.service.inputs`), the spec
parsed and its engine made, the files recorded (`loopengt_core.service.binding`), and the run created in
the store; a run id given twice with the same spec answers with the run that exists.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any

import structlog

from loopengt_core.engine.validation import load_spec
from loopengt_core.engine.view import RunView, run_view
from loopengt_core.model.errors import Conflict, InvalidArgument, StoreConflict
from loopengt_core.model.limits import checked
from loopengt_core.model.state import project_run
from loopengt_core.service import workspace as git
from loopengt_core.service.inputs import has_commands, run_context, slug, spec_text
from loopengt_core.service.loaded import LoadedRun
from loopengt_core.service.memory import check_context_from, read_memory
from loopengt_core.store import check_id

if TYPE_CHECKING:
    from loopengt_core.service.runs import Runs

log = structlog.get_logger("loopengt.runs")


def start_run(
    runs: Runs,
    *,
    spec_path: str | None = None,
    template: str | None = None,
    spec: Any = None,
    inputs: dict[str, Any] | None = None,
    run_id: str | None = None,
    context_from: list[str] | None = None,
) -> RunView:
    """Start a run of a spec file, a built-in template or an inline spec (YAML/JSON text or object).

    `context_from`: earlier runs whose outputs the tasks' input.memory carries, after the spec's own
    `context_from` (see `loopengt_core.service.memory`).
    """
    given = [
        k for k, v in (("spec_path", spec_path), ("template", template), ("spec", spec)) if v is not None
    ]
    if len(given) != 1:
        raise InvalidArgument(
            "give exactly one of spec_path, template or spec"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if inputs is not None and not isinstance(inputs, dict):
        raise InvalidArgument(f"inputs must be an object of names to values (got {type(inputs).__name__})")
    inputs = checked(inputs, "inputs")[0] if inputs is not None else None
    text, source = spec_text(spec_path, template, spec, runs.cwd, runs.confine_paths)
    parsed = load_spec(text, source=source, quote=spec_path is None or not runs.confine_paths)
    if spec is not None and has_commands(parsed) and not runs.allow_inline_commands:
        raise InvalidArgument(
            "an inline spec may not contain command steps ('run') or command gates ('command'): the server "
            "runs those programs. Save the spec to a file and pass spec_path, or start the server with "
            "--allow-inline-commands"
        )
    context = run_context(parsed, inputs or {})
    sources = check_context_from(parsed.context_from + check_context_from(context_from or []))
    spec_hash = hashlib.sha256(text.encode()).hexdigest()[:16]
    if run_id is not None:
        check_id(run_id)
        if runs.store.exists(run_id):
            return existing(runs, run_id, spec_hash)
    new_id = run_id or f"{slug(parsed.name)}-{secrets.token_hex(4)}"
    if new_id in sources:
        raise InvalidArgument(f"context_from names the run being started ({new_id!r})")
    memory = read_memory(sources, lambda source: runs.kernel.read(source).state)
    engine = runs.kernel.engine_of(text, parsed)
    current = runs.binding.start(parsed)
    if current is None and engine.isolated:
        raise git.NotAGitRepository(
            f"No run was started: isolation: worktree (steps {', '.join(sorted(engine.isolated))}) needs "
            f"the run's files in git, but {runs.cwd} is not inside a git work tree (or git is missing); "
            "run `git init` there (or start in the repository), or set isolation: none"
        )
    events = engine.start(
        run_id=new_id,
        now=runs.clock(),
        seed=secrets.randbits(31),
        context=context,
        spec_hash=spec_hash,
        workspace=current.start_record() if current is not None else None,
        memory=memory,
    )
    try:
        runs.store.create_run(new_id, text, events)
    except StoreConflict:
        return existing(runs, new_id, spec_hash)
    state = project_run(events)
    runs.kernel.keep(new_id, LoadedRun(state, engine, text))
    if runs.tracer is not None:
        runs.tracer.record(runs.store, new_id, state, events)
    log.info("run_started", run_id=new_id, loop=parsed.name)
    return runs.pump_and_view(new_id, current)


def existing(runs: Runs, run_id: str, spec_hash: str) -> RunView:
    """The run `run_id` asked for again with the same spec (its view), else Conflict."""
    run = runs.kernel.read(run_id)
    if run.state.spec_hash != spec_hash:
        raise Conflict(
            f"run '{run_id}' exists with a different spec; choose another run_id or omit it",
            run_id=run_id,
        )
    return run_view(run.state)
