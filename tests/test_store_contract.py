"""The `Store` contract: every backend in `conftest.STORE_FACTORIES` must pass all of these.

A backend from elsewhere (a store plugin) runs it too: `LOOPENGT_TEST_STORE='mystore://{tmp}/store'
python -m pytest tests/test_store_contract.py -k location` (see conftest and the README).

The protocol's methods are tested on every backend; each optional capability (`LocalLocking`,
`DirectoryBacked`, `Sweepable`, `Repairable`, `ChangeFeed`, `GroupCommit`, `AppendAt`) on every backend that has it, and
`CAPABILITIES` says which those are, so a backend that loses one fails here instead of skipping.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import STORE_CAPABILITIES_ENV, STORE_FACTORIES

from loopengt_core.model.errors import InvalidArgument, LoopengtError, NotFound, StoreConflict
from loopengt_core.model.events import StepCompleted
from loopengt_core.service.reading import RunReader
from loopengt_core.store import (
    AppendAt,
    ChangeFeed,
    Checkpoint,
    DirectoryBacked,
    GroupCommit,
    LocalLocking,
    Repairable,
    Store,
    Sweepable,
)
from loopengt_core.store.errors import LockBusy, StoreIOError

SPEC = "version: 1\nloop: demo\nsteps:\n  - name: build  # é ✓\n"
BAD_IDS = ["", "../x", "a/b", "A", "-x", ".tmp-x", "x" * 65, "..", "a\x00b", "é"]


def ev(seq: int, **data: Any) -> StepCompleted:
    """An event whose `output` carries `data` (the stores see a record like any other)."""
    return StepCompleted(seq=seq, at="2026-01-01T00:00:00.000Z", step="s", output=data or {"n": seq})


def tev(seq: int, task_id: str, output: Any = None) -> StepCompleted:
    """An event of task `task_id` (what the task index finds it by)."""
    return StepCompleted(
        seq=seq, at="2026-01-01T00:00:00.000Z", step="s", output=output or {"n": seq}, task_id=task_id
    )


def evs(first: int, last: int) -> list[StepCompleted]:
    return [ev(i) for i in range(first, last + 1)]


def cp(run_id: str, cid: str, seq: int, label: str | None = None) -> Checkpoint:
    return Checkpoint(
        run_id=run_id,
        checkpoint_id=cid,
        seq=seq,
        label=label,
        created_at=f"2026-01-01T00:00:{seq:02d}.000Z",
        state={"seq": seq, "nested": {"list": [1, 2, 3]}},
    )


def test_implements_protocol(store: Store) -> None:
    assert isinstance(store, Store)


def test_create_and_load(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 3))
    loaded = store.load("r1")
    assert loaded.run_id == "r1"
    assert loaded.spec_text == SPEC
    assert loaded.snapshot is None
    assert loaded.snapshot_seq == 0
    assert loaded.events == evs(1, 3)
    assert store.exists("r1")
    assert store.last_seq("r1") == 3


def test_create_without_events(store: Store) -> None:
    store.create_run("empty", SPEC, [])
    assert store.last_seq("empty") == 0
    assert store.load("empty").events == []
    store.append("empty", [ev(1)])
    assert store.last_seq("empty") == 1


def test_create_requires_seqs_from_one(store: Store) -> None:
    with pytest.raises(InvalidArgument):
        store.create_run("r1", SPEC, [ev(2)])
    assert not store.exists("r1")


def test_create_existing_conflicts(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 1))
    with pytest.raises(StoreConflict):
        store.create_run("r1", "other: spec\n", evs(1, 2))
    loaded = store.load("r1")
    assert loaded.spec_text == SPEC
    assert loaded.events == evs(1, 1)


def test_spec_text_is_kept_exactly(store: Store) -> None:
    text = "a: 1\r\nb: 'tab\there'\n\n# trailing spaces   \nunicode: ✓ 日本\n"
    store.create_run("r1", text, [])
    assert store.load("r1").spec_text == text


def test_append_and_load(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 1))
    store.append("r1", evs(2, 2))
    store.append("r1", evs(3, 5))
    assert store.load("r1").events == evs(1, 5)
    assert store.last_seq("r1") == 5


def test_append_nothing_is_a_no_op(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 2))
    store.append("r1", [])
    assert store.last_seq("r1") == 2


@pytest.mark.parametrize(
    "batch",
    [[2], [4], [1], [3, 5], [3, 3], [4, 3], [1, 2, 3]],
    ids=["repeat-last", "gap", "repeat-first", "hole", "dup", "reverse", "overlap"],
)
def test_append_rejects_wrong_seqs(store: Store, batch: list[int]) -> None:
    store.create_run("r1", SPEC, evs(1, 2))
    with pytest.raises(StoreConflict):
        store.append("r1", [ev(s) for s in batch])
    assert store.load("r1").events == evs(1, 2)
    assert store.last_seq("r1") == 2
    store.append("r1", [ev(3)])  # the log still continues where it was
    assert store.last_seq("r1") == 3


def test_append_conflict_after_other_writer(store_factory: Callable[[], Store]) -> None:
    first, second = store_factory(), store_factory()
    try:
        first.create_run("r1", SPEC, evs(1, 1))
        assert second.last_seq("r1") == 1
        first.append("r1", evs(2, 3))
        with pytest.raises(StoreConflict):
            second.append("r1", evs(2, 2))
        second.append("r1", evs(4, 4))
        first.append("r1", evs(5, 5))
        assert first.load("r1").events == evs(1, 5)
        assert second.load("r1").events == evs(1, 5)
        assert second.events("r1", after=3) == evs(4, 5)
        assert first.last_seq("r1") == 5
    finally:
        first.close()
        second.close()


def test_unknown_run_is_not_found(store: Store) -> None:
    store.create_run("known", SPEC, evs(1, 1))
    calls: list[Callable[[], object]] = [
        lambda: store.append("nope", [ev(1)]),
        lambda: store.load("nope"),
        lambda: store.events("nope"),
        lambda: store.last_seq("nope"),
        lambda: store.version("nope"),
        lambda: store.save_snapshot("nope", 0, {}),
        lambda: store.save_checkpoint(cp("nope", "c1", 0)),
        lambda: store.get_checkpoint("nope", "c1"),
        lambda: store.list_checkpoints("nope"),
        lambda: store.lock("nope").__enter__(),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    assert not store.exists("nope")


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_ids_are_refused(store: Store, bad: str) -> None:
    store.create_run("r1", SPEC, evs(1, 1))
    calls: list[Callable[[], object]] = [
        lambda: store.create_run(bad, SPEC, []),
        lambda: store.append(bad, [ev(2)]),
        lambda: store.load(bad),
        lambda: store.events(bad),
        lambda: store.last_seq(bad),
        lambda: store.exists(bad),
        lambda: store.version(bad),
        lambda: store.save_snapshot(bad, 0, {}),
        lambda: store.save_checkpoint(cp(bad, "c1", 1)),
        lambda: store.save_checkpoint(cp("r1", bad, 1)),
        lambda: store.get_checkpoint(bad, "c1"),
        lambda: store.get_checkpoint("r1", bad),
        lambda: store.list_checkpoints(bad),
        lambda: store.lock(bad).__enter__(),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument):
            call()
    assert store.list_runs() == ["r1"]


def test_events_after_and_limit(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 10))
    assert store.events("r1") == evs(1, 10)
    assert store.events("r1", after=0) == evs(1, 10)
    assert store.events("r1", after=7) == evs(8, 10)
    assert store.events("r1", after=10) == []
    assert store.events("r1", after=99) == []
    assert store.events("r1", after=2, limit=3) == evs(3, 5)
    assert store.events("r1", after=9, limit=5) == evs(10, 10)
    assert store.events("r1", limit=0) == []
    store.append("r1", evs(11, 12))
    assert store.events("r1", after=10) == evs(11, 12)
    assert store.events("r1", after=5, limit=1) == evs(6, 6)
    with pytest.raises(InvalidArgument):
        store.events("r1", after=-1)
    with pytest.raises(InvalidArgument):
        store.events("r1", limit=-1)


def test_event_data_round_trips(store: Store) -> None:
    data = {
        "text": 'multi\nline "quoted" ✓ 日本 \u2028 \\ ,"crc":"00000000"}',
        "nested": {"list": [1, 2.5, None, True, {"k": "v"}], "empty": {}},
        "big": 2**60,
        "crc": "deadbeef",
    }
    first = StepCompleted(seq=1, at="2026-01-01T00:00:00.000Z", step="s", output=data)
    store.create_run("r1", SPEC, [first])
    second = StepCompleted(seq=2, at="2026-01-02T00:00:00.000Z", step="s", output={"output": data})
    store.append("r1", [second])
    assert store.load("r1").events == [first, second]
    assert store.events("r1", after=1) == [second]


def test_unstorable_data_is_refused(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 1))
    with pytest.raises(InvalidArgument):
        store.append("r1", [ev(2, value=float("nan"))])
    with pytest.raises(InvalidArgument):
        store.append("r1", [ev(2, value=object())])
    assert store.last_seq("r1") == 1


def test_list_runs_newest_first(store: Store) -> None:
    assert store.list_runs() == []
    for run_id in ["b", "c", "a", "z9", "m_1-x"]:
        store.create_run(run_id, SPEC, evs(1, 1))
    assert store.list_runs() == ["m_1-x", "z9", "a", "c", "b"]


def test_exists(store: Store) -> None:
    assert not store.exists("r1")
    store.create_run("r1", SPEC, [])
    assert store.exists("r1")


def test_version_changes_with_the_log(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 1))
    before = store.version("r1")
    assert isinstance(before, str)
    assert store.version("r1") == before
    store.load("r1")
    store.save_snapshot("r1", 1, {"x": 1})
    assert store.version("r1") == before
    store.append("r1", evs(2, 2))
    after = store.version("r1")
    assert after != before
    store.append("r1", evs(3, 3))
    assert store.version("r1") not in (before, after)


def test_snapshot_then_load_returns_only_later_events(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 5))
    store.save_snapshot("r1", 3, {"at": 3, "items": ["a", "é"]})
    loaded = store.load("r1")
    assert loaded.snapshot == {"at": 3, "items": ["a", "é"]}
    assert loaded.snapshot_seq == 3
    assert loaded.events == evs(4, 5)
    store.append("r1", evs(6, 7))
    store.save_snapshot("r1", 7, {"at": 7})
    loaded = store.load("r1")
    assert (loaded.snapshot, loaded.snapshot_seq, loaded.events) == ({"at": 7}, 7, [])
    store.append("r1", evs(8, 8))
    assert store.load("r1").events == evs(8, 8)
    assert store.events("r1") == evs(1, 8)


def test_snapshot_from_another_instance(store_factory: Callable[[], Store]) -> None:
    first, second = store_factory(), store_factory()
    try:
        first.create_run("r1", SPEC, evs(1, 300))
        second.save_snapshot("r1", 257, {"at": 257})
        loaded = first.load("r1")
        assert loaded.snapshot_seq == 257
        assert loaded.events == evs(258, 300)
    finally:
        first.close()
        second.close()


def test_snapshot_beyond_the_log_is_refused(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 2))
    with pytest.raises(InvalidArgument):
        store.save_snapshot("r1", 3, {})
    with pytest.raises(InvalidArgument):
        store.save_snapshot("r1", -1, {})
    with pytest.raises(InvalidArgument):
        store.save_snapshot("r1", 1, {"bad": float("inf")})
    assert store.load("r1").snapshot is None


def test_checkpoints(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 5))
    store.save_checkpoint(cp("r1", "late", 4, "after review"))
    store.save_checkpoint(cp("r1", "early", 2))
    got = store.get_checkpoint("r1", "late")
    assert got == cp("r1", "late", 4, "after review")
    assert got.state == {"seq": 4, "nested": {"list": [1, 2, 3]}}
    assert [c.checkpoint_id for c in store.list_checkpoints("r1")] == ["early", "late"]
    assert store.list_checkpoints("r1")[0] == cp("r1", "early", 2)


def test_discarding_a_checkpoint_frees_its_id(store: Store) -> None:
    """What a failed checkpoint is rolled back with: the id is free again, and discarding none is no error."""
    store.create_run("r1", SPEC, evs(1, 3))
    store.save_checkpoint(cp("r1", "c1", 3, "unrecorded"))
    store.save_checkpoint(cp("r1", "c2", 2))
    store.discard_checkpoint("r1", "c1")
    store.discard_checkpoint("r1", "c1")
    assert [c.checkpoint_id for c in store.list_checkpoints("r1")] == ["c2"]
    store.save_checkpoint(cp("r1", "c1", 3, "recorded"))
    assert store.get_checkpoint("r1", "c1").label == "recorded"


def test_checkpoint_conflict_and_not_found(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 3))
    store.create_run("r2", SPEC, evs(1, 3))
    assert store.list_checkpoints("r1") == []
    with pytest.raises(NotFound) as none_yet:
        store.get_checkpoint("r1", "c1")
    assert "c1" in str(none_yet.value)
    store.save_checkpoint(cp("r1", "c1", 1))
    store.save_checkpoint(cp("r1", "c2", 2))
    with pytest.raises(StoreConflict):
        store.save_checkpoint(cp("r1", "c1", 3))
    assert store.get_checkpoint("r1", "c1").seq == 1
    with pytest.raises(NotFound) as missing:
        store.get_checkpoint("r1", "c9")
    assert "c1" in str(missing.value)
    assert "c2" in str(missing.value)
    store.save_checkpoint(cp("r2", "c1", 3))  # ids are per run
    assert store.get_checkpoint("r2", "c1").seq == 3


def test_lock_excludes_other_threads(store: Store) -> None:
    store.create_run("r1", SPEC, [])
    inside = 0
    overlaps = 0
    errors: list[BaseException] = []

    def work() -> None:
        nonlocal inside, overlaps
        try:
            for _ in range(20):
                with store.lock("r1"):
                    inside += 1
                    overlaps += inside > 1
                    last = store.last_seq("r1")
                    time.sleep(0.0005)
                    store.append("r1", [ev(last + 1), ev(last + 2)])
                    inside -= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert overlaps == 0
    assert store.load("r1").events == evs(1, 160)


def test_lock_excludes_other_instances(store_factory: Callable[[], Store]) -> None:
    first, second = store_factory(), store_factory()
    try:
        first.create_run("r1", SPEC, [])
        entered = threading.Event()

        def take() -> None:
            with second.lock("r1"):
                entered.set()

        with first.lock("r1"):
            thread = threading.Thread(target=take, daemon=True)
            thread.start()
            assert not entered.wait(0.2)
        assert entered.wait(5)
        thread.join(5)
    finally:
        first.close()
        second.close()


def test_append_outside_lock_still_serialises(store: Store) -> None:
    store.create_run("r1", SPEC, [])
    conflicts = 0

    def work() -> None:
        nonlocal conflicts
        for _ in range(30):
            try:
                store.append("r1", [ev(store.last_seq("r1") + 1)])
            except StoreConflict:
                conflicts += 1

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.last_seq("r1") == 90 - conflicts
    assert store.events("r1") == evs(1, 90 - conflicts)


def test_close_then_use_again(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 1))
    store.append("r1", evs(2, 2))
    store.close()
    store.append("r1", evs(3, 3))
    assert store.load("r1").events == evs(1, 3)
    store.close()
    store.close()


def test_errors_are_loopengt_errors(store: Store) -> None:
    with pytest.raises(LoopengtError):
        store.load("missing")


def test_delete_run_removes_everything(store_factory: Callable[[], Store]) -> None:
    store, other = store_factory(), store_factory()
    store.create_run("gone", SPEC, evs(1, 5))
    store.save_snapshot("gone", 3, {"seq": 3})
    store.save_checkpoint(cp("gone", "cp-1", 2))
    store.create_run("kept", SPEC, evs(1, 2))
    assert other.events("gone") == evs(1, 5)  # the second instance has it cached
    with store.lock("gone"):
        store.delete_run("gone")
    for reader in (store, other):
        assert not reader.exists("gone")
        assert reader.list_runs() == ["kept"]
        for call in (
            lambda r=reader: r.load("gone"),
            lambda r=reader: r.events("gone"),
            lambda r=reader: r.last_seq("gone"),
            lambda r=reader: r.version("gone"),
            lambda r=reader: r.list_checkpoints("gone"),
            lambda r=reader: r.append("gone", [ev(6)]),
        ):
            with pytest.raises(NotFound):
                call()
    assert store.load("kept").events == evs(1, 2)
    store.close()
    other.close()


def test_deleted_id_can_be_used_again(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 4))
    store.save_snapshot("r1", 4, {"seq": 4})
    store.save_checkpoint(cp("r1", "cp-1", 4))
    store.delete_run("r1")
    store.create_run("r1", "fresh: spec\n", evs(1, 1))
    loaded = store.load("r1")
    assert (loaded.spec_text, loaded.snapshot, loaded.events) == ("fresh: spec\n", None, evs(1, 1))
    assert store.list_checkpoints("r1") == []
    store.append("r1", evs(2, 3))
    assert store.events("r1") == evs(1, 3)


def test_delete_unknown_or_invalid_run(store: Store) -> None:
    with pytest.raises(NotFound):
        store.delete_run("missing")
    with pytest.raises(InvalidArgument):
        store.delete_run("../x")
    store.create_run("r1", SPEC, evs(1, 1))
    store.delete_run("r1")
    with pytest.raises(NotFound):
        store.delete_run("r1")


def test_delete_waits_for_the_lock_holder(store_factory: Callable[[], Store]) -> None:
    """A transition in progress finishes before the run disappears; the waiter then finds no run."""
    holder, deleter = store_factory(), store_factory()
    holder.create_run("r1", SPEC, evs(1, 1))
    entered, done = threading.Event(), threading.Event()

    def delete() -> None:
        entered.wait(5)
        with deleter.lock("r1"):
            deleter.delete_run("r1")
        done.set()

    thread = threading.Thread(target=delete)
    thread.start()
    with holder.lock("r1"):
        entered.set()
        time.sleep(0.2)
        assert not done.is_set()
        holder.append("r1", evs(2, 2))
    thread.join(10)
    assert done.is_set()
    assert not holder.exists("r1")
    with pytest.raises(NotFound), holder.lock("r1"):
        pass
    holder.close()
    deleter.close()


def test_task_events_are_found_by_task_id(store: Store) -> None:
    """Only the events whose data names the task come back, in order, also after snapshots and appends."""
    store.create_run("tasks", SPEC, [tev(1, "a#1"), tev(2, "b#1"), ev(3, n=3)])
    store.append("tasks", [tev(4, "a#1", output={"task_id": "b#1"}), tev(5, "a#10")])
    store.save_snapshot("tasks", 5, {"seq": 5})
    store.append("tasks", [tev(6, "a#1"), tev(7, 'q"\t\n#1')])
    assert [e.seq for e in store.task_events("tasks", "a#1")] == [1, 4, 6]
    assert [e.seq for e in store.task_events("tasks", "b#1")] == [2]
    assert [e.seq for e in store.task_events("tasks", 'q"\t\n#1')] == [7]
    assert store.task_events("tasks", "a#1")[1] == tev(4, "a#1", output={"task_id": "b#1"})
    assert store.task_events("tasks", "c#1") == []
    with pytest.raises(NotFound):
        store.task_events("nope", "a#1")


def test_task_events_see_another_instances_appends(store_factory: Callable[[], Store]) -> None:
    """A late submission may reach another server process than the one that issued its task."""
    first, second = store_factory(), store_factory()
    try:
        first.create_run("t", SPEC, [tev(1, "a#1")])
        assert [e.seq for e in second.task_events("t", "a#1")] == [1]
        first.append("t", [tev(2, "b#1"), tev(3, "a#1")])
        assert [e.seq for e in second.task_events("t", "a#1")] == [1, 3]
        with pytest.raises(InvalidArgument, match="run_id"):
            second.task_events("../x", "a#1")
    finally:
        first.close()
        second.close()


def test_discard_checkpoint_names_an_unknown_run(store: Store) -> None:
    store.create_run("r1", SPEC, evs(1, 1))
    with pytest.raises(NotFound, match="'nope'") as missing:
        store.discard_checkpoint("nope", "c1")
    assert missing.value.run_id == "nope"
    with pytest.raises(InvalidArgument, match="checkpoint_id"):
        store.discard_checkpoint("r1", "../x")
    with pytest.raises(InvalidArgument, match="run_id"):
        store.discard_checkpoint("../x", "c1")


def test_errors_name_the_run_and_the_field(store: Store) -> None:
    """What a caller shows a person: the error's type says what to do, its message which run or field."""
    store.create_run("r1", SPEC, evs(1, 2))
    cases: list[tuple[Callable[[], object], type[LoopengtError], str, str | None]] = [
        (lambda: store.load("nope"), NotFound, "'nope'", "nope"),
        (lambda: store.task_events("nope", "t#1"), NotFound, "'nope'", "nope"),
        (lambda: store.get_checkpoint("r1", "c9"), NotFound, "'c9'", "r1"),
        (lambda: store.append("r1", [ev(9)]), StoreConflict, "'r1'", "r1"),
        (lambda: store.create_run("r1", SPEC, []), StoreConflict, "'r1'", "r1"),
        (lambda: store.save_snapshot("r1", 9, {}), InvalidArgument, "'r1'", "r1"),
        (lambda: store.load("../x"), InvalidArgument, "run_id", None),
        (lambda: store.get_checkpoint("r1", "A"), InvalidArgument, "checkpoint_id", None),
        (lambda: store.events("r1", after=-1), InvalidArgument, "after", None),
        (lambda: store.events("r1", limit=-1), InvalidArgument, "limit", None),
    ]
    for call, kind, named, run_id in cases:
        with pytest.raises(kind) as raised:
            call()
        assert named in raised.value.message
        if run_id is not None:
            assert raised.value.run_id == run_id


