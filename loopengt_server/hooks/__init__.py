"""`loopengt hook stop` and `loopengt hook session`: keep an editor's agent on a loopengt run.

Each client runs the hook with a JSON payload on stdin; its record (`clients/records.py`) says how to tell
the client by the payload's shape (or `--client`), where the session id and project folder are, and how to
answer. An unknown payload, a payload of another event, a broken store: the hook lets the agent go (exit 0,
nothing on stdout but the client's "go on" answer, one line on stderr), never a traceback.

stop: while a run in the project's store is running with open agent tasks and turns left, the answer is
the run's next action and open tasks (Claude Code and Codex `decision: block`, VS Code the same inside
`hookSpecificOutput`, Cursor `followup_message`). Guards, from the Ralph-loop plugin's bug reports:

- no session id in the payload: never continue (an unguarded hook traps every session in the project);
- a run is driven by one session: the first session the hook continues adopts it (`<store>/hooks/
  run-<id>.json`); another session is not held on that run until the driving one has not stopped for
  `ADOPTION_IDLE_SECONDS` (it was closed, or left);
- `stop_hook_active` (Claude Code, Codex, VS Code) or Cursor's `loop_count` above 0 mark a chain: in it
  the hook continues only if the run moved since its last answer (`<store>/hooks/<client>-<session>.json`)
  and at most `max_loops` times; Cursor's `loop_count` at `max_loops` always lets it stop, and an aborted
  or failed Cursor turn is never continued;
- no run active (none, waiting for a person, paused, ended, out of turns; `loopengt cancel` ends it at
  once): no block and no message.

session: at SessionStart (after a compaction, on resume, in a new session) the answer puts the live run
back into the agent's context (`run_context.context_text`, at most 2,000 characters); nothing when no run
is live in this project.

usage: where the payload names the session's transcript (`transcript_path`: Claude Code, Codex), both
hooks first record the usage in it since the last read on the run this session drives (the run it
adopted, else the newest live run no other session drives): `Runs.read_transcript` appends `usage_read`
events under the run's lock, attributed to the task each `step` call submitted (see
`loopengt_core.model.transcripts`). A transcript that cannot be read is a note on stderr, never a block.

Apart from those events, the hook only reads the store; the other files it writes are its own under
`<store>/hooks/`.
"""

from loopengt_server.hooks.command import answer, run_hook, run_stop_hook
from loopengt_server.hooks.decide import DEFAULT_MAX_LOOPS, decide_session, decide_stop
from loopengt_server.hooks.guards import ADOPTION_IDLE_SECONDS, find_store
from loopengt_server.hooks.payload import HookSkip, Payload, Verdict, parse_payload
from loopengt_server.hooks.usage import read_usage

__all__ = [
    "ADOPTION_IDLE_SECONDS",
    "DEFAULT_MAX_LOOPS",
    "HookSkip",
    "Payload",
    "Verdict",
    "answer",
    "decide_session",
    "decide_stop",
    "find_store",
    "parse_payload",
    "read_usage",
    "run_hook",
    "run_stop_hook",
]
