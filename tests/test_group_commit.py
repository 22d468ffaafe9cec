"""Group commit: appends inside `FileStore.deferring` fsync on GroupSync's threads, and nothing reads them first.

The crash side (kill -9 between the write and the grouped fsync) is `group.before_sync` in
tests/test_store_files.py and the crash suite; here: the waiting rules, a failed fsync, the switch, and
concurrent steps over HTTP that are all on disk when the server is killed right after answering.
"""

from __future__ import annotations

import errno
import json
import signal
import threading
import time
from pathlib import Path

import anyio
import pytest
from loops import looping_spec
from mcp import Client
from mcp_helpers import HttpServer, ok, step

from loopengt_core.model.events import StepCompleted
from loopengt_core.service.async_submit import recent_sync_seconds
from loopengt_core.service.runs import Runs
from loopengt_core.store import LockBusy
from loopengt_core.store.files import FileStore, StoreIOError, fsio
from loopengt_core.store.groupsync import FSYNC_STATS_ENV, GROUP_COMMIT_ENV, GroupSync


def ev(seq: int) -> StepCompleted:
    return StepCompleted(seq=seq, at="2026-01-01T00:00:00.000Z", step="s", output={"n": seq})


class Gate:
    """An fdatasync that waits until the gate is open (the store's log syncs are swapped for it)."""

    def __init__(self) -> None:
        self.opened = threading.Event()

    def __call__(self, fd: int) -> None:
        assert self.opened.wait(10), "the test never opened the gate"
        fsio.datasync(fd)


def _deferred_append(store: FileStore, seq: int) -> list[object]:
    with store.deferring() as fsyncs:
        store.append("r1", [ev(seq)])
    return list(fsyncs)


def test_a_deferred_append_is_read_by_nobody_until_its_fsync_is_done(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path)
    store.create_run("r1", "spec\n", [ev(1)])
    gate = Gate()
    store._log_sync = gate  # before the first deferred append, which starts GroupSync with it
    gate.opened.set()
    for future in _deferred_append(store, 2):  # the gate is open for this one
        future.result(10)  # type: ignore[attr-defined]
    gate.opened.clear()
    (pending,) = _deferred_append(store, 3)  # returns after the write, before the fsync
    assert not pending.done()  # type: ignore[attr-defined]
    with pytest.raises(LockBusy), store.try_lock("r1"):  # the event loop's lock says busy...
        pass
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.extend(e.seq for e in store.events("r1")))
    reader.start()  # ...and a reader waits for the fsync
    reader.join(0.3)
    assert reader.is_alive()
    assert not seen
    gate.opened.set()
    reader.join(10)
    assert seen == [1, 2, 3]
    store.synced("r1", pending)  # type: ignore[arg-type]
    with store.try_lock("r1"):
        pass
    store.close()


def test_a_failed_grouped_fsync_is_the_callers_error(tmp_path: Path) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    store = FileStore(tmp_path)
    store.create_run("r1", "spec\n", [ev(1)])
    store._log_sync = broken
    (pending,) = _deferred_append(store, 2)
    pending.exception(10)  # type: ignore[attr-defined]
    with pytest.raises(StoreIOError, match="appending to run 'r1'"):
        store.synced("r1", pending)  # type: ignore[arg-type]
    store.close()


def test_group_commit_off_fsyncs_in_the_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GROUP_COMMIT_ENV, "0")
    store = FileStore(tmp_path)
    store.create_run("r1", "spec\n", [ev(1)])
    assert _deferred_append(store, 2) == []
    assert store.last_seq("r1") == 2
    store.close()