def test_unusable_storage_raises_store_io_error(backend: str, tmp_path: Path) -> None:
    """A refusing disk or an unreachable database is a StoreIOError naming where (never a password)."""
    from loopengt_core.store.files import FileStore
    from loopengt_core.store.postgres import PostgresStore

    def use_it() -> None:
        if backend == "files":
            (tmp_path / "blocker").write_text("a file where the store's directory should be")
            FileStore(tmp_path / "blocker").create_run("r1", SPEC, [])
        else:
            PostgresStore("postgresql://someone:s3cret-pw@127.0.0.1:1/nodb").create_run("r1", SPEC, [])

    with pytest.raises(StoreIOError) as failed:
        use_it()
    message = failed.value.message
    assert (
        ("blocker" in message) if backend == "files" else ("postgresql://someone@127.0.0.1:1/nodb" in message)
    )
    assert "s3cret-pw" not in message


# --- capabilities --------------------------------------------------------------------------------------

ALL_CAPABILITIES: tuple[type, ...] = (
    LocalLocking,
    DirectoryBacked,
    Sweepable,
    Repairable,
    ChangeFeed,
    GroupCommit,
    AppendAt,
)
CAPABILITIES: dict[str, set[type]] = {
    "files": {LocalLocking, DirectoryBacked, Sweepable, Repairable, GroupCommit},
    "postgres": {ChangeFeed, AppendAt},
}
if "location" in STORE_FACTORIES:  # a backend named by LOOPENGT_TEST_STORE (conftest), e.g. a store plugin's
    _named = [n.strip() for n in os.environ.get(STORE_CAPABILITIES_ENV, "").split(",") if n.strip()]
    _by_name = {c.__name__: c for c in ALL_CAPABILITIES}
    CAPABILITIES["location"] = {_by_name[n] for n in _named}  # an unknown name fails at collection


