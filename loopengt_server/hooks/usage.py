"""Recording the usage in a session's transcript on the run that session drives, before either hook
answers (`loopengt_core.model.transcripts` reads it; `Runs.read_transcript` appends it under the run's lock)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from loopengt_core.model.transcripts import TranscriptClient, transcript_key
from loopengt_server.hooks.guards import driven_elsewhere, find_store, read_state, state_dir
from loopengt_server.hooks.payload import Payload
from loopengt_server.mcp.run_context import live_runs, read_run

if TYPE_CHECKING:
    from loopengt_core.service.reading import RunReader

# whose transcripts loopengt reads usage from, by client name
TRANSCRIPT_CLIENTS: dict[str, TranscriptClient] = {"claude-code": "claude-code", "codex": "codex"}


def read_usage(payload: Payload, *, store: str | None = None) -> int:
    """Record the usage in the payload's transcript on the run this session drives; the events appended.

    Raises whatever reading the store or the transcript raises: `run_hook` turns it into a note.
    """
    client = TRANSCRIPT_CLIENTS.get(payload.client.name)
    if payload.transcript is None or client is None or payload.session is None:
        return 0
    found = find_store(payload.places, store)
    if found is None:
        return 0
    location, base = found
    from loopengt_core.service.runs import Runs
    from loopengt_core.store import open_store

    try:
        size = payload.transcript.stat().st_size
    except FileNotFoundError:
        return 0  # not written (yet): nothing to read, the usage stays unknown
    runs = Runs(open_store(location), cwd=base)
    try:
        run_id = _usage_run(runs.reader, state_dir(location, base), payload.session)
        if run_id is None:
            return 0
        mark = read_run(runs.reader, run_id).state.transcripts.get(transcript_key(payload.transcript))
        if mark is not None and mark.offset >= size:
            return 0  # nothing new: the run is not touched
        return len(runs.read_transcript(run_id, payload.transcript, client=client))
    finally:
        runs.reader.close()


def _usage_run(reader: RunReader, folder: Path, who: str) -> str | None:
    """The run this session drives (adopted by its stop hook, even if it has ended since), else the newest
    live run no other session drives."""
    bound = [
        (data.get("seen", 0), path.name.removeprefix("run-").removesuffix(".json"))
        for path in folder.glob("run-*.json")
        if (data := read_state(path)) is not None and data.get("session") == who
    ]
    for _seen, key in sorted(bound, reverse=True):
        if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key) and reader.exists(key):
            return key
    now = time.time()
    live = [r for r in live_runs(reader) if not driven_elsewhere(folder, r, who, now)]
    return live[0].state.run_id if live else None
