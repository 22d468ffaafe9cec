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
`loopengt_core.transcripts`). A transcript that cannot be read is a note on stderr, never a block.

Apart from those events, the hook only reads the store; the other files it writes are its own under
`<store>/hooks/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from loopengt_core.transcripts import TranscriptClient, transcript_key
from loopengt_server.clients.records import (
    ClientRecord,
    HookKind,
    all_records,
    detect,
    hook_client_names,
    record,
)
from loopengt_server.run_context import RunNow, context_text, continuation, live_runs, read_run

if TYPE_CHECKING:
    from loopengt_core.reading import RunReader

DEFAULT_MAX_LOOPS = 5
# whose transcripts loopengt reads usage from, by client name
TRANSCRIPT_CLIENTS: dict[str, TranscriptClient] = {"claude-code": "claude-code", "codex": "codex"}
ADOPTION_IDLE_SECONDS = 15 * 60
STORE_DIRNAME = ".loopengt"
STATE_DIRNAME = "hooks"
STATE_MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


class HookSkip(Exception):
    """Let the agent go, with this note on stderr."""


@dataclass(frozen=True)
class Payload:
    client: ClientRecord
    kind: HookKind
    session: str | None
    places: tuple[Path, ...]  # where to look for the store, best first
    again: bool  # a stop hook already continued this stop cycle
    loop_count: int
    status: str | None
    transcript: Path | None = None  # the session's transcript, where the payload names one


@dataclass(frozen=True)
class Verdict:
    """`text` set: the block reason or the context. None: let the agent go (with `note` on stderr, if any)."""

    text: str | None = None
    note: str | None = None


# --- the payload ----------------------------------------------------------------------------------------


def parse_payload(
    raw: bytes, kind: HookKind, *, client: str | None = None, environ: dict[str, str] | None = None
) -> Payload:
    """Read a hook's stdin: which client, session, project folders and transcript it names.

    Raises:
        HookSkip: not a payload this hook answers (too large, not JSON, another event or client); the
            hook lets the agent go.
    """
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise HookSkip(f"the payload is over {MAX_PAYLOAD_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # Cursor may start its payload with a byte-order mark
    except (UnicodeDecodeError, ValueError) as exc:
        raise HookSkip(f"stdin is not a JSON hook payload ({exc})") from None
    if not isinstance(data, dict):
        raise HookSkip("stdin is not a JSON object")
    rec = record(client) if client else detect(data)
    if rec is None or rec.protocol is None:
        event = data.get("hook_event_name", data.get("hookEventName"))
        raise HookSkip(f"not a hook payload of a known client (event {event!r}); pass --client to say which")
    proto = rec.protocol
    found = proto.kind_of(data)
    if found is None:
        raise HookSkip(f"not a {rec.title} hook payload ({proto.event_key} is {data.get(proto.event_key)!r})")
    if found != kind:
        event = data.get(proto.event_key)
        raise HookSkip(
            f"a {event!r} payload of {rec.title} is for `loopengt hook {found}`, not `hook {kind}`"
        )
    env = os.environ if environ is None else environ
    places: list[Path] = []
    for key in proto.place_keys:
        value = data.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item:
                places.append(Path(item))
    if env.get("CLAUDE_PROJECT_DIR"):
        places.append(Path(env["CLAUDE_PROJECT_DIR"]))
    places.append(Path.cwd())
    session = next((data[k] for k in proto.session_keys if isinstance(data.get(k), str) and data[k]), None)
    loop_count = data.get(proto.loop_count_key) if proto.loop_count_key else 0
    if not isinstance(loop_count, int) or isinstance(loop_count, bool):
        loop_count = 0
    status = data.get(proto.status_key) if proto.status_key else None
    again = data.get(proto.again_key) is True if proto.again_key else loop_count > 0
    transcript = data.get("transcript_path")
    return Payload(
        client=rec,
        kind=kind,
        session=session,
        places=tuple(dict.fromkeys(places)),
        again=again,
        loop_count=loop_count,
        status=status if isinstance(status, str) else None,
        transcript=Path(transcript) if isinstance(transcript, str) and transcript else None,
    )


# --- the store ------------------------------------------------------------------------------------------


def find_store(places: tuple[Path, ...], store: str | None) -> tuple[str, Path] | None:
    """The store to read and its base directory, or None when there is none (nothing to continue)."""
    base = next((p for p in places if p.is_dir()), Path.cwd())
    if store is not None and store.startswith(("postgresql://", "postgres://")):
        return store, base
    if store is not None:
        path = Path(store).expanduser()
        path = path if path.is_absolute() else base / path
        if not (path / "runs").is_dir():
            raise HookSkip(f"no loopengt store at {path}")
        return str(path), base
    for place in places:
        if not place.is_dir():
            continue
        for folder in (place.resolve(), *place.resolve().parents):
            if (folder / STORE_DIRNAME / "runs").is_dir():
                return str(folder / STORE_DIRNAME), folder
            if (folder / ".git").exists():
                break  # the repository's root: a store above it belongs to something else
    return None


def _live(location: str) -> list[RunNow]:
    from loopengt_core.reading import RunReader
    from loopengt_core.store import open_store

    reader = RunReader(open_store(location))
    try:
        return live_runs(reader)
    finally:
        reader.close()


# --- the hook's own state files ---------------------------------------------------------------------------


def _state_dir(location: str, base: Path) -> Path:
    root = (
        Path(location) if not location.startswith(("postgresql://", "postgres://")) else base / STORE_DIRNAME
    )
    return root / STATE_DIRNAME


def _key(text: str) -> str:
    return (
        text if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) else hashlib.sha256(text.encode()).hexdigest()[:32]
    )


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_state(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temp, path)
    cutoff = time.time() - STATE_MAX_AGE_SECONDS
    for old in path.parent.glob("*.json"):  # forget sessions nobody has stopped in for a week
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass


def _driven_elsewhere(folder: Path, run: RunNow, who: str, now: float) -> bool:
    """Another session adopted this run and stopped within ADOPTION_IDLE_SECONDS."""
    bound = _read_state(folder / f"run-{_key(run.state.run_id)}.json")
    if bound is None or bound.get("session") == who:
        return False
    seen = bound.get("seen")
    return isinstance(seen, (int, float)) and now - seen < ADOPTION_IDLE_SECONDS


# --- usage from the transcript ----------------------------------------------------------------------------


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
    from loopengt_core.runs import Runs
    from loopengt_core.store import open_store

    try:
        size = payload.transcript.stat().st_size
    except FileNotFoundError:
        return 0  # not written (yet): nothing to read, the usage stays unknown
    runs = Runs(open_store(location), cwd=base)
    try:
        run_id = _usage_run(runs.reader, _state_dir(location, base), payload.session)
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
        if (data := _read_state(path)) is not None and data.get("session") == who
    ]
    for _seen, key in sorted(bound, reverse=True):
        if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key) and reader.exists(key):
            return key
    now = time.time()
    live = [r for r in live_runs(reader) if not _driven_elsewhere(folder, r, who, now)]
    return live[0].state.run_id if live else None


# --- the decisions ----------------------------------------------------------------------------------------


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
    runs = [r for r in _live(location) if r.driveable]
    if not runs:
        return Verdict()
    if payload.session is None:
        return Verdict(
            note="no session id in the payload: a loop that cannot tell sessions apart would hold them all"
        )
    folder, now = _state_dir(location, base), time.time()
    who = payload.session  # not the client: Codex's SessionStart looks like Claude Code's
    run = next((r for r in runs if not _driven_elsewhere(folder, r, who, now)), None)
    if run is None:
        return Verdict()  # every live run is driven by another session
    mark = f"{run.state.run_id}:{run.state.turn}:{','.join(sorted(run.state.tasks))}"
    path = folder / f"{payload.client.name}-{_key(payload.session)}.json"
    blocks = 1
    if payload.again:
        last = _read_state(path)
        if last is not None and last.get("mark") == mark:
            return Verdict()  # nothing happened since the last answer: the agent is stuck, let it stop
        previous = last.get("blocks", 0) if last is not None else 0
        blocks = (previous if isinstance(previous, int) else 0) + 1
        if blocks > max_loops:
            return Verdict()
    try:
        _write_state(path, {"mark": mark, "blocks": blocks, "run_id": run.state.run_id})
        _write_state(folder / f"run-{_key(run.state.run_id)}.json", {"session": who, "seen": now})
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
    runs = [r for r in _live(location) if r.state.status in ("running", "waiting_approval")]
    if not runs:
        return Verdict()
    who = payload.session or ""
    folder = _state_dir(location, base)
    # this session's own run first (a compaction, a resume), else the newest
    mine = [
        r
        for r in runs
        if (_read_state(folder / f"run-{_key(r.state.run_id)}.json") or {}).get("session") == who
    ]
    return Verdict(text=context_text((mine or runs)[0]))


# --- the command ------------------------------------------------------------------------------------------


def answer(rec: ClientRecord | None, kind: HookKind, text: str | None) -> str:
    """The stdout of the hook: the client's JSON that continues (or adds context), or what lets it go."""
    if rec is None or rec.protocol is None:
        return ""
    proto = rec.protocol
    if text:
        return json.dumps(proto.stop_answer(text) if kind == "stop" else proto.session_answer(text))
    return "" if proto.allow_answer is None else json.dumps(proto.allow_answer)


def _redact(text: str) -> str:
    """No password of a postgresql:// URL on stderr."""
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)


def run_hook(
    kind: HookKind,
    stdin: IO[bytes],
    stdout: IO[str],
    stderr: IO[str],
    *,
    client: str | None = None,
    store: str | None = None,
    max_loops: int = DEFAULT_MAX_LOOPS,
) -> int:
    """Read the payload, answer on stdout. Always exit 0: a hook that fails must not trap the agent."""
    rec: ClientRecord | None = None
    verdict = Verdict()
    try:
        if client is not None:
            rec = next((r for r in all_records() if r.name == client), None)
            if rec is None or rec.protocol is None:
                raise HookSkip(
                    f"--client {client!r} has no hooks; use one of {', '.join(hook_client_names())}"
                )
        if stdin.isatty():
            raise HookSkip("reads a hook payload (JSON) on stdin; see `loopengt init --hooks`")
        payload = parse_payload(stdin.read(MAX_PAYLOAD_BYTES + 1), kind, client=client)
        rec = payload.client
        try:
            read_usage(payload, store=store)
        except Exception as exc:  # noqa: BLE001 - usage is a record, never a reason to trap or block the agent
            message = _redact(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
            stderr.write(f"loopengt hook {kind}: usage not read from the transcript ({message})\n")
        if kind == "stop":
            verdict = decide_stop(payload, store=store, max_loops=max(0, max_loops))
        else:
            verdict = decide_session(payload, store=store)
    except HookSkip as exc:
        verdict = Verdict(note=str(exc))
    except Exception as exc:  # noqa: BLE001 - a broken store, a permission problem, anything: let the agent go
        message = _redact(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        verdict = Verdict(
            note=f"could not read the loopengt store ({type(exc).__name__}: {message}); letting the agent go"
        )
    if verdict.note:
        stderr.write(f"loopengt hook {kind}: {verdict.note}\n")
        stderr.flush()
    text = answer(rec, kind, verdict.text)
    if text:
        stdout.write(text + "\n")
        stdout.flush()
    return 0


def run_stop_hook(
    stdin: IO[bytes],
    stdout: IO[str],
    stderr: IO[str],
    *,
    store: str | None = None,
    max_loops: int = DEFAULT_MAX_LOOPS,
) -> int:
    """`loopengt hook stop` (the client told by the payload's shape)."""
    return run_hook("stop", stdin, stdout, stderr, store=store, max_loops=max_loops)
