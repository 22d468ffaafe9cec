"""The hooks' decisions: whether the stop hook continues the agent on a live run (the guards are in
`loopengt_server.hooks`), and what the session hook puts back in the agent's context."""

from __future__ import annotations

import time

from loopengt_server.hooks.guards import (
    driven_elsewhere,
    find_store,
    live_runs_in,
    read_state,
    state_dir,
    state_key,
    write_state,
)
from loopengt_server.hooks.payload import Payload, Verdict
from loopengt_server.mcp.run_context import context_text, continuation

DEFAULT_MAX_LOOPS = 5


def decide_stop(payload: Payload, *, store: str | None = None, max_loops: int = DEFAULT_MAX_LOOPS) -> Verdict:
    """The stop hook's answer: continue the agent on the project's live run (its next action and open tasks),
    or let it stop. The guards are in the module docstring."""
    if payload.status not in (None, "completed"):
        return Verdict()  # the person aborted the turn, or it failed: never push on
    if (
        payload.client.protocol is not None
        and payload.client.protocol.loop_count_key
        and payload.loop_count >= max_loops
    ):
        return Verdict()
    found = find_store(payload.places, store)
    if found is None:
        return Verdict()
    location, base = found
    runs = [r for r in live_runs_in(location) if r.driveable]
    if not runs:
        return Verdict()
    if payload.session is None:
        return Verdict(
            note="no session id in the payload: a loop that cannot tell sessions apart would hold them all"
        )
    folder, now = state_dir(location, base), time.time()
    who = payload.session  # not the client: Codex's SessionStart looks like Claude Code's
    run = next((r for r in runs if not driven_elsewhere(folder, r, who, now)), None)
    if run is None:
        return Verdict()  # every live run is driven by another session
    mark = f"{run.state.run_id}:{run.state.turn}:{','.join(sorted(run.state.tasks))}"
    path = folder / f"{payload.client.name}-{state_key(payload.session)}.json"
    blocks = 1
    if payload.again:
        last = read_state(path)
        if last is not None and last.get("mark") == mark:
            return Verdict()  # nothing happened since the last answer: the agent is stuck, let it stop
        previous = last.get("blocks", 0) if last is not None else 0
        blocks = (previous if isinstance(previous, int) else 0) + 1
        if blocks > max_loops:
            return Verdict()
    try:
        write_state(path, {"mark": mark, "blocks": blocks, "run_id": run.state.run_id})
        write_state(folder / f"run-{state_key(run.state.run_id)}.json", {"session": who, "seen": now})
    except OSError as exc:
        return Verdict(note=f"cannot record the loop guard ({exc}); letting the agent stop")
    return Verdict(text=continuation(run))


def decide_session(payload: Payload, *, store: str | None = None) -> Verdict:
    """The session hook's answer: the live run this session drives (or may adopt) back in the agent's context;
    nothing without one."""
    found = find_store(payload.places, store)
    if found is None:
        return Verdict()
    location, base = found
    runs = [r for r in live_runs_in(location) if r.state.status in ("running", "waiting_approval")]
    if not runs:
        return Verdict()
    who = payload.session or ""
    folder = state_dir(location, base)
    # this session's own run first (a compaction, a resume), else the newest
    mine = [
        r
        for r in runs
        if (read_state(folder / f"run-{state_key(r.state.run_id)}.json") or {}).get("session") == who
    ]
    return Verdict(text=context_text((mine or runs)[0]))
