"""The transition kernel of the runs service: load, decide under one lock, append, answer.

Every transition of a run happens here, under the store's per-run lock: bring the cached state up to the
log's end, enforce deadlines (`tick`), let the engine decide, make isolated steps' worktrees
(`loopengt_core.service.worktree_steps`), append the events durably, and only then answer. On a store
that can `append_at` (PostgreSQL), a decision with no other effects is made on the cached state first and
appended only if the log still ends there, in one round trip; else it is made again under the lock. It keeps the
runs' states (least recently used dropped first) and the engines of their specs, and wakes this process's
waits when a run changes (its own appends at once, other processes' through the store's feed or a poll).
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import structlog

from loopengt_core.engine import Engine
from loopengt_core.engine.validation import load_spec
from loopengt_core.model.bounded import CACHED_RUNS_ENV, LRU, env_count
from loopengt_core.model.errors import LoopengtError, NotFound
from loopengt_core.model.events import AnyEvent, RunEnded, RunPaused
from loopengt_core.model.spec import LoopSpec
from loopengt_core.model.state import RunState, apply, project_run, workdir
from loopengt_core.service import telemetry
from loopengt_core.service.changefeed import SharedChanges
from loopengt_core.service.loaded import Decide, LoadedRun, nothing
from loopengt_core.service.worktree_steps import end_worktrees, isolate
from loopengt_core.store import AppendAt, ChangeFeed, LocalLocking, LockBusy, Store, check_id

log = structlog.get_logger("loopengt.runs")

CHANGE_POLL_SECONDS = 0.2  # how often a wait looks at the store for changes made by other processes
FEED_POLL_SECONDS = 2.0  # the same with a push feed (PostgreSQL): only a safety net for a lost notification

T = TypeVar("T")

# Set by a caller on an event loop (async_submit): a snapshot falling due in its transitions is handed to it
# to write off the loop, instead of written in place (it first waits for the run's group-committed fsync,
# then makes two fsyncs of its own: on a slow disk, ~10 ms in which no other run's step would be served).
_snapshots_elsewhere: ContextVar[list[Callable[[], None]] | None] = ContextVar(
    "snapshots_elsewhere", default=None
)


@contextmanager
def snapshots_elsewhere() -> Iterator[list[Callable[[], None]]]:
    """Within the block, this context's transitions leave their due snapshots in the yielded list; the
    caller runs each (in a worker thread) once the transition's fsync is done. Each logs its own failure."""
    later: list[Callable[[], None]] = []
    token = _snapshots_elsewhere.set(later)
    try:
        yield later
    finally:
        _snapshots_elsewhere.reset(token)