@pytest.fixture
def backend(request: pytest.FixtureRequest, store_factory: Callable[[], Store]) -> str:
    """The name (a key of STORE_FACTORIES) of the backend that `store_factory` opens in this test."""
    return str(request.node.callspec.params["store_factory"])


def needs(store: Store, capability: type) -> None:
    if not isinstance(store, capability):
        pytest.skip(f"{type(store).__name__} has no {capability.__name__} (see CAPABILITIES)")


def test_each_backend_has_exactly_its_capabilities(store_factory: Callable[[], Store], backend: str) -> None:
    """A capability lost (a renamed method) or gained shows here, not as a silently skipped test."""
    assert set(CAPABILITIES) == set(STORE_FACTORIES)
    store = store_factory()
    try:
        have = {c for c in ALL_CAPABILITIES if isinstance(store, c)}
        assert have == CAPABILITIES[backend]
        assert isinstance(store.snapshot_every, int)
        assert store.snapshot_every >= 1
    finally:
        store.close()


def test_another_instances_change_is_seen(store_factory: Callable[[], Store]) -> None:
    """Watchers (follow, notifications) see a change made elsewhere: by its version on every store, and
    pushed by a ChangeFeed; `RunReader.changes` says which of the two the store gives."""
    watcher, writer = store_factory(), store_factory()
    reader = RunReader(watcher)
    try:
        assert reader.pushes_changes == isinstance(watcher, ChangeFeed)
        if reader.pushes_changes:
            assert reader.changes(0) == []  # the first call starts listening
        writer.create_run("r1", SPEC, evs(1, 1))
        before = reader.version("r1")
        writer.append("r1", evs(2, 3))
        assert reader.version("r1") != before
        assert reader.events("r1", after=1) == evs(2, 3)
        assert reader.list_runs() == ["r1"]
        if not reader.pushes_changes:
            started = time.monotonic()
            assert reader.changes(0.05) is None  # only a wait: the caller compares versions
            assert time.monotonic() - started >= 0.05
            return
        seen: set[str] = set()
        deadline = time.monotonic() + 10
        while "r1" not in seen and time.monotonic() < deadline:
            seen.update(reader.changes(1.0) or [])
        assert "r1" in seen
        with pytest.raises(InvalidArgument, match="timeout_seconds"):
            reader.changes(-1)
    finally:
        reader.close()
        writer.close()


