"""The typed events: one model per fact, a union on `type`, and the record format they are stored in."""

from __future__ import annotations

import typing

import pytest
from pydantic import TypeAdapter, ValidationError

from loopengt_core.model.events import (
    EVENT_CLASSES,
    EVENT_TYPES,
    AnyEvent,
    CommandFinished,
    CommandRequested,
    GatePassed,
    OutputSubmitted,
    RunForked,
    TaskIssued,
    WorkspaceFiles,
    event_from_record,
    to_record,
)

AT = "2026-01-01T00:00:00.000Z"


def test_there_is_one_class_per_type_named_in_the_past_tense() -> None:
    # 22 in 0.2.0; run_paused, task_held, budget_reached, usage_read (issue 16), command_abandoned (issue 14);
    # worktree_added, branches_merged, join_deferred (issue 17)
    assert len(EVENT_CLASSES) == len(EVENT_TYPES) == 30
    for kind, cls in EVENT_CLASSES.items():
        assert "".join(word.capitalize() for word in kind.split("_")) == cls.__name__
        assert cls.model_config.get("frozen") is True


@pytest.mark.parametrize("cls", list(EVENT_CLASSES.values()), ids=EVENT_TYPES)
def test_every_field_is_described(cls: type) -> None:
    for name, info in cls.model_fields.items():
        assert info.description, f"{cls.__name__}.{name} has no description"


def test_the_union_discriminates_on_type_and_its_schema_says_so() -> None:
    adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
    event = adapter.validate_python(
        {"seq": 3, "at": AT, "type": "gate_passed", "task_id": "a#1", "step": "a", "gate": "g"}
    )
    assert isinstance(event, GatePassed)
    assert adapter.json_schema()["discriminator"]["propertyName"] == "type"
    assert set(typing.get_args(typing.get_args(AnyEvent)[0])) == set(EVENT_CLASSES.values())


def test_building_an_event_refuses_a_missing_or_unknown_field() -> None:
    with pytest.raises(TypeError, match=r"missing: attempt, step; unknown: atempt"):
        OutputSubmitted(seq=1, at=AT, task_id="a#1", atempt=1)  # type: ignore[call-arg]


def test_an_event_is_immutable() -> None:
    event = GatePassed(seq=1, at=AT, task_id="a#1", step="a", gate="g")
    with pytest.raises(ValidationError):
        event.gate = "other"  # type: ignore[misc]


def test_a_record_keeps_exactly_the_keys_given_in_field_order() -> None:
    event = CommandFinished(seq=4, at=AT, command_id="b#1", exit_code=None, output="", workspace=None)
    assert to_record(event) == {
        "seq": 4,
        "type": "command_finished",
        "at": AT,
        "data": {"command_id": "b#1", "exit_code": None, "output": ""},  # workspace None is left out
    }
    assert event.timed_out is False  # a default, not written
    assert event.setup_error is None


def test_a_nested_workspace_is_written_with_its_own_keys_only() -> None:
    event = OutputSubmitted(
        seq=2, at=AT, task_id="a#1", step="a", attempt=1, workspace=WorkspaceFiles(head=None, tree="t1")
    )
    assert to_record(event)["data"]["workspace"] == {"head": None, "tree": "t1"}


def test_a_fork_records_the_checkpoint_seq_under_seq() -> None:
    fork = RunForked(
        seq=1, at=AT, run_id="f", parent_run_id="p", checkpoint_id="cp-1", checkpoint_seq=9, state={}
    )
    record = to_record(fork)
    assert record["seq"] == 1
    assert record["data"]["seq"] == 9
    assert list(record["data"]) == ["run_id", "parent_run_id", "checkpoint_id", "seq", "state"]
    back = event_from_record(record)
    assert isinstance(back, RunForked)
    assert (back.checkpoint_seq, back.seq) == (9, 1)


def test_a_record_may_lack_what_older_logs_lack_and_writes_back_the_same() -> None:
    record = {
        "seq": 5,
        "type": "command_requested",
        "at": AT,
        "data": {
            "command_id": "b#1",
            "kind": "step",
            "step": "b",
            "task_id": "b#1",
            "gate": None,
            "argv": ["make"],
            "attempt": 1,
            "timeout_seconds": 600.0,
            "not_before": AT,
        },
    }
    event = event_from_record(record)
    assert isinstance(event, CommandRequested)
    assert event.resumed is False
    assert to_record(event) == record


def test_a_record_from_a_newer_writer_loads_without_its_unknown_keys() -> None:
    record = {"seq": 1, "type": "run_resumed", "at": AT, "data": {"reason": "resumed", "by": "future"}}
    assert to_record(event_from_record(record))["data"] == {"reason": "resumed"}


@pytest.mark.parametrize(
    ("record", "says"),
    [
        (
            {"seq": 1, "type": "run_teleported", "at": AT, "data": {}},
            "does not match any of the expected tags",
        ),
        ({"seq": 1, "type": "task_issued", "at": AT, "data": {"task_id": "a#1"}}, "Field required"),
        ({"seq": 0, "type": "run_resumed", "at": AT, "data": {}}, "greater than or equal to 1"),
        ({"seq": 1, "type": "run_resumed", "at": AT, "data": []}, "data must be a JSON object"),
        ("not a record", "Input should be"),
    ],
)
def test_a_bad_record_is_a_validation_error_naming_the_problem(record: object, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        event_from_record(record)


def test_a_task_issued_read_back_equals_the_one_built() -> None:
    built = TaskIssued(
        seq=2,
        at=AT,
        task_id="a#1",
        step="a",
        agent="x",
        attempt=1,
        instructions="do it",
        input={"goal": "g"},
        output_schema=None,
        feedback=None,
        expires_at=None,
    )
    assert event_from_record(to_record(built)) == built