def test_a_sync_asked_for_while_one_is_queued_shares_it(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    synced: list[int] = []

    def slow(fd: int) -> None:
        started.set()
        assert release.wait(10)
        synced.append(fd)

    group = GroupSync(slow)
    log = (tmp_path / "log").open("wb")
    fd = log.fileno()
    first = group.submit("a", fd)
    assert started.wait(10)  # running: it may not cover a later write, so the next one queues anew
    second = group.submit("a", fd)
    assert second is not first
    release.set()
    first.result(10)
    second.result(10)
    assert len(synced) == 2
    group.close()
    log.close()


@pytest.mark.anyio
async def test_concurrent_steps_over_http_are_on_disk_when_answered(tmp_path: Path) -> None:
    stats = tmp_path / "fsync.json"
    server = HttpServer("streamable-http", tmp_path / "store", tmp_path, env={FSYNC_STATS_ENV: str(stats)})
    server.start()
    answered: dict[str, int] = {}  # run id -> turns acknowledged

    async def drive(count: int) -> None:
        async with Client(server.url) as client:
            view = ok(await client.call_tool("start_run", {"spec": looping_spec(50, "g", "w")}))
            run_id, task = view["run_id"], view["tasks"][0]["task_id"]
            for turn in range(1, count + 1):
                view = ok(await step(client, run_id, task, {"next": "again"}))
                task = view["tasks"][0]["task_id"]
                answered[run_id] = turn

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(drive, 8)
        await anyio.sleep(0.5)  # the stats file is rewritten every 0.2 s
    finally:
        server.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        server.proc.wait(10)  # type: ignore[union-attr]
    assert len(answered) == 4
    assert set(answered.values()) == {8}
    store = FileStore(tmp_path / "store")
    for run_id in answered:
        completed = [e for e in store.events(run_id) if type(e).__name__ == "StepCompleted"]
        assert len(completed) >= 8, run_id
    store.close()
    # the server's log fsyncs were counted (bench/concurrency.py reads this file)
    assert json.loads(stats.read_text())["syncs"] >= 4 * 8


def test_the_server_groups_fsyncs_only_while_several_runs_step() -> None:
    from loopengt_core.service.async_submit import Overlap

    overlap = Overlap()
    assert [overlap.wanted("a") for _ in range(3)] == [False, False, False]  # one run alone: inline fsync
    assert overlap.wanted("b")  # another run's step just came in
    assert overlap.wanted("a")
    assert overlap.wanted("a")  # the same run twice in a row, while b steps too
    quiet = Overlap.WINDOW + 1
    overlap.seen = {run: at - quiet for run, at in overlap.seen.items()}  # all went quiet
    overlap.waiting = 1  # a step still waits for its grouped fsync
    assert overlap.wanted("a")
    overlap.waiting = 0
    overlap.seen = {run: at - quiet for run, at in overlap.seen.items()}
    assert not overlap.wanted("b")
    assert not overlap.wanted("b")  # b alone again
    for i in range(Overlap.KEEP * 2):  # many runs: a bounded memory of them
        overlap.wanted(f"run-{i}")
    assert len(overlap.seen) <= Overlap.KEEP


def test_the_server_hands_over_only_fsyncs_slower_than_the_handoff() -> None:
    from loopengt_core.service.async_submit import Overlap

    overlap = Overlap()
    overlap.wanted("a")
    assert overlap.wanted("b", None)  # crowded, the disk's speed not known yet: hand it over
    assert not overlap.wanted("a", Overlap.HANDOFF / 3)  # crowded, but a quick fsync is cheaper inline
    assert overlap.wanted("b", Overlap.HANDOFF * 10)  # a slow disk: hand it over


def test_the_store_knows_how_long_its_fsyncs_take(tmp_path: Path) -> None:
    from loopengt_core.store.groupsync import SyncTimer

    calls: list[int] = []

    def slow_sync(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.01)

    timer = SyncTimer(slow_sync)
    assert timer.recent is None
    timer(3)
    timer(4)
    assert calls == [3, 4]
    assert (timer.recent or 0) >= 0.01

    store = FileStore(tmp_path / "store")
    assert store.recent_sync_seconds() is None  # no fsync yet
    runs = Runs(store)
    view = runs.start_run(spec=looping_spec(50, "g", "w"))
    runs.step(view.run_id, view.tasks[0].task_id, {"next": "again"})  # an append: one log fsync
    assert (recent_sync_seconds(runs) or 0) > 0
    store.close()


def test_a_snapshot_due_on_the_event_loop_is_written_off_it(tmp_path: Path) -> None:
    """A step on the event loop leaves a due snapshot to a worker thread (it waits for the run's fsync, then
    makes its own), and answers once it is written."""
    from loopengt_core.service.async_submit import submit

    store = FileStore(tmp_path / "store")
    runs = Runs(store, snapshot_every=2)
    view = runs.start_run(spec=looping_spec(50, "g", "w"))
    run_id, task = view.run_id, view.tasks[0].task_id
    writers: list[int] = []
    save = store.save_snapshot

    def recorded(*args: object, **kwargs: object) -> None:
        writers.append(threading.get_ident())
        save(*args, **kwargs)  # type: ignore[arg-type]

    store.save_snapshot = recorded  # type: ignore[method-assign]

    async def drive() -> int:
        nonlocal task
        for _ in range(6):
            answer = await submit(runs, run_id, task, {"next": "again"}, outcome="success", error=None)
            task = answer.tasks[0].task_id
            assert len(writers) == 0 or (tmp_path / "store" / "runs" / run_id / "snapshot.json").exists()
        return threading.get_ident()

    loop_thread = anyio.run(drive)
    assert len(writers) >= 3  # a snapshot every 2 events, 3+ events a step
    assert loop_thread not in writers
    snapshot = json.loads((tmp_path / "store" / "runs" / run_id / "snapshot.json").read_text())
    assert snapshot["seq"] > 6
    runs.close()
