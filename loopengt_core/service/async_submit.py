"""A step submitted from an event loop: the lock protocol the MCP layer used to know, in one async call.

`await submit(runs, ...)` runs `Runs.step` on the event loop when the transition is only a local log
append (cheaper than the hop to a worker thread) and the run's lock is free; anything that can take longer
(a busy lock, git, a database, commands) goes to a worker thread. While several runs step at once, the
fsync is group-committed off the loop (`Overlap`), and a snapshot falling due is always written off it
(`kernel.snapshots_elsewhere`). Errors are the service's (`LoopengtError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import anyio

from loopengt_core.engine.view import StepAnswer
from loopengt_core.model.errors import LoopengtError
from loopengt_core.service.kernel import snapshots_elsewhere
from loopengt_core.store import GroupCommit, LockBusy

if TYPE_CHECKING:
    from loopengt_core.service.runs import Runs


class Overlap:
    """Whether a quick step should hand its fsync to the store's group commit (FileStore.deferring).

    Handing it over frees the event loop for other runs' steps, whose fsyncs then overlap; but it costs a
    step two thread wake-ups, which one run stepping alone only loses (bench/concurrency.py: one run over
    HTTP ran at 0.8x). So it is done only while steps of several runs come in together: another run's step
    within the last WINDOW seconds, or one still waiting for its fsync. Every run seen within the window
    counts, not only the last one: with 8 runs stepping, the same run twice in a row is common, and its
    fsync on the event loop stalled the seven others (a twentieth of the loop's time, py-spy). And only
    while the disk's fsyncs take longer than HANDOFF: a quicker one costs the loop less than the thread
    wake-ups that would take it off (with 0.17 ms fsyncs, 8 HTTP runs stepped 1.53x one run with every
    fsync inline and 1.43x with them handed over; with 4-5 ms fsyncs, 1.0x and 1.7x).
    """

    WINDOW = 0.05
    HANDOFF = 0.0005  # seconds
    KEEP = 64  # runs remembered at most; older sightings are dropped first

    def __init__(self) -> None:
        """Nothing seen yet, nothing waiting."""
        self.seen: dict[str, float] = {}  # run id -> when its last step came in (monotonic)
        self.waiting = 0

    def wanted(self, run_id: str, sync_seconds: float | None = None) -> bool:
        """`sync_seconds`: how long the store's fsyncs took lately (None: not known yet)."""
        now = time.monotonic()
        crowded = self.waiting > 0
        for run, at in reversed(self.seen.items()):  # newest first: stop at the first one out of the window
            if at <= now - self.WINDOW:
                break
            if run != run_id:
                crowded = True
                break
        self.seen.pop(run_id, None)
        self.seen[run_id] = now  # insertion order is age order
        while len(self.seen) > self.KEEP:
            del self.seen[next(iter(self.seen))]
        return crowded and (sync_seconds is None or sync_seconds >= self.HANDOFF)


_overlap = Overlap()


def quick(runs: Runs, run_id: str, task_id: str | None = None) -> bool:
    """Whether a transition of this run is only a local log append (no git snapshot, no database).

    Such a transition takes about a millisecond, most of it the fsync: the MCP server runs it on
    its event loop, where handing it to a worker thread would cost a fifth as much again.
    `task_id`: a submission for a task neither open nor answered recently is answered from the
    store's task index, which is file work for a worker thread.
    """
    if runs.kernel.try_lock is None:
        return False  # a database store: its transitions are network round trips
    run = runs.kernel.cached(run_id)
    # not loaded (or, when tracing, not followed) in this process yet: catching up reads the log,
    # which is for a worker thread
    if run is None or (runs.tracer is not None and not runs.tracer.follows(run_id)):
        return False
    if task_id is not None and (
        not isinstance(task_id, str) or (task_id not in run.state.tasks and task_id not in run.state.answers)
    ):
        return False
    return run.state.workspace is None or run.state.ended


def deferring(runs: Runs) -> AbstractContextManager[list[Future[None]]]:
    """Within the block, this thread's appends may return before their fsync (a GroupCommit store);
    the caller must pass each yielded future to `synced` before it answers anyone."""
    return runs.store.deferring() if isinstance(runs.store, GroupCommit) else nullcontext([])


def recent_sync_seconds(runs: Runs) -> float | None:
    """How long the store's fsyncs took lately (None: not known, or a store without group commit)."""
    return runs.store.recent_sync_seconds() if isinstance(runs.store, GroupCommit) else None


def synced(runs: Runs, run_id: str, future: Future[None]) -> None:
    """A deferred append's fsync is done: StoreIOError if it failed, after which the run's cached state
    is dropped (its last lines may not be on disk) and the next call reloads it from the log."""
    if not isinstance(runs.store, GroupCommit):
        return
    try:
        runs.store.synced(run_id, future)
    except LoopengtError:
        runs.kernel.forget(run_id)
        raise


async def submit(
    runs: Runs,
    run_id: str,
    task_id: str,
    output: Any,
    *,
    outcome: str,
    error: str | None,
    usage: Any = None,
    submitted_by: str | None = None,
) -> StepAnswer:
    """`runs.step`, on the event loop when it is only a local append+fsync (cheaper than the hop to a
    worker thread) and the run's lock is free; anything that can take longer goes to a worker thread.
    While several runs step at once, the fsync is group-committed off the loop (`Overlap`)."""
    answer = None
    if quick(runs, run_id, task_id):
        failed: LoopengtError | None = None
        handoff = _overlap.wanted(run_id, recent_sync_seconds(runs))
        with (
            deferring(runs) if handoff else contextlib.nullcontext([]) as fsyncs,
            snapshots_elsewhere() as later,
        ):
            try:
                answer = runs.step(
                    run_id,
                    task_id,
                    output,
                    outcome=outcome,
                    error=error,
                    run_commands=False,
                    settle_next=True,
                    wait=False,
                    usage=usage,
                    submitted_by=submitted_by,
                )
            except LockBusy:
                pass  # someone else holds the run: wait for it on a worker thread, not on the event loop
            except LoopengtError as exc:
                failed = exc
        if fsyncs:  # outside the block: other steps run on this thread meanwhile, deferring on their own
            _overlap.waiting += 1
            try:
                await _durable(runs, run_id, fsyncs)
            finally:
                _overlap.waiting -= 1
        for save in later:  # a snapshot fell due: written off the loop, once the events it covers are durable
            await anyio.to_thread.run_sync(save)
        if failed is not None:
            raise failed
        if answer is not None and answer.commands_pending:  # commands take time: off the event loop
            return await anyio.to_thread.run_sync(runs.settle, run_id, task_id)
    if answer is None:
        answer = await anyio.to_thread.run_sync(
            functools.partial(
                runs.step,
                run_id,
                task_id,
                output,
                outcome=outcome,
                error=error,
                usage=usage,
                submitted_by=submitted_by,
            )
        )
    return answer


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake_soon(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None], _: Future[None]) -> None:
    """Done callback of a store future (a GroupSync thread): wake its waiter on the event loop."""
    loop.call_soon_threadsafe(_wake, waiter)


async def _durable(runs: Runs, run_id: str, fsyncs: list[Future[None]]) -> None:
    """Wait, off the event loop, for the group-committed fsyncs of a quick step's appends (FileStore
    .deferring): other runs' steps proceed meanwhile and their fsyncs overlap. A failed fsync is the
    step's error, and the service forgets the run's state (its lines may not be on disk)."""
    for future in fsyncs:
        if not future.done():
            # not asyncio.wrap_future: a cancelled request would cancel the store's future with it
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            future.add_done_callback(functools.partial(_wake_soon, loop, done))
            await done
        synced(runs, run_id, future)
