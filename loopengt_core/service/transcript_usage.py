"""Usage read from a client's transcript (the stop and session hooks' `transcript_path`), recorded once.

Read under the run's lock from the offset its log recorded, so two hooks never count a line twice. The
lines after the last `step` call go to the run's open task only when it has exactly one.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from loopengt_core.engine import Engine
from loopengt_core.model import transcripts
from loopengt_core.model.errors import InvalidArgument
from loopengt_core.model.events import AnyEvent
from loopengt_core.model.state import RunState
from loopengt_core.model.transcripts import TranscriptClient
from loopengt_core.service.kernel import TransitionKernel


def read(
    kernel: TransitionKernel, run_id: str, path: str | Path, *, client: TranscriptClient
) -> list[AnyEvent]:
    """Record the usage in the transcript at `path` since the run last read it; the usage_read events appended."""
    kernel.known(run_id)
    key = transcripts.transcript_key(path)
    recorded: list[AnyEvent] = []

    def decide(engine: Engine, state: RunState, now: datetime) -> list[AnyEvent]:
        mark = state.transcripts.get(key)
        offset = mark.offset if mark is not None else 0
        found = transcripts.segments(
            client,
            read_chunk(path, offset),
            offset,
            run_id=run_id,
            skip_id=mark.last if mark is not None else None,
            known=lambda task_id: task_id in state.tasks or task_id in state.answers,
            open_task=next(iter(state.tasks)) if len(state.tasks) == 1 else None,
        )
        read = engine.record_usage(state, found, client=client, transcript=key, now=now)
        recorded.extend(read)
        return read

    kernel.transition(run_id, decide)
    return recorded


def read_chunk(path: str | Path, offset: int) -> bytes:
    """The whole lines of the transcript from `offset` (at most transcripts.MAX_READ_BYTES of them).

    Raises:
        InvalidArgument: the transcript cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(transcripts.MAX_READ_BYTES)
    except OSError as exc:
        raise InvalidArgument(f"cannot read the transcript {path}: {exc.strerror or exc}") from None
    return data[: data.rfind(b"\n") + 1]
