"""The `loop_spec` gate: an output that holds a drafted loop spec must validate (and, with `dry_run`,
complete a dry run). Pure, like the condition gates: the same output always gets the same verdict, so
replaying a run never needs it again (its result is in the log).

Its feedback lists every validation problem with its location, the way `validate_spec` reports them,
so that an agent drafting a spec fixes them all in one attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from loopengt_core.engine.validation import Problem, SpecError, spec_data, validate_data
from loopengt_core.model.spec import LoopSpec, SpecCheck
from loopengt_core.model.state import GateResult

if TYPE_CHECKING:
    from loopengt_core.model.gatetypes import GateContext

MAX_PROBLEMS_SHOWN = 30


def drafted_spec(check: SpecCheck, output: Any) -> tuple[LoopSpec | None, list[Problem]]:
    """The spec in `output[check.field]` and every problem with it (locations as `validate_spec` gives)."""
    value = output.get(check.field) if isinstance(output, dict) else None
    if value is None:
        kind = "an object" if isinstance(output, dict) else f"not an object ({type(output).__name__})"
        return None, [
            Problem(
                f"output.{check.field}", f"missing: submit the drafted loop.yaml there (the output is {kind})"
            )
        ]
    try:
        data = spec_data(value)
    except SpecError as exc:
        return None, exc.problems
    return validate_data(data)


def problems_text(problems: list[Problem], where: str) -> str:
    """Every problem on a line of its own; the first line names the first (a failed run's reason is the
    first line of its last feedback)."""
    shown = "\n".join(f"- {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
    more = (
        f"\n- (and {len(problems) - MAX_PROBLEMS_SHOWN} more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
    )
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    first = f" (the first: {problems[0]})" if problems else ""
    head = f"the drafted spec ({where}) has {count}{first}; fix every one and submit the whole spec again:"
    return f"{head}\n{shown}{more}"


def spec_gate(name: str, check: SpecCheck, output: Any) -> GateResult:
    """Pass when the drafted spec validates and, with `dry_run`, its dry run completes."""
    spec, problems = drafted_spec(check, output)
    where = f"output.{check.field}"
    if spec is None or problems:
        if check.dry_run:
            text = f"no dry run: the drafted spec ({where}) does not validate yet ({len(problems)} problems)"
            return GateResult(name=name, passed=False, feedback=text)
        return GateResult(name=name, passed=False, feedback=problems_text(problems, where))
    if not check.dry_run:
        return GateResult(name=name, passed=True)
    from loopengt_core.engine.dryrun import (
        dry_run,  # the dry run drives an Engine, and the engine calls this gate
    )

    ended = dry_run(spec)
    if ended.completed:
        return GateResult(name=name, passed=True, feedback=ended.text())
    return GateResult(
        name=name,
        passed=False,
        feedback=f"the drafted spec ({where}) validates, but {ended.text()}. Change the flow so that it can "
        "complete (the dry run answers each task with an output built from its output_schema and counts "
        "commands and gates as passing).",
    )


class SpecGate:
    """`loop_spec: {field, dry_run}`: the built-in gate type over a drafted loop spec."""

    key = "loop_spec"
    config = SpecCheck

    def check(self, config: SpecCheck, output: Any, context: GateContext) -> GateResult:
        """Validate the loop spec the output carries."""
        return spec_gate(context.gate, config, output)

    def problems(self, config: SpecCheck) -> Iterator[str]:
        """None: the gate's configuration is fully checked by its model."""
        return iter(())


LOOP_SPEC = SpecGate()