def test_try_lock_never_waits(store_factory: Callable[[], Store]) -> None:
    first, second = store_factory(), store_factory()
    needs(first, LocalLocking)
    assert isinstance(first, LocalLocking)
    assert isinstance(second, LocalLocking)
    try:
        first.create_run("r1", SPEC, [])
        busy: list[LockBusy] = []

        def try_in_another_thread() -> None:
            try:
                first.try_lock("r1").__enter__()
            except LockBusy as exc:
                busy.append(exc)

        with first.lock("r1"):
            started = time.monotonic()
            with pytest.raises(LockBusy) as other_instance:
                second.try_lock("r1").__enter__()
            assert time.monotonic() - started < 1.0
            thread = threading.Thread(target=try_in_another_thread)
            thread.start()
            thread.join(5)
        assert other_instance.value.run_id == "r1"
        assert "'r1'" in str(other_instance.value)
        assert [b.run_id for b in busy] == ["r1"]
        with second.try_lock("r1"):  # free again: taken at once, and holds like lock()
            second.append("r1", evs(1, 1))
        assert first.last_seq("r1") == 1
        with pytest.raises(NotFound, match="'nope'"):
            second.try_lock("nope").__enter__()
        with pytest.raises(InvalidArgument, match="run_id"):
            second.try_lock("../x").__enter__()
    finally:
        first.close()
        second.close()