class TransitionKernel:
    """The runs of one store as this process knows them, and the one way to change them. Thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        tracer: telemetry.RunTracer | None,
        snapshot_every: int,
        cached_runs: int | None,
        on_pause: Callable[[str, str], object],
    ) -> None:
        """`on_pause(run_id, label)`: told after a transition paused a run (a budget or stuck pause), outside
        the lock; the service takes a checkpoint a person can fork from."""
        self.store = store
        # looked up once: a protocol isinstance costs microseconds, and `quick` runs on every step
        self.try_lock = store.try_lock if isinstance(store, LocalLocking) else None
        self.append_at = store if isinstance(store, AppendAt) else None
        self.clock = clock
        self.tracer = tracer
        self.snapshot_every = snapshot_every
        self.on_pause = on_pause
        self._cache: LRU[str, LoadedRun] = LRU(cached_runs or env_count(CACHED_RUNS_ENV, 64))
        self._engines: LRU[str, Engine] = LRU(self._cache.limit)
        self._guard = threading.Lock()
        self._changes = threading.Condition()
        self._generation = 0  # counts this process's appends (and worker ends), so waits wake at once
        self._watchers: dict[str, list[Callable[[LoadedRun], None]]] = {}
        self.feed = (
            SharedChanges(store.changes, lambda _: self.announce()) if isinstance(store, ChangeFeed) else None
        )

    def cached(self, run_id: str) -> LoadedRun | None:
        """The run as last loaded here, if it still is in memory (no lock: it may be behind its log)."""
        with self._guard:
            return self._cache.get(run_id)

    def keep(self, run_id: str, run: LoadedRun) -> None:
        """Remember a run just created (its state is its whole log)."""
        with self._guard:
            self._cache[run_id] = run

    def forget(self, run_id: str) -> None:
        """Drop the run's state: the next transition reloads it from the log."""
        with self._guard:
            self._cache.pop(run_id)

    def known(self, run_id: str) -> None:
        """NotFound unless the run exists (a valid id first)."""
        check_id(run_id)
        if run_id not in self._cache and not self.store.exists(run_id):
            raise NotFound(
                f"no run '{run_id}' in this store; list_runs shows the runs there are", run_id=run_id
            )

    def sync(self, run_id: str) -> LoadedRun:
        """The run's state brought up to the end of its log (caller holds the run's lock)."""
        with self._guard:
            run = self._cache.get(run_id)
        if run is None:
            loaded = self.store.load(run_id)
            state = RunState.model_validate(loaded.snapshot) if loaded.snapshot is not None else None
            run = LoadedRun(
                project_run(loaded.events, state), self.engine_of(loaded.spec_text), loaded.spec_text
            )
            with self._guard:
                self._cache[run_id] = run
        else:
            for event in self.store.events(run_id, after=run.state.seq):
                run.state = apply(run.state, event)
        return run

    def read(self, run_id: str) -> LoadedRun:
        """The run brought up to the end of its log, under its lock (deadlines applied)."""
        return self.transition(run_id, nothing)

    def transition(self, run_id: str, decide: Decide) -> LoadedRun:
        """One transition under the run's lock (`decide` says what to append); the run after it."""
        return self.locked(run_id, decide, lambda run: run)

    def locked(
        self,
        run_id: str,
        decide: Decide,
        then: Callable[[LoadedRun], T],
        *,
        wait: bool = True,
        rerunnable: bool = False,
        claim: Decide | None = None,
    ) -> T:
        """One transition under the run's lock; `then` reads the result before another thread can change it.

        `wait=False`: LockBusy instead of waiting for the lock (only a `LocalLocking` store can try a lock;
        others always say busy).
        `rerunnable`: `decide` (and `claim`) has no effect beyond the events it returns (what it notes for `then` it sets
        afresh on each call), so on an `AppendAt` store it may run on the cached state first, without the
        lock, and again under the lock when the log moved meanwhile (`at_end`). `nothing` always is.
        `claim`: decided last, after deadlines, worktrees and budgets: the command runner's lease on a
        command the decision made due (`CommandRunner.claim`), so that it takes no lock cycle of its own.
        """
        self.known(run_id)
        if wait and self.append_at is not None and (rerunnable or decide is nothing):
            done = self.at_end(self.append_at, run_id, decide, then, claim)
            if done is not None:
                return done[0]
        with self.lock(run_id, wait):
            run = self.sync(run_id)
            now = self.clock()
            events = run.engine.tick(run.state, now)
            ticked = run.state.seq
            try:
                events += decide(run.engine, run.state, now)
                events += isolate(run_id, run, now)
                events += run.engine.wall_clock(run.state, now)
                if claim is not None:
                    events += claim(run.engine, run.state, now)
            except BaseException:
                if run.state.seq != ticked:
                    # decide applied events to the cached state and then failed: those events never
                    # reach the log, so forget the state (reloaded from the log next time)
                    self.forget(run_id)
                    if events:
                        self.store.append(run_id, events)
                elif events:
                    self.append(run_id, run, events)
                raise
            if events:
                self.append(run_id, run, events)
            if run.state.worktrees and any(isinstance(e, RunEnded) for e in events):
                end_worktrees(run_id, run)
            result = then(run)
            if self._watchers:
                self._tell_watchers(run_id, run)
        self.after(run_id, run, events)
        return result

    def at_end(
        self,
        store: AppendAt,
        run_id: str,
        decide: Decide,
        then: Callable[[LoadedRun], T],
        claim: Decide | None = None,
    ) -> tuple[T] | None:
        """The transition decided on the cached state and appended only if the log still ends where that
        state does (`append_at`: one round trip on PostgreSQL, where the lock, append and unlock are
        three), or, with nothing to append, once the log is seen to end there.

        None, having appended nothing and kept no state the log lacks, when it cannot go this way: no
        cached state, isolated steps (their worktrees are effects made before the append), the log moved
        on, or the decision failed (the stale state may be why): the caller decides again under the lock.
        Holding the run against this process's threads keeps its own transitions of the run in order.
        """
        with store.holding(run_id):
            run = self.cached(run_id)
            if run is None or run.engine.isolated:
                return None
            last = run.state.seq
            now = self.clock()
            try:
                events = run.engine.tick(run.state, now)
                events += decide(run.engine, run.state, now)
                events += run.engine.wall_clock(run.state, now)
                if claim is not None:
                    events += claim(run.engine, run.state, now)
            except BaseException as exc:
                if run.state.seq != last:
                    self.forget(run_id)  # the state holds events that will not be appended
                if not isinstance(exc, Exception):
                    raise
                return None  # decided again under the lock, which raises it for real
            if events:
                try:
                    appended = store.append_at(run_id, last, events)
                except BaseException:
                    self.forget(run_id)  # the state ran ahead of the log: reload next time
                    raise
                if not appended:
                    self.forget(run_id)
                    return None
                self.appended(run_id, run, events)
            elif not store.ends_at(run_id, last):
                return None  # the state is only behind: the lock's sync reads what it lacks
            result = then(run)
            if self._watchers:
                self._tell_watchers(run_id, run)
        self.after(run_id, run, events)
        return (result,)

    def after(self, run_id: str, run: LoadedRun, events: list[AnyEvent]) -> None:
        """Outside the lock, after a transition: a budget or stuck pause is a checkpoint a person can fork from."""
        for event in events:  # a loop, not any(genexpr): this runs on every step
            if isinstance(event, RunPaused):
                break
        else:
            return
        try:
            self.on_pause(run_id, f"paused: {run.state.paused_for}")
        except LoopengtError as exc:  # the pause is durable; the checkpoint is a convenience
            log.warning("pause_checkpoint_failed", run_id=run_id, error=str(exc))

    @contextmanager
    def watching(self, run_id: str, watcher: Callable[[LoadedRun], None]) -> Iterator[None]:
        """Within the block, `watcher(run)` is told the run at the end of each of its lock cycles in this
        process (still under the lock): a caller waiting on the run's commands reads what their outcomes
        left without a lock cycle of its own (`loopengt_core.service.settling`)."""
        with self._guard:
            self._watchers.setdefault(run_id, []).append(watcher)
        try:
            yield
        finally:
            with self._guard:
                watchers = self._watchers.get(run_id, [])
                watchers.remove(watcher)
                if not watchers:
                    self._watchers.pop(run_id, None)

    def _tell_watchers(self, run_id: str, run: LoadedRun) -> None:
        with self._guard:
            watchers = list(self._watchers.get(run_id, ()))
        for watcher in watchers:
            try:
                watcher(run)
            except LoopengtError as exc:  # the transition is durable; the watcher reads again, locked
                log.warning("watcher_failed", run_id=run_id, error=exc.message)

    def lock(self, run_id: str, wait: bool) -> AbstractContextManager[None]:
        """The run's lock: waited for, or (`wait=False`) tried, LockBusy when held."""
        if wait:
            return self.store.lock(run_id)
        if self.try_lock is None:
            raise LockBusy(run_id)
        return self.try_lock(run_id)

    def append(self, run_id: str, run: LoadedRun, events: list[AnyEvent]) -> None:
        """Append a transition's events (the cached state has them applied), wake waits, snapshot now and then."""
        try:
            self.store.append(run_id, events)
        except BaseException:
            self.forget(run_id)  # the state ran ahead of the log: reload next time
            raise
        self.appended(run_id, run, events)

    def appended(self, run_id: str, run: LoadedRun, events: list[AnyEvent]) -> None:
        """After a transition's events are durable: wake waits, trace, snapshot now and then."""
        first = events[0].seq
        self.announce()
        if self.tracer is not None:
            self.tracer.record(self.store, run_id, run.state, events)
        every = self.snapshot_every
        if (first - 1) // every != run.state.seq // every:
            save = functools.partial(self._snapshot, run_id, run.state.seq, run.state.model_dump(mode="json"))
            later = _snapshots_elsewhere.get()
            if later is None:
                save()
            else:
                later.append(save)

    def _snapshot(self, run_id: str, seq: int, state: dict[str, object]) -> None:
        """Save the run's state after `seq`; a failure is logged: the events are durable, and a missed
        snapshot only costs replay time. No lock needed: a snapshot names its seq, and the store keeps
        whichever whole one it last renamed into place."""
        try:
            self.store.save_snapshot(run_id, seq, state)
        except LoopengtError as exc:
            log.warning("snapshot_failed", run_id=run_id, error=str(exc))

    def engine_of(self, text: str, parsed: LoopSpec | None = None) -> Engine:
        """The engine of a spec's text, made once per text (`parsed`: the spec already parsed)."""
        key = hashlib.sha256(text.encode()).hexdigest()
        with self._guard:
            engine = self._engines.get(key)
        if engine is None:
            engine = Engine(parsed or load_spec(text, source="stored spec"))
            with self._guard:
                self._engines[key] = engine
        return engine

    def workdir(self, run_id: str, step: str) -> Path | None:
        """Where a step's commands run when not in the run's directory: its worktree (isolation), its
        join's merge of them, or the run's line after a join (`state.workdir`)."""
        run = self.cached(run_id)
        found = workdir((run or self.read(run_id)).state, step)
        return Path(found) if found is not None else None

    def root(self, run_id: str) -> str | None:
        """The run's working directory when it records its files (never changes during a run)."""
        run = self.cached(run_id)
        state = (run or self.read(run_id)).state
        return state.workspace.root if state.workspace is not None else None

    def live_root(self, run_id: str) -> str | None:
        """The run's working directory while it runs and records its files (None once it ended)."""
        run = self.cached(run_id)
        state = (run or self.read(run_id)).state
        return state.workspace.root if state.workspace is not None and not state.ended else None

    def announce(self) -> None:
        """Wake the waits of this process (an append happened, or a command worker ended)."""
        with self._changes:
            self._generation += 1
            self._changes.notify_all()

    def wait_for_change(self, run_id: str, after_seq: int, timeout: float) -> int:
        """Wait until the run's log passes `after_seq` or `timeout` seconds pass; returns the latest seq.

        This process's own appends wake it at once; other processes' (another server, the CLI) through the
        store's push feed (PostgreSQL LISTEN/NOTIFY, `feed`) or, without one, by looking at the log's end
        every CHANGE_POLL_SECONDS (a stat for the file store).
        """
        check_id(run_id)
        poll = self.poll_seconds()
        deadline = time.monotonic() + max(0.0, float(timeout))
        while True:
            with self._changes:
                generation = self._generation
            seq = self.store.last_seq(run_id)
            left = deadline - time.monotonic()
            if seq > after_seq or left <= 0:
                return seq
            with self._changes:
                if self._generation == generation:
                    self._changes.wait(min(left, poll))

    def wait_until(self, done: Callable[[], bool], bound: float) -> bool:
        """Wait up to `bound` seconds for `done()` (asked again after each change); whether it is."""
        deadline = time.monotonic() + bound
        while True:
            with self._changes:
                generation = self._generation  # read first: a change after it is not missed
            if done():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._changes:
                if self._generation == generation:
                    self._changes.wait(min(left, self.poll_seconds()))

    def poll_seconds(self) -> float:
        """How often a wait looks at the store for other processes' changes (a push feed wakes it anyway)."""
        if self.feed is None:
            return CHANGE_POLL_SECONDS
        self.feed.start()
        return FEED_POLL_SECONDS
