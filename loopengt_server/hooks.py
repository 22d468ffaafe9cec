"""`loopengt hook stop`: keep an editor's agent working while a loopengt run has open tasks.

Claude Code runs its `Stop` hook and Cursor its `stop` hook when the agent is about to end its turn,
with a JSON payload on stdin:

- Claude Code: `session_id`, `transcript_path`, `cwd`, `hook_event_name: "Stop"`, `stop_hook_active`
  (true when a stop hook already blocked in this stop cycle). `{"decision": "block", "reason": ...}` on
  stdout keeps the agent going with the reason as its next instruction; no output (exit 0) lets it stop.
- Cursor: `conversation_id`, `hook_event_name: "stop"`, `status` (`completed`, `aborted`, `error`),
  `loop_count` (follow-ups already sent in this chain), `workspace_roots`. `{"followup_message": ...}`
  is sent as the next user message; `{}` lets it stop.

The hook looks for the store (`--store`, else the nearest `.loopengt/` from the payload's directory up to
the repository root) and the most recently updated run that is `running` with open agent tasks and turns
left. If there is one, the answer is the run's `next_action` and the open tasks' instructions. It never
holds the agent back when no run is active, when the run waits for a person (`waiting_approval`), has
ended, or has spent its turns; nor when Cursor reports an aborted or failed turn.

Loop guards: a block counts as a link of a chain when Claude Code says `stop_hook_active` or Cursor's
`loop_count` is above 0. Within a chain the hook blocks again only if the run made progress since its
last block (another turn, other open tasks: recorded in `<store>/hooks/<client>-<session>.json`), and at
most `max_loops` times in a row; Cursor's `loop_count` at or above `max_loops` always lets it stop.

It never fails the agent: an unreadable payload or a broken store lets the stop happen (exit 0) with one
line on stderr, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

DEFAULT_MAX_LOOPS = 5
STORE_DIRNAME = ".loopengt"
STATE_DIRNAME = "hooks"
STATE_MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_TASK_CHARS = 4_000
MAX_REASON_CHARS = 12_000
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

Client = Literal["claude-code", "cursor"]


class HookSkip(Exception):
    """Let the agent stop, with this note on stderr."""


@dataclass(frozen=True)
class StopPayload:
    client: Client
    session: str | None
    places: tuple[Path, ...]  # where to look for the store, best first
    again: bool  # a previous block / follow-up already happened in this stop cycle
    loop_count: int
    status: str | None


@dataclass(frozen=True)
class Verdict:
    """`reason` set: keep the agent working with it. None: let it stop (with `note` on stderr, if any)."""

    reason: str | None = None
    note: str | None = None


# --- the payload ----------------------------------------------------------------------------------------


def parse_payload(raw: bytes, *, environ: dict[str, str] | None = None) -> StopPayload:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise HookSkip(f"the payload is over {MAX_PAYLOAD_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # Cursor may start its payload with a byte-order mark
    except (UnicodeDecodeError, ValueError) as exc:
        raise HookSkip(f"stdin is not a JSON hook payload ({exc})") from None
    if not isinstance(data, dict):
        raise HookSkip("stdin is not a JSON object")
    client = detect_client(data)
    env = os.environ if environ is None else environ
    places: list[Path] = []
    for value in (data.get("cwd"), *_strings(data.get("workspace_roots")), env.get("CLAUDE_PROJECT_DIR")):
        if isinstance(value, str) and value:
            places.append(Path(value))
    places.append(Path.cwd())
    loop_count = data.get("loop_count", 0)
    if not isinstance(loop_count, int) or isinstance(loop_count, bool):
        loop_count = 0
    session = data.get("session_id") if client == "claude-code" else data.get("conversation_id")
    if not isinstance(session, str) or not session:
        session = data.get("session_id") if isinstance(data.get("session_id"), str) else None
    status = data.get("status")
    return StopPayload(
        client=client,
        session=session,
        places=tuple(dict.fromkeys(places)),
        again=data.get("stop_hook_active") is True if client == "claude-code" else loop_count > 0,
        loop_count=loop_count,
        status=status if isinstance(status, str) else None,
    )


def detect_client(data: dict[str, Any]) -> Client:
    """Claude Code sends `hook_event_name: "Stop"` and `stop_hook_active`; Cursor `"stop"`, `status`, `loop_count`."""
    event = data.get("hook_event_name")
    if event == "Stop" or (event is None and "stop_hook_active" in data):
        return "claude-code"
    if event == "stop" or (event is None and ("loop_count" in data or "status" in data)):
        return "cursor"
    raise HookSkip(
        f"not a stop hook payload (hook_event_name {event!r}); only Stop (Claude Code) and stop (Cursor)"
    )


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


# --- the store and the run ------------------------------------------------------------------------------


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


def _active_run(location: str, base: Path) -> tuple[Any, int] | None:
    """(RunView, max_turns) of the most recently updated running run with open tasks and turns left."""
    from loopengt_core.engine import Engine
    from loopengt_core.runs import Runs
    from loopengt_core.store import open_store

    runs = Runs(open_store(location), cwd=base)
    try:
        running = runs.list_runs(status="running", limit=1_000_000)
        for summary in sorted(running, key=lambda s: (s.updated_at, s.run_id), reverse=True):
            view = runs.get_run(summary.run_id)
            if view.status != "running" or not view.tasks:
                continue
            max_turns = Engine(runs.spec_of(view.run_id)).max_turns
            if view.turn >= max_turns:
                continue
            return view, max_turns
        return None
    finally:
        close = getattr(runs.store, "close", None)
        if callable(close):
            close()


def continuation(view: Any, max_turns: int) -> str:
    """What the agent is told to do instead of stopping: the next action and each open task."""
    lines = [
        f"loopengt run '{view.run_id}' ({view.loop}) is still running, turn {view.turn} of at most "
        f"{max_turns}: do not stop yet.",
        f"Next: {view.next_action}",
    ]
    for task in view.tasks:
        text = task.instructions
        if len(text) > MAX_TASK_CHARS:
            text = text[:MAX_TASK_CHARS] + f" [... cut; get_run(run_id='{view.run_id}') has the whole task]"
        lines += [
            "",
            f"Task '{task.task_id}' (step '{task.step}', agent '{task.agent}', attempt {task.attempt}):",
            text,
        ]
        if task.feedback:
            feedback = (
                task.feedback if len(task.feedback) <= MAX_TASK_CHARS else task.feedback[-MAX_TASK_CHARS:]
            )
            lines += ["Feedback from the last attempt:", feedback]
        if task.output_schema:
            lines.append("Output schema: " + json.dumps(task.output_schema, separators=(",", ":")))
    lines += [
        "",
        "If you cannot do a task, submit it with outcome 'failure' and an error that says why.",
    ]
    reason = "\n".join(lines)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + f"\n[... cut; get_run(run_id='{view.run_id}') has the rest]"
    return reason


# --- the loop guard -------------------------------------------------------------------------------------


def _state_path(location: str, base: Path, client: Client, session: str) -> Path:
    folder = (
        Path(location) if not location.startswith(("postgresql://", "postgres://")) else base / STORE_DIRNAME
    )
    key = (
        session
        if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", session)
        else hashlib.sha256(session.encode()).hexdigest()[:32]
    )
    return folder / STATE_DIRNAME / f"{client}-{key}.json"


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


def decide(payload: StopPayload, *, store: str | None = None, max_loops: int = DEFAULT_MAX_LOOPS) -> Verdict:
    if payload.client == "cursor" and payload.status not in (None, "completed"):
        return Verdict()  # the person aborted the turn, or it failed: never push on
    if payload.client == "cursor" and payload.loop_count >= max_loops:
        return Verdict()
    found = find_store(payload.places, store)
    if found is None:
        return Verdict()
    location, base = found
    active = _active_run(location, base)
    if active is None:
        return Verdict()
    view, max_turns = active
    mark = f"{view.run_id}:{view.turn}:{','.join(sorted(t.task_id for t in view.tasks))}"
    if payload.session is None:
        if payload.again:
            return Verdict(note="no session id in the payload to guard the loop with; letting the agent stop")
        return Verdict(reason=continuation(view, max_turns))
    path = _state_path(location, base, payload.client, payload.session)
    blocks = 1
    if payload.again:
        last = _read_state(path)
        if last is not None and last.get("mark") == mark:
            return Verdict()  # nothing happened since the last block: the agent is stuck, let it stop
        previous = last.get("blocks", 0) if last is not None else 0
        blocks = (previous if isinstance(previous, int) else 0) + 1
        if blocks > max_loops:
            return Verdict()
    try:
        _write_state(path, {"mark": mark, "blocks": blocks, "run_id": view.run_id})
    except OSError as exc:
        if payload.again:
            return Verdict(note=f"cannot record the loop guard ({exc}); letting the agent stop")
        return Verdict(reason=continuation(view, max_turns), note=f"cannot record the loop guard ({exc})")
    return Verdict(reason=continuation(view, max_turns))


# --- the command ----------------------------------------------------------------------------------------


def answer(client: Client | None, reason: str | None) -> str:
    """The stdout of the hook: JSON that continues, or what lets the agent stop."""
    if client == "cursor":
        return json.dumps({"followup_message": reason} if reason else {})
    if client == "claude-code" and reason:
        return json.dumps({"decision": "block", "reason": reason})
    return ""


def _redact(text: str) -> str:
    """No password of a postgresql:// URL on stderr."""
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)


def run_stop_hook(
    stdin: IO[bytes],
    stdout: IO[str],
    stderr: IO[str],
    *,
    store: str | None = None,
    max_loops: int = DEFAULT_MAX_LOOPS,
) -> int:
    """Read the payload, answer on stdout. Always exit 0: a hook that fails must not trap the agent."""
    client: Client | None = None
    verdict = Verdict()
    try:
        if stdin.isatty():
            raise HookSkip("reads a hook payload (JSON) on stdin; see `loopengt init --stop-hook`")
        payload = parse_payload(stdin.read(MAX_PAYLOAD_BYTES + 1))
        client = payload.client
        verdict = decide(payload, store=store, max_loops=max(0, max_loops))
    except HookSkip as exc:
        verdict = Verdict(note=str(exc))
    except Exception as exc:  # noqa: BLE001 - a broken store, a permission problem, anything: allow the stop
        message = _redact(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        verdict = Verdict(
            note=f"could not read the loopengt store ({type(exc).__name__}: {message}); letting the agent stop"
        )
    if verdict.note:
        stderr.write(f"loopengt hook stop: {verdict.note}\n")
        stderr.flush()
    text = answer(client, verdict.reason)
    if text:
        stdout.write(text + "\n")
        stdout.flush()
    return 0
