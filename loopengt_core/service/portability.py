"""Moving a run between stores (file <-> PostgreSQL, machine to machine) as one JSON document.

The format, version 1:

    {"format": "loopengt-run", "version": 1, "run_id": "...", "spec": "<the frozen spec text>",
     "events": [{"seq", "type", "at", "data"}, ...],
     "checkpoints": [{"checkpoint_id", "seq", "label", "created_at", "state"}, ...],
     "exported_at": "...", "loopengt_version": "..."}

The spec travels as the exact text the run froze (its hash is in `run_started`), events as the trace
resource shows them. Readers ignore keys they do not know, so version 1 can grow optional fields; a
change that old readers would misread bumps `version`, and this reader refuses a newer one.

Importing folds the whole log before writing anything, so a damaged or hand-edited file is refused
instead of becoming a run that cannot load. The run is created in one call (atomic in both stores),
then its checkpoints and a snapshot are added; if those fail, the new run is removed again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopengt_core.engine.validation import load_spec
from loopengt_core.model.errors import Conflict, InvalidArgument, LoopengtError
from loopengt_core.model.events import AnyEvent, EventRecord, RunForked, RunStarted, iso, to_record
from loopengt_core.model.state import RunState, apply
from loopengt_core.store import Checkpoint, Store, check_id

FORMAT: Final = "loopengt-run"
FORMAT_VERSION: Final = 1


class CheckpointRecord(BaseModel):
    """A checkpoint as an export carries it: the run's state at one seq, so forks work after an import."""

    model_config = ConfigDict(extra="ignore")

    checkpoint_id: str = Field(description="The checkpoint's id in its run (`cp-<n>`).")
    seq: int = Field(ge=0, description="The seq of the last event the checkpoint includes.")
    label: str | None = Field(None, description="The label it was taken with; None without one.")
    created_at: str = Field(description="When it was taken, ISO 8601 UTC.")
    state: dict[str, Any] = Field(
        description="The run's state at `seq`, as the store keeps it (a fork starts from it).",
    )


class RunExport(BaseModel):
    """One run as a portable document (see the module docstring)."""

    model_config = ConfigDict(extra="ignore")

    format: Literal["loopengt-run"] = Field(
        "loopengt-run",
        description="Names the document: always `loopengt-run`.",
    )
    version: Literal[1] = Field(
        1,
        description="The document format's version (1); an importer refuses others.",
    )
    run_id: str = Field(description="The exported run's id (the import keeps it unless given another).")
    spec: str = Field(description="The loop spec's text the run follows, as it was stored.")
    events: list[EventRecord] = Field(description="The run's whole event log, in seq order, as stored.")
    checkpoints: list[CheckpointRecord] = Field(
        default_factory=list,
        description="The run's checkpoints, so a fork from them works after an import.",
    )
    exported_at: str | None = Field(None, description="When it was exported, ISO 8601 UTC.")
    loopengt_version: str | None = Field(None, description="The loopengt version that exported it.")

    def to_json(self) -> str:
        """Compact JSON (outputs can be large), one line ending in a newline."""
        return _compact(self.model_dump(mode="json")) + "\n"


@dataclass(frozen=True)
class Imported:
    run_id: str
    status: str
    events: int
    checkpoints: int


def _version() -> str | None:
    try:
        return metadata.version("loopengt")
    except metadata.PackageNotFoundError:
        return None


def export_run(store: Store, run_id: str, *, now: datetime | None = None) -> RunExport:
    """The run's spec, whole log and checkpoints, in memory (`write_export` streams the same document).

    Checkpoints are read before the log: one is saved after its `checkpoint_taken` event, so every
    checkpoint read then points inside the log read next, even while the run goes on.

    Raises:
        NotFound: no such run.
    """
    check_id(run_id)
    points = store.list_checkpoints(run_id)
    spec_text = store.load(run_id).spec_text
    events = store.events(run_id)
    return RunExport(
        run_id=run_id,
        spec=spec_text,
        events=events,
        checkpoints=[_record(p) for p in points],
        exported_at=iso(now or datetime.now(UTC)),
        loopengt_version=_version(),
    )


EXPORT_PAGE = 200  # events read from the store at a time while writing an export


def write_export(
    store: Store, run_id: str, write: Callable[[str], object], *, now: datetime | None = None
) -> int:
    """`export_run(...).to_json()`, byte for byte, handed to `write` piece by piece: the log is read a
    page at a time, so memory follows a page and not the run (a 100,000-step run exports in little
    memory). Returns the bytes written (UTF-8).

    Raises:
        NotFound: no such run.
    """
    check_id(run_id)
    points = store.list_checkpoints(run_id)  # before the log: see export_run
    spec_text = store.load(run_id).spec_text
    written = 0

    def put(text: str) -> None:
        nonlocal written
        write(text)
        written += len(text.encode())

    put(f'{{"format":"{FORMAT}","version":{FORMAT_VERSION},"run_id":{_compact(run_id)},')
    put(f'"spec":{_compact(spec_text)},"events":[')
    after, sep = 0, ""
    while page := store.events(run_id, after=after, limit=EXPORT_PAGE):
        put(sep + ",".join(_compact(to_record(e)) for e in page))
        after, sep = page[-1].seq, ","
    put('],"checkpoints":[')
    for index, point in enumerate(points):
        put(("," if index else "") + _compact(_record(point).model_dump(mode="json")))
    put(
        f'],"exported_at":{_compact(iso(now or datetime.now(UTC)))},"loopengt_version":{_compact(_version())}}}\n'
    )
    return written


