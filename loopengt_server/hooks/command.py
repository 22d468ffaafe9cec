"""The `loopengt hook` command: read the payload, record usage, decide, answer on stdout in the
client's format; always exit 0 (a hook that fails must not trap the agent)."""

from __future__ import annotations

import json
import re
from typing import IO

from loopengt_server.clients.records import ClientRecord, HookKind, all_records, hook_client_names
from loopengt_server.hooks.decide import DEFAULT_MAX_LOOPS, decide_session, decide_stop
from loopengt_server.hooks.payload import MAX_PAYLOAD_BYTES, HookSkip, Verdict, parse_payload
from loopengt_server.hooks.usage import read_usage


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
