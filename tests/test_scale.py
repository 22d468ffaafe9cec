"""Big runs and many runs stay cheap (issue 22, cases 5, 8 and 9).

These tests assert how cost grows (work done per call, bytes and events read, files held open, parses),
never wall-clock seconds; bench/big_runs.py prints the timings at full size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.engine import patterns
from loopengt_core.model.events import StepCompleted
from loopengt_core.model.spec import LoopSpec
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore


def chain_spec(n: int, pattern: str = "sequential") -> dict[str, Any]:
    """n agent steps, each depending on the one before (declared in reverse, so ordering has work to do)."""
    steps = [{"name": f"s{i}", "agent": "w", "dependencies": [f"s{i - 1}"] if i else []} for i in range(n)]
    return {
        "name": "chain",
        "pattern": pattern,
        "workspace": "none",
        "agents": [{"name": "w"}],
        "steps": list(reversed(steps)),
        "policy": {"max_turns": n + 10},
    }


# --- case 8: step ordering ---------------------------------------------------------------------


def _best_of(runs: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def test_step_order_grows_linearly_with_the_spec() -> None:
    """Ordering 4x the steps costs about 4x (n log n), not 64x as the old set-rebuilding loop did."""
    small = LoopSpec.model_validate(chain_spec(400))
    large = LoopSpec.model_validate(chain_spec(1600))
    assert patterns._order(large) == [f"s{i}" for i in range(1600)]
    ratio = _best_of(5, lambda: patterns._order(large)) / _best_of(5, lambda: patterns._order(small))
    assert ratio < 12, f"ordering 4x the steps cost {ratio:.1f}x"


def test_step_order_is_computed_once_per_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sequential run asks for the order on every transition; it is computed once for the spec."""
    calls: list[int] = []
    real = patterns._order
    monkeypatch.setattr(patterns, "_order", lambda spec: calls.append(1) or real(spec))
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    view = runs.start_run(spec=chain_spec(30))
    for _ in range(20):
        view = runs.step(view.run_id, view.tasks[0].task_id, {"ok": True})
    assert view.turn == 20
    assert len(calls) == 1


# --- case 5: templates ------------------------------------------------------------------------


def test_templates_are_read_and_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 list_templates calls (a burst of clients) parse each template's YAML at most once in all."""
    import yaml

    from loopengt_core.service import catalog

    catalog._files.cache_clear()
    catalog._infos.cache_clear()
    parses: list[int] = []
    real = yaml.load
    monkeypatch.setattr(yaml, "load", lambda text, Loader: parses.append(1) or real(text, Loader=Loader))
    first = catalog.list_templates()
    for _ in range(199):
        assert catalog.list_templates() == first
        catalog.template_text(first[0].name)
    assert len(parses) == len(first) > 0


# --- case 5: a late or repeated submission on a long run -----------------------------------------


def loop_spec(turns: int) -> dict[str, Any]:
    """One agent step that routes back to itself, with a condition gate (so answers carry gate results)."""
    return {
        "name": "again",
        "pattern": "custom",
        "workspace": "none",
        "agents": [{"name": "w"}],
        "steps": [
            {
                "name": "work",
                "agent": "w",
                "verification_gates": ["has_next"],
                "routes": {"field": "next", "map": {"again": "work", "stop": "done"}},
            },
            {"name": "done", "agent": "w"},
        ],
        "policy": {
            "max_turns": turns + 10,
            "verification_gates": [{"name": "has_next", "condition": "output.next != null"}],
        },
    }


def _long_run(tmp_path: Path, turns: int) -> tuple[Runs, FileStore, str]:
    store = FileStore(tmp_path / f"store-{turns}", snapshot_every=100)
    runs = Runs(store, cwd=tmp_path)
    view = runs.start_run(spec=loop_spec(turns))
    for _ in range(turns):
        view = runs.step(view.run_id, view.tasks[0].task_id, {"next": "again"})
    return runs, store, view.run_id


def _late_cost(tmp_path: Path, turns: int) -> tuple[int, int, int]:
    """(lines parsed, bytes read, log bytes) for a repeated submission of the run's first task."""
    _runs, store, run_id = _long_run(tmp_path, turns)
    log_bytes = (store.runs_dir / run_id / "events.jsonl").stat().st_size
    before_seq = store.last_seq(run_id)
    fresh = FileStore(store.root)  # a new server: nothing cached, only what is on disk
    again = Runs(fresh, cwd=tmp_path)
    again.get_run(run_id)  # its first load checks the log behind the snapshot, once per process
    fresh.lines_parsed = fresh.bytes_read = 0
    answer = again.step(run_id, "work#1", {"next": "again"})
    assert answer.accepted
    assert [g.name for g in answer.gate_results] == ["has_next"]
    assert fresh.last_seq(run_id) == before_seq  # the same submission again appends nothing
    lines, read = fresh.lines_parsed, fresh.bytes_read
    fresh.lines_parsed = fresh.bytes_read = 0
    with pytest.raises(Exception, match=r"already submitted with a different output.*open tasks: work#"):
        again.step(run_id, "work#2", {"next": "stop"})
    assert fresh.lines_parsed + lines < 400
    return lines, read, log_bytes