def _compact(value: Any) -> str:
    """JSON as `RunExport.to_json` writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _record(point: Checkpoint) -> CheckpointRecord:
    return CheckpointRecord(
        checkpoint_id=point.checkpoint_id,
        seq=point.seq,
        label=point.label,
        created_at=point.created_at,
        state=point.state,
    )


def read_export(text: str, *, source: str = "the export") -> RunExport:
    """Parse and check the document's shape; the log itself is checked by `import_run`.

    Raises:
        InvalidArgument: not JSON, not a loopengt run export, a newer format version, or malformed.
    """
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{source} is not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise InvalidArgument(
            f"{source} is not a loopengt run export (format {found!r}, expected {FORMAT!r}); "
            "make one with `loopengt export RUN_ID`"
        )
    version = raw.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        raise InvalidArgument(
            f"{source} is a loopengt run export of version {version!r}; this loopengt reads version "
            f"{FORMAT_VERSION}" + ("; upgrade loopengt to import it" if newer else "")
        )
    try:
        return RunExport.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidArgument(
            f"{source}: {where}: {first['msg']} ({exc.error_count()} problem(s) in the document)"
        ) from None


def _renamed(doc: RunExport, new_id: str) -> tuple[list[AnyEvent], list[CheckpointRecord]]:
    """The log and checkpoints with the run's own id replaced (it is in the first event and each state)."""
    events: list[AnyEvent] = list(doc.events)
    if events and isinstance(events[0], RunStarted | RunForked):
        events[0] = events[0].model_copy(update={"run_id": new_id})
    points = [p.model_copy(update={"state": {**p.state, "run_id": new_id}}) for p in doc.checkpoints]
    return events, points


def _fold(
    run_id: str, events: list[AnyEvent], wanted: set[int], source: str
) -> tuple[RunState, dict[int, dict[str, Any]]]:
    """The final state, and the state at each seq in `wanted`; InvalidArgument if the log does not fold."""
    if not events:
        raise InvalidArgument(f"{source}: the run has no events")
    states: dict[int, dict[str, Any]] = {}
    state: RunState | None = None
    try:
        for expected, event in enumerate(events, start=1):
            if event.seq != expected:
                raise InvalidArgument(f"event {expected} has seq {event.seq} (the log must run 1, 2, 3, ...)")
            state = apply(state, event)
            if event.seq in wanted:
                states[event.seq] = state.model_dump(mode="json")
    except (LoopengtError, KeyError, TypeError, ValueError) as exc:
        detail = exc.message if isinstance(exc, LoopengtError) else f"{type(exc).__name__}: {exc}"
        raise InvalidArgument(f"{source}: the events do not fold into a run ({detail})") from None
    assert state is not None
    if state.run_id != run_id:
        raise InvalidArgument(f"{source}: run_id is {run_id!r} but its events belong to {state.run_id!r}")
    return state, states


def import_run(
    store: Store,
    doc: RunExport,
    *,
    as_id: str | None = None,
    source: str = "the export",
    snapshot_every: int | None = None,
) -> Imported:
    """Create the exported run in `store` (under `as_id` if given) with its log, checkpoints and a snapshot.

    Raises:
        InvalidArgument: the document's log, spec or checkpoints are not a consistent run.
        Conflict: the store already has a run with that id.
    """
    check_id(doc.run_id)
    target = doc.run_id if as_id is None else check_id(as_id, "new run id (--as)")
    events, points = (list(doc.events), list(doc.checkpoints)) if as_id is None else _renamed(doc, target)
    every = snapshot_every or store.snapshot_every
    snapshot_seq = len(events) // every * every
    state, states = _fold(target, events, {p.seq for p in points} | {snapshot_seq}, source)
    if state.spec_hash and state.spec_hash != hashlib.sha256(doc.spec.encode()).hexdigest()[:16]:
        raise InvalidArgument(f"{source}: the spec differs from the one the run started with (spec_hash)")
    load_spec(doc.spec, source=f"{source}: spec")
    for point in points:
        check_id(point.checkpoint_id, "checkpoint_id")
        try:
            mine = RunState.model_validate(point.state).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidArgument(
                f"{source}: checkpoint {point.checkpoint_id!r} holds no run state ({exc.errors()[0]['msg']})"
            ) from None
        if states.get(point.seq) != mine:
            raise InvalidArgument(
                f"{source}: checkpoint {point.checkpoint_id!r} (seq {point.seq}) differs from the log"
            )
    if store.exists(target):
        raise Conflict(
            f"run {target!r} already exists in this store; import it under another id with --as NEW_ID, "
            "or remove the existing run first",
            run_id=target,
        )
    store.create_run(target, doc.spec, events)
    try:
        for point in points:
            store.save_checkpoint(
                Checkpoint(target, point.checkpoint_id, point.seq, point.label, point.created_at, point.state)
            )
        if snapshot_seq:
            store.save_snapshot(target, snapshot_seq, states[snapshot_seq])
    except BaseException:
        with suppress(LoopengtError):  # the first error is the one to report
            store.delete_run(target)
        raise
    return Imported(run_id=target, status=state.status, events=len(events), checkpoints=len(points))