def test_directory_backed_store_keeps_runs_under_its_root(store: Store) -> None:
    needs(store, DirectoryBacked)
    assert isinstance(store, DirectoryBacked)
    store.create_run("r1", SPEC, evs(1, 2))
    assert any("r1" in p.relative_to(store.root).parts for p in store.root.rglob("*"))


def test_sweep_leftovers_removes_only_old_leftovers(store: Store) -> None:
    needs(store, Sweepable)
    assert isinstance(store, Sweepable)
    assert isinstance(store, DirectoryBacked)
    store.create_run("r1", SPEC, evs(1, 2))
    assert store.sweep_leftovers() == (0, 0)  # a store without crashed writers
    runs = store.root / "runs"
    crashed, live = runs / ".tmp-crashed", runs / ".tmp-live"  # what a writer killed mid-rename leaves
    crashed.write_bytes(b"x" * 100)
    live.write_bytes(b"y" * 7)
    two_hours_ago = time.time() - 7200
    os.utime(crashed, (two_hours_ago, two_hours_ago))
    assert store.sweep_leftovers(dry_run=True) == (1, 100)
    assert crashed.exists()
    assert store.sweep_leftovers() == (1, 100)
    assert not crashed.exists()
    assert live.exists()
    assert store.sweep_leftovers(older_than_seconds=0) == (1, 7)
    assert store.load("r1").events == evs(1, 2)