def test_a_late_submission_reads_the_task_not_the_log(tmp_path: Path) -> None:
    """Answering a submission for a long-closed task reads its own events: 4x the run, about the same work."""
    small = _late_cost(tmp_path, 300)
    large = _late_cost(tmp_path, 1200)
    assert large[0] < 300, f"parsed {large[0]} log lines for one task of a {1200}-step run"
    assert large[1] < large[2] / 4, f"read {large[1]} of {large[2]} log bytes"
    assert large[0] < 2 * small[0] + 50


def test_the_task_index_is_rebuilt_when_missing_torn_or_stale(tmp_path: Path) -> None:
    """tasks.idx is derived data: lost, torn or belonging to another log, lookups still answer right."""

    def ev(seq: int, task: str) -> StepCompleted:
        return StepCompleted(seq=seq, at="2026-01-01T00:00:00.000Z", step="s", task_id=task)

    store = FileStore(tmp_path / "store")
    store.create_run("r", "name: x\n", [ev(i, f"t#{i % 7}") for i in range(1, 301)])
    store.save_snapshot("r", 300, {})
    index = store.runs_dir / "r" / "tasks.idx"
    want = [i for i in range(1, 301) if i % 7 == 3]
    assert [e.seq for e in store.task_events("r", "t#3")] == want
    index.unlink()
    assert [e.seq for e in store.task_events("r", "t#3")] == want
    with index.open("ab") as f:
        f.write(b'"t#3"\t5\t0\t10\n"t#')  # a torn write after the last marker
    assert [e.seq for e in store.task_events("r", "t#3")] == want
    raw = index.read_bytes()
    cut = raw.rindex(b'"t#3"')  # an entry of the last chunk that never reached the disk whole
    index.write_bytes(raw[:cut] + b'"t#0"' + raw[cut + 5 :])
    assert [e.seq for e in store.task_events("r", "t#3")] == want
    other = FileStore(tmp_path / "other")
    other.create_run("r", "name: x\n", [ev(i, "t#3") for i in range(1, 301)])
    other.task_events("r", "t#3")
    index.write_bytes((other.runs_dir / "r" / "tasks.idx").read_bytes())  # another log's index
    assert [e.seq for e in store.task_events("r", "t#3")] == want
    store.append("r", [ev(301, "t#3")])
    assert [e.seq for e in store.task_events("r", "t#3")] == [*want, 301]


# --- case 5: the export streams -----------------------------------------------------------------


class PagedOnly:
    """A store that lets the log be read only a page at a time, and records the largest page asked for."""

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self.largest = 0

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[Any]:
        assert limit is not None, "the whole log was read at once"
        self.largest = max(self.largest, limit)
        return self.store.events(run_id, after=after, limit=limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_the_export_is_streamed_a_page_at_a_time(tmp_path: Path) -> None:
    """`write_export` writes exactly `export_run(...).to_json()`, reading the log in pages."""
    from datetime import UTC, datetime

    from loopengt_core.service.portability import (
        EXPORT_PAGE,
        export_run,
        import_run,
        read_export,
        write_export,
    )

    runs, store, run_id = _long_run(tmp_path, 150)
    runs.checkpoint(run_id, "half")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    pieces: list[str] = []
    paged = PagedOnly(store)
    size = write_export(paged, run_id, pieces.append, now=now)  # type: ignore[arg-type]
    text = "".join(pieces)
    assert text == export_run(store, run_id, now=now).to_json()
    assert size == len(text.encode())
    assert paged.largest == EXPORT_PAGE
    assert len(pieces) > store.last_seq(run_id) // EXPORT_PAGE
    moved = import_run(FileStore(tmp_path / "other"), read_export(text))
    assert moved.events == store.last_seq(run_id)
    assert moved.checkpoints == 1


def test_postgres_indexes_events_written_before_the_task_index(postgres_dsn: str) -> None:
    """The migration fills the task index for old events, also one holding a \\u0000 (PostgreSQL's json
    cannot turn it into text)."""
    import psycopg

    from loopengt_core.store.postgres import MIGRATIONS, PostgresStore

    old = MIGRATIONS.index("ALTER TABLE loopengt_events ADD COLUMN task_id text")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE loopengt_schema_version (version integer PRIMARY KEY, applied_at timestamptz "
            "NOT NULL DEFAULT now())"
        )
        for version in range(old):
            conn.execute(MIGRATIONS[version].encode())
            conn.execute("INSERT INTO loopengt_schema_version (version) VALUES (%s)", (version,))
        conn.execute("INSERT INTO loopengt_runs (run_id, spec_text) VALUES ('old', 'name: x')")
        rows = [
            (1, '{"step":"s","output":{},"task_id":"a#1"}'),
            (2, '{"step":"s","output":"nul \\u0000 here","task_id":"a#1"}'),
            (3, '{"step":"s","task_id":"b#1"}'),
            (4, '{"step":"s","output":{"n":4}}'),
        ]
        for seq, data in rows:
            conn.execute(
                "INSERT INTO loopengt_events (run_id, seq, type, at, data) VALUES ('old', %s, 'step_completed', "
                "'2026-01-01T00:00:00.000Z', %s)",
                (seq, data),
            )
    store = PostgresStore(postgres_dsn)
    try:
        assert [e.seq for e in store.task_events("old", "a#1")] == [1, 2]
        assert [e.seq for e in store.task_events("old", "b#1")] == [3]
        store.append("old", [StepCompleted(seq=5, at="2026-01-01T00:00:00.000Z", step="s", task_id="a#1")])
        assert [e.seq for e in store.task_events("old", "a#1")] == [1, 2, 5]
    finally:
        store.close()
