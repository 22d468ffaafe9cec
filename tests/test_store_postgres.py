"""What only the PostgreSQL store promises: schema migrations, locks across processes, LISTEN/NOTIFY, races.

The store contract itself runs over this store too (`conftest.STORE_FACTORIES`). Every test gets a fresh
database on the server named by LOOPENGT_TEST_POSTGRES (see `.ci/postgres.sh`).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from loopengt_core.model.errors import InvalidArgument, LoopengtError, StoreConflict
from loopengt_core.model.events import StepCompleted, event_data
from loopengt_core.store import open_store
from loopengt_core.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore, StoreIOError

SPEC = "version: 1\nloop: demo\n"


def ev(seq: int, **data: Any) -> StepCompleted:
    """An event whose `output` carries `data` (the stores see a record like any other)."""
    return StepCompleted(seq=seq, at="2026-01-01T00:00:00.000Z", step="s", output=data or {"n": seq})


@pytest.fixture
def open_pg(postgres_dsn: str) -> Iterator[Callable[..., PostgresStore]]:
    """Opens PostgresStore instances on this test's database and closes them all afterwards."""
    opened: list[PostgresStore] = []

    def make(dsn: str = postgres_dsn, **options: Any) -> PostgresStore:
        store = PostgresStore(dsn, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def sql(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (what an operator would see)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query.encode(), params or None)
        return cur.fetchall() if cur.description else []


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Poll the server for a state no event can signal (another process waiting on a lock), bounded."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------------------- schema


def test_migrations_are_versioned_and_idempotent(postgres_dsn: str) -> None:
    """A second start applies nothing, keeps the data, and the version table lists every migration once."""
    first = PostgresStore(postgres_dsn)
    first.create_run("r1", SPEC, [ev(1)])
    first.close()
    second = PostgresStore(postgres_dsn)
    try:
        assert second.schema_version == SCHEMA_VERSION == len(MIGRATIONS) - 1
        assert second.load("r1").events == [ev(1)]
    finally:
        second.close()
    rows = sql(postgres_dsn, "SELECT version FROM loopengt_schema_version ORDER BY version")
    assert [r[0] for r in rows] == list(range(len(MIGRATIONS)))


def test_concurrent_starts_migrate_once(postgres_dsn: str) -> None:
    """Starts racing on an empty database all succeed: the advisory lock lets one migrate, the rest see it."""
    barrier = threading.Barrier(6)
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait(5)
        try:
            stores.append(PostgresStore(postgres_dsn, pool_size=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        assert len(stores) == 6
        rows = sql(postgres_dsn, "SELECT version FROM loopengt_schema_version ORDER BY version")
        assert [r[0] for r in rows] == list(range(len(MIGRATIONS)))
        stores[0].create_run("r1", SPEC, [])
        assert stores[-1].exists("r1")
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("previous", [6, 7])
def test_a_database_at_an_older_schema_is_migrated_and_keeps_its_runs(
    postgres_dsn: str, open_pg: Callable[..., PostgresStore], monkeypatch: pytest.MonkeyPatch, previous: int
) -> None:
    """A store written by the code before `loopengt_lock_tail` (schema 6) or before `loopengt_append_at`
    (schema 7) gets the functions on the next start and its runs carry on: locked transitions and
    one-round-trip appends continue where the old code left off."""
    from loopengt_core.store.postgres import schema

    monkeypatch.setattr(schema, "MIGRATIONS", MIGRATIONS[: previous + 1])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", previous)
    old = PostgresStore(postgres_dsn)
    assert old.schema_version == previous
    old.create_run("r1", SPEC, [ev(1)])
    old.append("r1", [ev(2)])
    old.close()
    monkeypatch.undo()
    assert sql(postgres_dsn, "SELECT max(version) FROM loopengt_schema_version") == [(previous,)]
    new = open_pg()
    assert new.schema_version == SCHEMA_VERSION == 8
    with new.lock("r1"):
        assert new.events("r1", after=1) == [ev(2)]
        new.append("r1", [ev(3)])
    with new.lock("r1"):  # now it knows the tail: the lock's own read serves this
        assert new.events("r1", after=3) == []
    assert new.append_at("r1", 3, [ev(4)])
    assert new.load("r1").events == [ev(1), ev(2), ev(3), ev(4)]


def test_a_server_at_schema_7_keeps_stepping_while_another_migrates_to_8(
    postgres_dsn: str, open_pg: Callable[..., PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rolling upgrade: an instance of the schema-7 code (locked transitions only) keeps appending while a
    new one migrates the database and appends with `append_at`; each sees the other's events and no seq
    is written twice (the session lock and the transaction lock are one lock)."""
    from loopengt_core.store.postgres import schema

    monkeypatch.setattr(schema, "MIGRATIONS", MIGRATIONS[:8])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 7)
    old = open_pg()
    old.create_run("r1", SPEC, [ev(1)])
    monkeypatch.undo()
    new = open_pg()
    assert new.schema_version == 8
    assert sql(postgres_dsn, "SELECT max(version) FROM loopengt_schema_version") == [(8,)]
    new.load("r1")
    for round_ in range(5):
        with old.lock("r1"):  # the old code's transition: lock, read the tail, append, unlock
            last = old.last_seq("r1")
            old.append("r1", [ev(last + 1, by="old")])
        assert not new.append_at("r1", 1 + 2 * round_, [ev(2 + 2 * round_, by="new")])  # it moved on
        assert new.append_at("r1", 2 + 2 * round_, [ev(3 + 2 * round_, by="new")])
    events = new.load("r1").events
    assert [e.seq for e in events] == list(range(1, 12))
    assert [event_data(e)["output"].get("by") for e in events[1:]] == ["old", "new"] * 5


def test_a_newer_schema_is_refused_clearly(postgres_dsn: str) -> None:
    PostgresStore(postgres_dsn).close()
    sql(postgres_dsn, "INSERT INTO loopengt_schema_version (version) VALUES (%s)", SCHEMA_VERSION + 1)
    with pytest.raises(StoreIOError, match="newer than this loopengt knows"):
        PostgresStore(postgres_dsn)


# --------------------------------------------------------------------------------------- races and locks

WRITER = textwrap.dedent(
    """
    import sys
    from loopengt_core.model.events import StepCompleted
    from loopengt_core.store.postgres import PostgresStore

    dsn, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = PostgresStore(dsn)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(rounds):
        with store.lock("shared"):
            last = store.last_seq("shared")
            for seq, step in ((last + 1, "enter"), (last + 2, "exit")):
                at = "2026-01-01T00:00:00.000Z"
                store.append("shared", [StepCompleted(seq=seq, at=at, step=step, output={"w": name})])
    store.close()
    """
)


def test_processes_appending_under_lock_never_interleave(
    postgres_dsn: str, open_pg: Callable[..., PostgresStore]
) -> None:
    """Two processes each append twice per lock; both queue on the lock together, and no pair is split."""
    holder = open_pg()
    holder.create_run("shared", SPEC, [])
    rounds = 25
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, postgres_dsn, name, str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"

        def waiting() -> int:
            rows = sql(
                postgres_dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            return int(rows[0][0])

        with holder.lock("shared"):  # both writers must queue behind this: genuine contention
            for writer in writers:
                assert writer.stdin is not None
                writer.stdin.write("go\n")
                writer.stdin.flush()
            wait_until(lambda: waiting() == 2, "both writers to wait on the advisory lock")
        for writer in writers:
            _, err = writer.communicate(timeout=60)
            assert writer.returncode == 0, err
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    events = holder.events("shared")
    assert [e.seq for e in events] == list(range(1, 4 * rounds + 1))
    pairs = [(event_data(events[i]), event_data(events[i + 1])) for i in range(0, len(events), 2)]
    for enter, exit_ in pairs:
        assert (enter["step"], exit_["step"]) == ("enter", "exit")
        assert enter["output"]["w"] == exit_["output"]["w"]
    owners = [enter["output"]["w"] for enter, _ in pairs]
    assert owners.count("a") == owners.count("b") == rounds
    assert sum(x != y for x, y in itertools.pairwise(owners)) >= 1


def test_concurrent_create_run_exactly_one_wins(open_pg: Callable[..., PostgresStore]) -> None:
    stores = [open_pg(pool_size=1) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    won: list[int] = []
    lost: list[int] = []
    errors: list[BaseException] = []

    def create(index: int) -> None:
        barrier.wait(5)
        try:
            stores[index].create_run("same", f"spec: {index}\n", [ev(1, writer=index)])
            won.append(index)
        except StoreConflict:
            lost.append(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(won) == 1
    assert sorted(won + lost) == list(range(len(stores)))
    loaded = stores[0].load("same")
    assert loaded.spec_text == f"spec: {won[0]}\n"
    assert loaded.events == [ev(1, writer=won[0])]


def test_lock_with_a_pool_of_one_runs_the_block_on_its_own_connection(
    open_pg: Callable[..., PostgresStore],
) -> None:
    """A whole transition inside lock() needs no second connection, so pool_size=1 cannot deadlock."""
    store = open_pg(pool_size=1)
    store.create_run("r1", SPEC, [ev(1)])
    outside: list[int] = []
    entered = threading.Event()

    def read_outside() -> None:
        entered.wait(5)
        outside.append(store.last_seq("r1"))  # waits for the pooled connection the block holds

    reader = threading.Thread(target=read_outside)
    reader.start()
    with store.lock("r1"):
        entered.set()
        loaded = store.load("r1")
        store.append("r1", [ev(loaded.events[-1].seq + 1)])
        store.save_snapshot("r1", 2, {"at": 2})
        assert store.events("r1", after=1) == [ev(2)]
        assert store.list_runs() == ["r1"]
        assert store.version("r1") == "2"
    reader.join(10)
    assert outside == [2]


def test_locks_on_many_runs_with_a_small_pool_finish(open_pg: Callable[..., PostgresStore]) -> None:
    """More threads than connections, each locking its own run and appending inside: no deadlock."""
    store = open_pg(pool_size=2)
    runs = [f"r{i}" for i in range(6)]
    for run_id in runs:
        store.create_run(run_id, SPEC, [])
    errors: list[BaseException] = []

    def work(run_id: str) -> None:
        try:
            for _ in range(10):
                with store.lock(run_id):
                    store.append(run_id, [ev(store.last_seq(run_id) + 1)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert [store.last_seq(r) for r in runs] == [10] * len(runs)


def test_nested_locks_share_the_held_connection(open_pg: Callable[..., PostgresStore]) -> None:
    store = open_pg(pool_size=1)
    store.create_run("a", SPEC, [])
    store.create_run("b", SPEC, [])
    with store.lock("a"), store.lock("b"):
        store.append("b", [ev(1)])
        with pytest.raises(InvalidArgument, match="not re-entrant"):
            store.lock("a").__enter__()
    other = open_pg()
    with other.lock("a"), other.lock("b"):  # both were released
        assert other.last_seq("b") == 1


def test_lock_is_released_when_the_block_raises(open_pg: Callable[..., PostgresStore]) -> None:
    first, second = open_pg(), open_pg()
    first.create_run("r1", SPEC, [])
    with pytest.raises(RuntimeError), first.lock("r1"):
        raise RuntimeError("the transition failed")
    taken = threading.Event()

    def take() -> None:
        with second.lock("r1"):
            taken.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert taken.wait(5)
    thread.join(5)


def test_a_killed_session_releases_the_lock_and_the_pool_recovers(
    postgres_dsn: str, open_pg: Callable[..., PostgresStore]
) -> None:
    """If the server drops the lock's session mid-block, calls fail as StoreIOError, never psycopg errors."""
    first, second = open_pg(pool_size=1), open_pg()
    first.create_run("r1", SPEC, [])
    with first.lock("r1"):
        sql(
            postgres_dsn,
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks WHERE locktype = 'advisory' AND granted",
        )
        with pytest.raises(StoreIOError, match="appending to run 'r1'"):
            first.append("r1", [ev(1)])
        with second.lock("r1"):  # the session that held it is gone, so the lock is free
            second.append("r1", [ev(1)])
    assert first.last_seq("r1") == 1  # a fresh connection replaced the dead one


@pytest.mark.parametrize("isolation", ["server default", "repeatable read"])
def test_the_tail_read_with_the_lock_sees_what_another_writer_committed_while_it_waited(
    postgres_dsn: str, open_pg: Callable[..., PostgresStore], isolation: str
) -> None:
    """lock() reads the log's tail in its own round trip (pipelined after the lock statement). That read
    must start once the lock is granted: a writer that held the lock meanwhile has its append seen, even
    when the role's default isolation would give a whole transaction one snapshot."""
    if isolation != "server default":
        database = sql(postgres_dsn, "SELECT current_database()")[0][0]
        sql(
            postgres_dsn,
            f"ALTER ROLE CURRENT_USER IN DATABASE \"{database}\" SET default_transaction_isolation = '{isolation}'",
        )
    first, second = open_pg(pool_size=1), open_pg(pool_size=1)
    first.create_run("r1", SPEC, [ev(1)])  # `first` knows the log ends at 1: its lock reads after that
    assert first.events("r1") == [ev(1)]
    seen: list[Any] = []

    def transition() -> None:
        with first.lock("r1"):
            seen.append(first.events("r1", after=1))
            first.append("r1", [ev(3)])

    with second.lock("r1"):
        thread = threading.Thread(target=transition)
        thread.start()
        wait_until(
            lambda: bool(
                sql(postgres_dsn, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ),
            "the first store to wait for the lock",
        )
        second.append("r1", [ev(2)])
    thread.join(10)
    assert seen == [[ev(2)]]
    assert second.events("r1") == [ev(1), ev(2), ev(3)]


def test_a_transition_after_another_instance_appended_reads_its_events(
    open_pg: Callable[..., PostgresStore],
) -> None:
    """The tail read with the lock serves events(after=...) for any `after` it covers, and an append in the
    block makes the next events() call read the server again."""
    first, second = open_pg(), open_pg()
    first.create_run("r1", SPEC, [ev(1)])
    second.append("r1", [ev(2), ev(3)])
    with first.lock("r1"):
        assert first.events("r1", after=1) == [ev(2), ev(3)]
        assert first.events("r1", after=2) == [ev(3)]
        assert first.events("r1", after=1, limit=1) == [ev(2)]
        assert first.events("r1", after=0) == [ev(1), ev(2), ev(3)]  # not covered: read from the server
        first.append("r1", [ev(4)])
        assert first.events("r1", after=1) == [ev(2), ev(3), ev(4)]
    with pytest.raises(LoopengtError, match="no run"), first.lock("nope"):
        pass


def traced_trips(store: PostgresStore, tmp_path: Any, block: Callable[[], object]) -> tuple[int, str]:
    """Round trips `block` sends on the pool's one connection (`pool_size=1`), from libpq's protocol trace:
    a round trip is a switch from client messages (F) to server messages (B)."""
    trace = tmp_path / f"trace-{time.monotonic_ns()}.txt"
    with trace.open("w") as handle:
        with store._conns.conn() as conn:  # the pool's one connection, which the block will use too
            conn.pgconn.trace(handle.fileno())
            conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        block()
        with store._conns.conn() as conn:
            conn.pgconn.untrace()  # flushes
    text = trace.read_text()
    directions = [line.split("\t", 1)[0] for line in text.splitlines()]
    return sum(1 for a, b in itertools.pairwise(directions) if (a, b) == ("F", "B")), text


def test_a_locked_transition_is_three_round_trips(
    open_pg: Callable[..., PostgresStore], tmp_path: Any
) -> None:
    """lock (with the run's existence and its tail), the block's catch-up read, the append with its NOTIFY
    and the unlock: three round trips on the wire, no catalogue or version reads, no pool probes."""
    store = open_pg(pool_size=1)
    store.create_run("r1", SPEC, [ev(1)])

    def transition() -> None:
        with store.lock("r1"):
            last = store.events("r1", after=store_seq[0])
            store_seq[0] += len(last)
            store.append("r1", [ev(store_seq[0] + 1)])
            store_seq[0] += 1

    store_seq = [0]
    transition()  # this instance now knows where the log ends
    trips, trace = traced_trips(store, tmp_path, transition)
    assert trips == 3, trace
    assert store.events("r1") == [ev(1), ev(2), ev(3)]


def test_append_at_is_one_round_trip_and_refuses_a_moved_log(
    open_pg: Callable[..., PostgresStore], tmp_path: Any
) -> None:
    """append_at: lock, check, insert, NOTIFY and unlock in one round trip; when another writer appended
    after `last` it appends nothing (and notifies no one) and says so, as it does for an unknown run; bad
    batches are refused."""
    store, other = open_pg(pool_size=1), open_pg()
    store.create_run("r1", SPEC, [ev(1)])
    store.create_run("r2", SPEC, [ev(1)])
    assert other.changes(0) == []  # the first call starts listening
    assert store.append_at("r2", 1, [ev(2)])
    assert collect(other, {"r2"}) == {"r2"}  # its NOTIFY
    assert not store.append_at("r2", 1, [ev(2, by="late")])
    assert other.changes(0.3) == []  # none from the refused call
    for _ in range(6):  # psycopg prepares a statement on its fifth use: steady state sends no query text
        assert store.ends_at("r1", store.last_seq("r1"))
    assert store.append_at("r1", 1, [ev(2)])
    trips, trace = traced_trips(store, tmp_path, lambda: store.append_at("r1", 2, [ev(3), ev(4)]))
    assert trips == 1, trace
    assert other.events("r1") == [ev(1), ev(2), ev(3), ev(4)]
    other.append("r1", [ev(5, by="other")])
    assert not store.append_at("r1", 4, [ev(5, by="late")])
    assert not store.ends_at("r1", 4)
    assert store.ends_at("r1", 5)
    assert store.events("r1", after=4) == [ev(5, by="other")]
    assert not store.append_at("nope", 0, [ev(1)])
    with pytest.raises(InvalidArgument, match="starts at seq 6, not 7"):
        store.append_at("r1", 5, [ev(7)])
    with pytest.raises(InvalidArgument, match="at least one event"):
        store.append_at("r1", 5, [])
    trips, trace = traced_trips(store, tmp_path, lambda: store.ends_at("r1", 5))
    assert trips == 1, trace


def test_append_at_waits_for_a_locked_transition_and_then_sees_its_append(
    open_pg: Callable[..., PostgresStore], postgres_dsn: str
) -> None:
    """The transaction lock of append_at and the session lock of lock() are the same lock: an append_at
    that arrives during a locked transition waits for it, then finds the log moved and appends nothing."""
    holder, late = open_pg(), open_pg()
    holder.create_run("r1", SPEC, [ev(1)])
    got: list[bool] = []
    with holder.lock("r1"):
        thread = threading.Thread(target=lambda: got.append(late.append_at("r1", 1, [ev(2, by="late")])))
        thread.start()
        wait_until(
            lambda: bool(
                sql(postgres_dsn, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ),
            "append_at to wait for the lock",
        )
        holder.append("r1", [ev(2, by="holder")])
    thread.join(10)
    assert got == [False]
    assert late.events("r1") == [ev(1), ev(2, by="holder")]


# --------------------------------------------------------------------------------------- notifications


def test_changes_reports_another_instances_append_within_a_second(
    open_pg: Callable[..., PostgresStore],
) -> None:
    watcher, writer = open_pg(), open_pg()
    writer.create_run("r1", SPEC, [ev(1)])
    writer.create_run("r2", SPEC, [])
    assert watcher.changes(0) == []  # the first call starts listening
    ready = threading.Event()
    got: list[list[str]] = []

    def watch() -> None:
        ready.set()
        got.append(watcher.changes(5.0))

    thread = threading.Thread(target=watch)
    thread.start()
    assert ready.wait(5)
    started = time.monotonic()
    writer.append("r1", [ev(2)])
    thread.join(5)
    assert got == [["r1"]]
    assert time.monotonic() - started < 1.0

    writer.append("r2", [ev(1)])
    writer.append("r1", [ev(3)])
    writer.append("r2", [ev(2)])
    assert collect(watcher, {"r1", "r2"}) == {"r1", "r2"}
    writer.create_run("r3", SPEC, [])
    late = collect(watcher, {"r3"})  # a new run is a change too
    assert "r3" in late
    assert late <= {"r1", "r2", "r3"}  # plus, maybe, an earlier append's notification still in flight then


def collect(watcher: PostgresStore, expected: set[str]) -> set[str]:
    """Changes until `expected` were all seen (delivery after commit is asynchronous), each call without repeats."""
    seen: set[str] = set()
    deadline = time.monotonic() + 5
    while not expected <= seen and time.monotonic() < deadline:
        batch = watcher.changes(1.0)
        assert len(batch) == len(set(batch))
        seen.update(batch)
    return seen


def test_changes_times_out_empty_and_ignores_failed_appends(open_pg: Callable[..., PostgresStore]) -> None:
    watcher, writer = open_pg(), open_pg()
    writer.create_run("r1", SPEC, [ev(1)])
    assert watcher.changes(0) == []
    with pytest.raises(StoreConflict):
        writer.append("r1", [ev(5)])  # rolled back, so its NOTIFY is never delivered
    started = time.monotonic()
    assert watcher.changes(0.2) == []
    assert time.monotonic() - started >= 0.15
    with pytest.raises(InvalidArgument):
        watcher.changes(-1)


def test_changes_after_a_lost_connection_reports_every_run(
    postgres_dsn: str, open_pg: Callable[..., PostgresStore]
) -> None:
    watcher, writer = open_pg(), open_pg()
    writer.create_run("r1", SPEC, [])
    writer.create_run("r2", SPEC, [])
    assert watcher.changes(0) == []
    sql(
        postgres_dsn,
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'",
    )
    with pytest.raises(StoreIOError, match="listening for changes"):
        watcher.changes(1.0)
    assert sorted(watcher.changes(0)) == ["r1", "r2"]  # anything may have changed meanwhile
    writer.append("r1", [ev(1)])
    assert watcher.changes(1.0) == ["r1"]


# --------------------------------------------------------------------------------------- errors and entry points


def test_unreachable_server_names_it_without_the_password() -> None:
    with pytest.raises(StoreIOError) as caught:
        PostgresStore("postgresql://loopengt:s3cret-pw@127.0.0.1:1/nodb")
    message = str(caught.value)
    assert "postgresql://loopengt@127.0.0.1:1/nodb" in message
    assert "s3cret-pw" not in message
    assert isinstance(caught.value, LoopengtError)


def test_an_invalid_dsn_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidArgument) as caught:
        PostgresStore("postgresql://user:pass word@host/db")
    assert "pass word" not in str(caught.value)


def test_text_postgres_cannot_hold_is_refused(open_pg: Callable[..., PostgresStore]) -> None:
    """PostgreSQL text holds no NUL character (the file store would keep one): refused, nothing stored."""
    store = open_pg()
    with pytest.raises(InvalidArgument, match="NUL"):
        store.create_run("r1", "a\x00b", [])
    assert not store.exists("r1")
    store.create_run("r1", SPEC, [])
    store.append("r1", [ev(1, text="nul \x00 inside JSON is escaped")])
    assert store.load("r1").events == [ev(1, text="nul \x00 inside JSON is escaped")]


def test_open_store_returns_a_postgres_store(postgres_dsn: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    store = open_store(f"postgresql://{info['user']}@{info['host']}:{info['port']}/{info['dbname']}")
    try:
        assert isinstance(store, PostgresStore)
        store.create_run("r1", SPEC, [])
        assert store.list_runs() == ["r1"]
    finally:
        store.close()


def test_sessions_commit_synchronously_whatever_the_server_default(
    postgres_dsn: str, open_pg: Callable[..., PostgresStore]
) -> None:
    """The CI server runs with synchronous_commit=off (and here the role too); the store's own sessions
    (pooled, the lock's, with the DSN's own options kept) wait for their WAL all the same, so a killed
    server loses no acknowledged step (tests/durability/pgkill_suite.py)."""
    database = sql(postgres_dsn, "SELECT current_database()")[0][0]
    sql(postgres_dsn, f'ALTER ROLE CURRENT_USER IN DATABASE "{database}" SET synchronous_commit = off')
    assert sql(postgres_dsn, "SHOW synchronous_commit") == [("off",)]
    store = open_pg()
    store.create_run("r1", SPEC, [ev(1)])
    with store._conns.conn() as conn:  # the session every store call runs on
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    with store.lock("r1"), store._conns.conn() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    other = open_pg(dsn=make_conninfo(postgres_dsn, options="-c application_name=mine"))
    with other._conns.conn() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert conn.execute("SHOW application_name").fetchone() == ("mine",)
