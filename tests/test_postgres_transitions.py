"""The runs service's transitions on PostgreSQL: one round trip a step when this process's state is at the
log's end (`AppendAt`), and the locked path again, deciding afresh, when another instance moved the log.

Every test gets a fresh database on the server named by LOOPENGT_TEST_POSTGRES (see `.ci/postgres.sh`).
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from loops import looping_spec

from loopengt_core.model.errors import Conflict, LoopengtError
from loopengt_core.model.events import OutputSubmitted
from loopengt_core.service.runs import Runs
from loopengt_core.store.postgres import PostgresStore

SPEC = looping_spec(500)


def submissions(store: PostgresStore, run_id: str) -> Counter[str]:
    """How many outputs the log holds for each task."""
    return Counter(e.task_id for e in store.events(run_id) if isinstance(e, OutputSubmitted))


def test_a_step_is_one_round_trip(postgres_dsn: str, tmp_path: Path) -> None:
    """A step on a run this process holds at the log's end sends one statement and waits once: the
    decision is made on the cached state and `loopengt_append_at` locks, checks, appends and notifies."""
    store = PostgresStore(postgres_dsn, pool_size=1)
    try:
        runs = Runs(store, cwd=tmp_path)
        view = runs.start_run(spec=SPEC)
        task = view.tasks[0].task_id
        for _ in range(6):  # psycopg prepares a statement on its fifth use
            task = runs.step(view.run_id, task, {"next": "again"}).tasks[0].task_id
        trace = tmp_path / "trace.txt"
        with trace.open("w") as handle:
            with store._conns.conn() as conn:  # the pool's one connection
                conn.pgconn.trace(handle.fileno())
                conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            answer = runs.step(view.run_id, task, {"next": "again"})
            with store._conns.conn() as conn:
                conn.pgconn.untrace()
        directions = [line.split("\t", 1)[0] for line in trace.read_text().splitlines()]
        assert sum(1 for pair in itertools.pairwise(directions) if pair == ("F", "B")) == 1, trace.read_text()
        assert answer.tasks[0].task_id != task
        assert submissions(store, view.run_id)[task] == 1
    finally:
        store.close()


def test_a_step_on_a_state_another_instance_moved_past_decides_again_under_the_lock(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """Two servers take turns on one run: each step of the one whose state is behind finds the log moved,
    appends nothing from its stale decision, and decides again on the log as it is."""
    first, second = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    try:
        a, b = Runs(first, cwd=tmp_path), Runs(second, cwd=tmp_path)
        view = a.start_run(spec=SPEC)
        run_id, task = view.run_id, view.tasks[0].task_id
        task = a.step(run_id, task, {"next": "again"}).tasks[0].task_id  # a holds the run at its log's end
        for turn in range(6):
            runs = (b, a)[turn % 2]
            answer = runs.step(run_id, task, {"next": "again", "turn": turn})
            assert answer.tasks[0].task_id != task
            task = answer.tasks[0].task_id
        assert b.get_run(run_id).tasks[0].task_id == task  # a read on a state behind reads the log first
        # a stale instance submitting an answered task again: refused from the log, nothing appended
        last = first.last_seq(run_id)
        done = a.step(run_id, task, {"next": "stop"}).tasks[0].task_id
        with pytest.raises(Conflict, match="already submitted with a different output"):
            b.step(run_id, task, {"next": "again"})
        assert second.last_seq(run_id) > last
        assert set(submissions(first, run_id).values()) == {1}
        assert b.step(run_id, done, {"ok": True}).status == "completed"
    finally:
        first.close()
        second.close()


def test_two_servers_stepping_one_run_at_once_record_each_task_once(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """Two instances race on the same run, each submitting whatever task it sees open: every task gets
    exactly one output in the log, and the seqs have no gap or repeat."""
    stores = [PostgresStore(postgres_dsn) for _ in range(2)]
    try:
        services = [Runs(store, cwd=tmp_path) for store in stores]
        view = services[0].start_run(spec=SPEC)
        run_id = view.run_id
        errors: list[str] = []
        taken = [0, 0]

        def race(index: int) -> None:
            runs = services[index]
            for _ in range(40):
                try:
                    open_tasks = runs.get_run(run_id).tasks
                    if not open_tasks:
                        continue
                    runs.step(run_id, open_tasks[0].task_id, {"next": "again", "by": index})
                    taken[index] += 1
                except LoopengtError as exc:  # the other instance answered that task first
                    if "task" not in str(exc):
                        errors.append(repr(exc))

        threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        events = stores[0].events(run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        counts = submissions(stores[0], run_id)
        assert set(counts.values()) == {1}
        assert sum(counts.values()) == sum(taken)
    finally:
        for store in stores:
            store.close()
