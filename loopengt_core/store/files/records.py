"""The file store's record format: the names of a run's files and one checksummed JSON record a line.

Every line of events.jsonl, the snapshot and each checkpoint is a sealed record: compact JSON whose last
key `crc` is the zlib CRC-32 (8 lowercase hex digits) of the same object serialised without it. Kept
apart from the I/O so that the format is readable in one place.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.model.events import Event, to_record

EVENTS = "events.jsonl"
SPEC = "spec.yaml"
SNAPSHOT = "snapshot.json"
CHECKPOINTS = "checkpoints"
LOCK = "lock"
TASKS = "tasks.idx"
TMP_PREFIX = ".tmp-"

_CRC_MARK = b',"crc":"'


class BadRecord(Exception):
    """A line or file whose checksum or JSON does not hold; the reason ends up in StoreCorrupt."""


def seal(obj: dict[str, Any]) -> bytes:
    """Compact JSON of `obj` with its CRC appended as the last key, newline-terminated."""
    try:
        payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) is a ValueError
        raise InvalidArgument(f"cannot store a value that is not plain JSON: {exc}") from exc
    return payload[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(payload)


def unseal(raw: bytes) -> dict[str, Any]:
    """Verify and parse one sealed record (without its trailing newline)."""
    cut = raw.rfind(_CRC_MARK)
    if cut < 0:
        raise BadRecord("no checksum (torn or not written by loopengt)")
    tail = raw[cut + len(_CRC_MARK) :]
    if len(tail) != 10 or tail[8:] != b'"}':
        raise BadRecord("malformed checksum field")
    payload = raw[:cut] + b"}"
    if tail[:8] != b"%08x" % zlib.crc32(payload):
        raise BadRecord("checksum mismatch")
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise BadRecord(f"invalid JSON under a valid checksum: {exc}") from exc
    if not isinstance(obj, dict):
        raise BadRecord("not a JSON object")
    return obj


def seq_of(obj: dict[str, Any]) -> int:
    """The record's `seq`; BadRecord unless it is an integer."""
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise BadRecord("seq is not an integer")
    return seq


def end_of(obj: dict[str, Any], seq: int) -> int:
    """Remove a line's `end` marker and return it: the seq of its batch's last event (`seq` if unmarked)."""
    end = obj.pop("end", None)
    if end is None:
        return seq
    if not isinstance(end, int) or isinstance(end, bool) or end < seq:
        raise BadRecord("end is not an integer >= seq")
    return end


def encode_event(event: Event, end: int | None = None) -> bytes:
    """One sealed log line for `event` (with its batch's `end` when given)."""
    return seal(to_record(event, end=end))


def encode_batch(events: Sequence[Event]) -> list[bytes]:
    """The lines of one append; several events all carry `end`, so a cut-short batch is recognisable."""
    end = events[-1].seq if len(events) > 1 else None
    return [encode_event(e, end) for e in events]
