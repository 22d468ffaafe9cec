"""The one place events become stored records and back: `{"seq", "type", "at", "data": {...}}`.

Both stores, export/import, the trace resource and `show --json` go through here, so the log format has
one definition. A record is written with the keys the event was built or read with (pydantic's "fields
set"), in field order, so events the engine builds are the same bytes 0.2.0 wrote, and a record read
from an older log is written back (export, import) as it was. `workspace` and `setup_error` are left
out when None, as writers always did.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, PlainSerializer, TypeAdapter
from pydantic_core import PydanticCustomError

from loopengt_core.model.events._base import Event
from loopengt_core.model.events._types import AnyEvent

EVENT_CLASSES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls for cls in typing.get_args(typing.get_args(AnyEvent)[0])
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)
TERMINAL_EVENTS = frozenset({"run_completed", "run_failed", "run_cancelled"})


def event_data(event: Event) -> dict[str, Any]:
    """The record's `data`: the fields set, under their record keys, in field order.

    Read from `__dict__` (field order) rather than `model_dump`, which would walk and copy every output
    and input: values go to the JSON encoder as they are, as before events were typed.
    """
    given, values = event.__pydantic_fields_set__, event.__dict__
    data = {}
    for name in event.payload:  # a loop, not a comprehension: this runs for every event written
        if name in given:
            data[name] = values[name]
    for name in event.omitted_when_none:
        if name in data and data[name] is None:
            del data[name]
    for name in event.nested:  # WorkspaceFiles: the keys it was given
        if data.get(name) is not None:
            data[name] = data[name].model_dump(exclude_unset=True)
    if event.data_keys:
        data = {event.data_keys.get(key, key): value for key, value in data.items()}
    return data


def to_record(event: Event, *, end: int | None = None) -> dict[str, Any]:
    """`{"seq", "type", "at", "data"}`, the shape of a log line (before its checksum) and a database row.

    `end`: the file store's batch marker (the seq of its append's last event), which goes right after
    `seq`; see loopengt_core.store.files.
    """
    if end is None:
        return {"seq": event.seq, "type": event.type, "at": event.at, "data": event_data(event)}
    return {"seq": event.seq, "end": end, "type": event.type, "at": event.at, "data": event_data(event)}


def _flat(cls: type[Event], record: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The record as the flat mapping `cls` validates (its data keys renamed back to field names)."""
    if cls.data_keys:
        names = {key: name for name, key in cls.data_keys.items()}
        data = {names.get(key, key): value for key, value in data.items()}
    return {**data, "seq": record.get("seq"), "type": record.get("type"), "at": record.get("at")}


def _fields(record: Any) -> Any:
    """Before validation: a record becomes its flat mapping; an event stays as it is."""
    if not isinstance(record, dict):
        return record
    data, kind = record.get("data"), record.get("type")
    if not isinstance(data, dict):
        raise PydanticCustomError("event_data", "the record's data must be a JSON object")
    cls = EVENT_CLASSES.get(kind) if isinstance(kind, str) else None
    return _flat(cls, record, data) if cls is not None else {**data, "type": kind}


def event_from_record(record: Any) -> AnyEvent:
    """The event a stored record holds.

    Raises:
        pydantic.ValidationError: not a record of a known event type with the fields that type needs.
    """
    if isinstance(record, dict):
        data, kind = record.get("data"), record.get("type")
        cls = EVENT_CLASSES.get(kind) if isinstance(kind, str) else None
        if cls is not None and isinstance(data, dict):  # the common case, without the union's dispatch
            return cls.model_validate(_flat(cls, record, data))  # type: ignore[return-value]
    return _RECORD.validate_python(record)  # raises, naming what is wrong


EventRecord = Annotated[AnyEvent, BeforeValidator(_fields), PlainSerializer(to_record)]
"""An event in a document (an export) that holds it as a record."""
_RECORD: TypeAdapter[AnyEvent] = TypeAdapter(EventRecord, config=ConfigDict(title="event record"))