def test_repair_leaves_a_healthy_log_alone(store: Store) -> None:
    """Cutting a damaged log is tested with real damage in test_store_corruption; here, the contract."""
    needs(store, Repairable)
    assert isinstance(store, Repairable)
    store.create_run("r1", SPEC, evs(1, 3))
    store.save_snapshot("r1", 2, {"seq": 2})
    assert store.repair("r1") is None
    loaded = store.load("r1")
    assert (loaded.snapshot_seq, loaded.events) == (2, evs(3, 3))
    with pytest.raises(NotFound, match="'nope'"):
        store.repair("nope")
    with pytest.raises(InvalidArgument, match="run_id"):
        store.repair("../x")


def test_shared_errors_live_with_the_protocol() -> None:
    """Backends raise the protocol's errors; the old import paths name the same classes."""
    from loopengt_core import store as protocol
    from loopengt_core.store import files, postgres

    assert files.StoreIOError is postgres.StoreIOError is protocol.StoreIOError is StoreIOError
    assert protocol.LockBusy is LockBusy
    assert files.Repair is protocol.Repair
    assert StoreIOError.__module__ == LockBusy.__module__ == "loopengt_core.store.errors"


def test_check_and_repair_through_the_service(store: Store, tmp_path: Path) -> None:
    """`loopengt check` verifies a run on any store; `--repair` works where the store is Repairable and
    says why not elsewhere; `loopengt doctor`'s quick scan finds no damage in a healthy store."""
    from loopengt_core.service.check import check_run, damaged_runs, repair_run
    from loopengt_core.service.runs import Runs

    spec = {
        "name": "checked",
        "goal": "be checked",
        "pattern": "sequential",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [{"name": "build", "agent": "a"}],
    }
    runs = Runs(store, cwd=tmp_path)
    view = runs.start_run(spec=spec, run_id="checked")
    runs.checkpoint("checked", label="started")
    runs.step("checked", view.tasks[0].task_id, {"done": True})
    result = check_run(store, "checked")
    assert (result.problems, result.events > 2) == ([], True)
    assert damaged_runs(store) == []
    if isinstance(store, Repairable):
        assert repair_run(store, "checked") == "run checked: its log has no damaged line; nothing to repair"
    else:
        with pytest.raises(InvalidArgument, match="--repair works on a file store"):
            repair_run(store, "checked")
    assert runs.get_run("checked").status == "completed"


def test_append_at_appends_only_at_the_logs_end(store_factory: Callable[[], Store]) -> None:
    """Two writers deciding on the same state: exactly one appends; the other is told, and appends nothing."""
    first, second = store_factory(), store_factory()
    needs(first, AppendAt)
    assert isinstance(first, AppendAt)
    assert isinstance(second, AppendAt)
    try:
        first.create_run("r1", SPEC, evs(1, 2))
        assert first.ends_at("r1", 2)
        assert not first.ends_at("r1", 1)
        assert not first.ends_at("nope", 0)
        with first.holding("r1"):
            assert first.append_at("r1", 2, evs(3, 4)) is True
        with second.holding("r1"):
            assert second.append_at("r1", 2, [ev(3, by="second")]) is False  # the log moved on
        assert first.load("r1").events == evs(1, 4)
        assert second.ends_at("r1", 4)
        assert first.append_at("nope", 0, evs(1, 1)) is False
        with pytest.raises(InvalidArgument):
            first.append_at("r1", 4, [])
        with pytest.raises(InvalidArgument):
            first.append_at("r1", 4, evs(6, 6))  # not seq last + 1
        assert first.load("r1").events == evs(1, 4)
    finally:
        first.close()
        second.close()
