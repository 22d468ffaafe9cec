"""What every event has (`seq`, `at`) and the one timestamp format of the log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticUndefined

WORKSPACE_DOC = "The run's files right after it happened; only when the run records its files."
"""The description of every event's `workspace` field."""
TYPE_DOC = "What happened: the record's `type`, which picks the class."
"""The description of every event's `type` field."""
_set = object.__setattr__  # past the frozen model's __setattr__, as pydantic's model_construct does
OMITTED_WHEN_NONE = frozenset(
    {
        "workspace",
        "setup_error",
        "client",
        "usage",
        "budget",
        "hint",
        "compared",
        "cancelled_by",
        "input_refs",
        "output_seq",
        "judging",
        "judge_gate",
        "submitted_by",
        "score",
    }
)  # writers leave these keys out when None


class Event(BaseModel):
    """One fact in a run's log. Subclasses add `type` (the discriminator) and the fact's fields.

    Frozen: the log is append-only, and the engine's live state shares values with the events it folded.
    Unknown keys in a stored record are ignored, so a log written by a newer loopengt still loads.

    Calling the class (`TaskIssued(seq=..., ...)`) builds an event without validating it: that is how
    the engine builds the events it decides, on every step, and mypy checks those calls' fields and
    types. What comes from outside (a stored record, an import) goes through `model_validate`
    (`event_from_record`), which validates. Calling it still refuses a missing or unknown field.
    """

    model_config = ConfigDict(frozen=True)

    # data keys that differ from the field name (a field may not shadow `seq`): field -> key in `data`
    data_keys: ClassVar[dict[str, str]] = {}
    # set per class by __pydantic_init_subclass__: every field with its default, in field order, ...
    _template: ClassVar[dict[str, Any]] = {}
    _factories: ClassVar[tuple[tuple[str, Callable[[], Any]], ...]] = ()
    _required: ClassVar[frozenset[str]] = frozenset()
    _names: ClassVar[frozenset[str]] = frozenset()
    _optional: ClassVar[frozenset[str]] = frozenset()
    # ... and what `to_record` needs: the fields of `data` in order, those left out when None, the nested
    payload: ClassVar[tuple[str, ...]] = ()
    omitted_when_none: ClassVar[tuple[str, ...]] = ()
    nested: ClassVar[tuple[str, ...]] = ()

    def __init__(self, /, **fields: Any) -> None:
        if fields.keys() - self._optional != self._required:  # one set operation: this runs every step
            missing, unknown = self._required - fields.keys(), fields.keys() - self._names
            raise TypeError(
                f"{type(self).__name__}: "
                + "; ".join(
                    f"{what}: {', '.join(sorted(names))}"
                    for what, names in (("missing", missing), ("unknown", unknown))
                    if names
                )
            )
        values = {**self._template, **fields}  # field order, as pydantic keeps __dict__
        for name, factory in self._factories:
            if name not in fields:
                values[name] = factory()
        _set(self, "__dict__", values)
        _set(self, "__pydantic_fields_set__", set(fields))
        _set(self, "__pydantic_extra__", None)
        _set(self, "__pydantic_private__", None)

    # pydantic then treats __init__ as its own: model_validate validates and never calls it
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields
        cls._template = {
            name: None if info.default is PydanticUndefined else info.default for name, info in fields.items()
        }
        cls._factories = tuple(
            (name, info.default_factory)  # type: ignore[misc]
            for name, info in fields.items()
            if info.default_factory is not None
        )
        cls._required = frozenset(name for name, info in fields.items() if info.is_required())
        cls._names = frozenset(fields)
        cls._optional = cls._names - cls._required
        cls.payload = tuple(name for name in fields if name not in Event.model_fields)
        cls.omitted_when_none = tuple(name for name in cls.payload if name in OMITTED_WHEN_NONE)
        cls.nested = tuple(
            name
            for name, info in fields.items()
            if any(
                isinstance(t, type) and issubclass(t, BaseModel)
                for t in (info.annotation, *get_args(info.annotation))
            )
        )

    seq: int = Field(ge=1, description="Position in the run's log, from 1, without gaps.")
    at: str = Field(description="When it was decided, ISO 8601 UTC with milliseconds and a Z.")
    type: str = Field(description="What happened, snake_case past tense; the record's `type`.")


class WorkspaceFiles(BaseModel):
    """The run's files as git saw them: the `tree` of tracked plus untracked-not-ignored files, and `head`.

    Which keys a record holds depends on the event (run_started and run_forked: root, head, tree;
    output_submitted and command_finished: head, tree; checkpoint_taken: head, tree, commit, ref); a
    record is written back with exactly the keys it was given.
    """

    model_config = ConfigDict(frozen=True)

    root: str | None = Field(None, description="The run's working directory (where its commands run).")
    head: str | None = Field(None, description="The commit HEAD named, None in a repository without commits.")
    tree: str = Field(description="The git tree of the files.")
    commit: str | None = Field(None, description="The commit a checkpoint made to keep the tree.")
    ref: str | None = Field(None, description="The ref that keeps the checkpoint's commit from git's gc.")


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z, the one timestamp format of the log."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time from the log (`Z` or an offset) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
