"""Reading a hook's stdin: which client sent it, its session, project folders and transcript; and the
hook's answer before it is written in the client's format (`Verdict`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from loopengt_server.clients.records import ClientRecord, HookKind, detect, record

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
