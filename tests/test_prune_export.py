"""Retention and portability: `loopengt prune`, `loopengt export` and `loopengt import`.

Prune runs against both stores (the `store_factory` fixture); the round trip moves a run from the file
store into PostgreSQL and back through the real CLI, then drives the imported run to its end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.model.errors import Conflict, InvalidArgument
from loopengt_core.model.events import iso
from loopengt_core.model.state import project_run
from loopengt_core.service.portability import export_run, import_run, read_export
from loopengt_core.service.retention import parse_age, prune
from loopengt_core.service.runs import Runs
from loopengt_core.store import Store, open_store
from loopengt_core.store.files import FileStore

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

SPEC: dict[str, Any] = {
    "name": "portable",
    "goal": "move me",
    "pattern": "sequential",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": "plan", "agent": "a", "verification_gates": ["ok"]},
        {"name": "build", "agent": "a"},
        {"name": "ship", "agent": "a", "verification_gates": ["human"]},
    ],
    "policy": {
        "verification_gates": [
            {"name": "ok", "condition": "output.ok == `true`"},
            {"name": "human", "approval": True},
        ]
    },
}


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "loopengt_server", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        input=stdin,
        timeout=60,
        check=False,
    )


def postgres_url(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    password = f":{p['password']}" if p.get("password") else ""
    user = p.get("user", "")
    return f"postgresql://{user}{password}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p['dbname']}"


# --- ages -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 14 * 86400), ("1d12h", 129600)],
)
def test_parse_age(text: str, seconds: int) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "-1d", "30 days", "1d-2h"])
def test_parse_age_refuses_anything_else(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--older-than takes an age such as 30d"):
        parse_age(text)


# --- prune ----------------------------------------------------------------------------------------


def make_runs(store: Store, tmp_path: Path, at: datetime) -> Runs:
    return Runs(store, cwd=tmp_path, clock=lambda: at)


def seed(store: Store, tmp_path: Path, now: datetime = NOW) -> None:
    """Runs in every status that ended (or started) 40 days before `now`, plus one cancelled 2 days before."""
    old = make_runs(store, tmp_path, now - timedelta(days=40))
    old.start_run(spec=SPEC, run_id="old-completed")
    old.step("old-completed", "plan#1", {"ok": True})
    old.step("old-completed", "build#1", "b")
    old.step("old-completed", "ship#1", "s")
    old.approve("old-completed")
    old.start_run(spec=SPEC, run_id="old-cancelled")
    old.cancel_run("old-cancelled", "no longer needed")
    old.start_run(
        spec={**SPEC, "policy": {**SPEC["policy"], "retry": {"max_retries": 0}}}, run_id="old-failed"
    )
    old.step("old-failed", "plan#1", {"ok": False})
    old.start_run(spec=SPEC, run_id="old-running")
    old.start_run(spec=SPEC, run_id="old-waiting")
    old.step("old-waiting", "plan#1", {"ok": True})
    old.step("old-waiting", "build#1", "b")
    old.step("old-waiting", "ship#1", "s")
    recent = make_runs(store, tmp_path, now - timedelta(days=2))
    recent.start_run(spec=SPEC, run_id="recent-cancelled")
    recent.cancel_run("recent-cancelled")
    statuses = {r: project_run(store.events(r)).status for r in store.list_runs()}
    assert statuses == {
        "old-completed": "completed",
        "old-cancelled": "cancelled",
        "old-failed": "failed",
        "old-running": "running",
        "old-waiting": "waiting_approval",
        "recent-cancelled": "cancelled",
    }


def test_prune_removes_only_ended_runs_older_than_the_age(
    store_factory: Callable[[], Store], tmp_path: Path
) -> None:
    store = store_factory()
    seed(store, tmp_path)
    events = {r: store.last_seq(r) for r in store.list_runs()}

    dry = prune(store, older_than=timedelta(days=30), now=NOW, dry_run=True)
    gone = {"old-completed", "old-cancelled", "old-failed"}
    assert {r.run_id for r in dry.runs} == gone
    assert len(store.list_runs()) == 6  # a dry run deletes nothing
    assert dry.events == sum(events[r] for r in gone)
    assert all(r.bytes > 200 for r in dry.runs)

    report = prune(store, older_than=timedelta(days=30), now=NOW)
    assert [(r.run_id, r.status, r.events, r.bytes) for r in report.runs] == [
        (r.run_id, r.status, r.events, r.bytes) for r in dry.runs
    ]
    assert set(store.list_runs()) == {"old-running", "old-waiting", "recent-cancelled"}
    other = store_factory()  # another process sees the same
    assert set(other.list_runs()) == {"old-running", "old-waiting", "recent-cancelled"}
    assert not other.exists("old-completed")
    assert prune(store, older_than=timedelta(days=30), now=NOW).runs == []
    # running and waiting runs stay however old they are; the recent one goes once it is old enough
    later = prune(store, older_than=timedelta(days=1), now=NOW + timedelta(days=365))
    assert [r.run_id for r in later.runs] == ["recent-cancelled"]
    assert set(store.list_runs()) == {"old-running", "old-waiting"}
    other.close()
    store.close()


def test_prune_by_status(store_factory: Callable[[], Store], tmp_path: Path) -> None:
    store = store_factory()
    seed(store, tmp_path)
    report = prune(store, older_than=timedelta(days=30), now=NOW, statuses=["failed"])
    assert [r.run_id for r in report.runs] == ["old-failed"]
    assert "old-completed" in store.list_runs()
    with pytest.raises(InvalidArgument, match="only ended runs are pruned"):
        prune(store, older_than=timedelta(0), now=NOW, statuses=["running"])
    store.close()


def test_prune_cli_reports_runs_events_and_bytes(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    now = datetime.now(UTC)
    seed(store, tmp_path, now)
    dry = cli("prune", "--older-than", "30d", "--dry-run", "--store", str(tmp_path / "store"), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"would delete old-completed (completed, ended {iso(now - timedelta(days=40))}" in dry.stdout
    assert (
        "dry run: would delete 3 runs (completed, failed, cancelled; ended more than 30d ago)" in dry.stdout
    )
    assert " events, " in dry.stdout
    assert "of run data" in dry.stdout
    assert len(store.list_runs()) == 6
    done = cli(
        "prune",
        "--older-than",
        "30d",
        "--status",
        "cancelled",
        "--store",
        str(tmp_path / "store"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "deleted 1 run (cancelled; ended more than 30d ago)" in done.stdout
    assert not store.exists("old-cancelled")
    assert store.exists("recent-cancelled")
    refused = cli(
        "prune", "--older-than", "30d", "--status", "running", "--store", str(tmp_path / "s"), cwd=tmp_path
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("loopengt: cannot prune runs with status running")
    bad_age = cli("prune", "--older-than", "soon", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert bad_age.returncode == 1
    assert "--older-than takes an age" in bad_age.stderr


# --- export / import --------------------------------------------------------------------------------


def half_done(store: Store, tmp_path: Path, run_id: str = "moved") -> Runs:
    """A run part-way: a retried step, a checkpoint, and an open task."""
    runs = Runs(store, cwd=tmp_path)
    runs.start_run(spec=SPEC, run_id=run_id)
    runs.step(run_id, "plan#1", {"ok": False})
    runs.step(run_id, "plan#2", {"ok": True})
    runs.checkpoint(run_id, "after plan")
    return runs


def finish(runs: Runs, run_id: str) -> None:
    runs.step(run_id, "build#1", "built")
    view = runs.step(run_id, "ship#1", "shipped")
    assert view.status == "waiting_approval"
    assert runs.approve(run_id).status == "completed"


def test_round_trip_file_to_postgres_and_back(tmp_path: Path, postgres_dsn: str) -> None:
    files = str(tmp_path / "files")
    pg = postgres_url(postgres_dsn)
    source = open_store(files)
    half_done(source, tmp_path)
    original = source.events("moved")

    exported = cli("export", "moved", "--output", "moved.json", "--store", files, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    doc = json.loads((tmp_path / "moved.json").read_text())
    assert (doc["format"], doc["version"], doc["run_id"]) == ("loopengt-run", 1, "moved")
    assert [e["seq"] for e in doc["events"]] == list(range(1, len(original) + 1))
    assert [c["checkpoint_id"] for c in doc["checkpoints"]] == ["cp-1"]
    assert doc["spec"] == source.load("moved").spec_text

    imported = cli("import", "moved.json", "--store", pg, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "imported run moved (running, " in imported.stdout
    assert "1 checkpoint)" in imported.stdout
    target = open_store(pg)
    assert target.events("moved") == original
    assert target.load("moved").spec_text == source.load("moved").spec_text
    assert [(c.checkpoint_id, c.seq, c.label) for c in target.list_checkpoints("moved")] == [
        (c.checkpoint_id, c.seq, c.label) for c in source.list_checkpoints("moved")
    ]
    checked = cli("check", "--store", pg, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert "0 with problems" in checked.stdout

    runs = Runs(target, cwd=tmp_path)  # the imported run goes on where it stood
    assert [t.task_id for t in runs.get_run("moved").tasks] == ["build#1"]
    finish(runs, "moved")
    fork = runs.resume("moved", "cp-1")  # and its checkpoint still forks
    assert [t.task_id for t in fork.tasks] == ["build#1"]
    done = target.events("moved")

    back = cli("export", "moved", "--store", pg, cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    home = str(tmp_path / "home")
    again = cli("import", "-", "--store", home, cwd=tmp_path, stdin=back.stdout)
    assert again.returncode == 0, again.stderr
    assert "imported run moved (completed, " in again.stdout
    assert open_store(home).events("moved") == done
    assert cli("check", "--store", home, cwd=tmp_path).returncode == 0
    target.close()


def test_import_of_an_existing_run_is_a_clear_error_unless_renamed(
    store_factory: Callable[[], Store], tmp_path: Path
) -> None:
    store = store_factory()
    runs = half_done(store, tmp_path)
    doc = export_run(store, "moved")
    with pytest.raises(
        Conflict, match="run 'moved' already exists in this store; import it under another id with --as"
    ):
        import_run(store, doc)
    copy = import_run(store, doc, as_id="moved-copy")
    assert (copy.run_id, copy.status, copy.checkpoints) == ("moved-copy", "running", 1)
    assert Runs(store, cwd=tmp_path).get_run("moved-copy").run_id == "moved-copy"
    assert store.list_checkpoints("moved-copy")[0].state["run_id"] == "moved-copy"
    from loopengt_core.service.check import check_store

    assert [r.problems for r in check_store(store)] == [[], []]
    finish(Runs(store, cwd=tmp_path), "moved-copy")
    assert runs.get_run("moved").status == "running"  # the original is untouched
    store.close()


def test_import_writes_a_snapshot_where_the_source_store_would(tmp_path: Path) -> None:
    source = FileStore(tmp_path / "a", snapshot_every=4)
    half_done(source, tmp_path)
    doc = export_run(source, "moved")
    target = FileStore(tmp_path / "b", snapshot_every=4)
    import_run(target, doc)
    loaded = target.load("moved")
    assert loaded.snapshot_seq == len(doc.events) // 4 * 4 > 0
    assert [e.seq for e in loaded.events] == list(range(loaded.snapshot_seq + 1, len(doc.events) + 1))
    from loopengt_core.service.check import check_run

    assert check_run(target, "moved").problems == []


def test_cli_import_existing_id_fails_with_one_line(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    half_done(store, tmp_path)
    assert (
        cli("export", "moved", "-o", "m.json", "--store", str(tmp_path / "s"), cwd=tmp_path).returncode == 0
    )
    again = cli("import", "m.json", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "loopengt: run 'moved' already exists in this store; import it under another id with --as NEW_ID, "
        "or remove the existing run first"
    )
    renamed = cli("import", "m.json", "--as", "moved-2", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert renamed.returncode == 0, renamed.stderr
    assert store.exists("moved-2")
    missing = cli("export", "nope", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert missing.returncode == 1
    assert "no run 'nope'" in missing.stderr


def _doc(store: Store, tmp_path: Path) -> dict[str, Any]:
    half_done(store, tmp_path)
    return json.loads(export_run(store, "moved").to_json())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="something-else"), "is not a loopengt run export"),
        (lambda d: d.update(version=2), "of version 2; this loopengt reads version 1; upgrade loopengt"),
        (lambda d: d.pop("spec"), "spec: Field required"),
        (lambda d: d["events"].pop(3), "event 4 has seq 5"),
        (lambda d: d.update(events=[]), "the run has no events"),
        (lambda d: d["events"][0]["data"].pop("steps"), "events.0.run_started.steps: Field required"),
        (lambda d: d.update(run_id="other"), "run_id is 'other' but its events belong to 'moved'"),
        (lambda d: d["checkpoints"][0]["state"].update(turn=99), "checkpoint 'cp-1' (seq "),
        (lambda d: d.update(spec=d["spec"] + "# edited\n"), "the spec differs from the one the run started"),
        (lambda d: d.update(run_id="../x"), "invalid run_id"),
    ],
)
def test_import_refuses_a_damaged_export_and_writes_nothing(
    tmp_path: Path, change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    doc = _doc(FileStore(tmp_path / "a"), tmp_path)
    change(doc)
    target = FileStore(tmp_path / "b")
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_run(target, read_export(json.dumps(doc), source="m.json"), source="m.json")
    assert target.list_runs() == []


def test_read_export_refuses_what_is_not_json(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"m.json is not JSON"):
        read_export("{nope", source="m.json")
    bad = cli("import", "missing.json", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.startswith("loopengt: cannot read missing.json")


def test_prune_sweeps_what_interrupted_writers_left_in_the_file_store(tmp_path: Path) -> None:
    """A crash between writing a temp file and renaming it leaves a `.tmp-` entry nobody reads."""
    store = FileStore(tmp_path / "store")
    runs = Runs(store, cwd=tmp_path)
    run_id = runs.start_run(spec=SPEC).run_id
    run_dir = tmp_path / "store" / "runs" / run_id
    hour_ago = datetime.now(UTC).timestamp() - 7200
    old = [
        tmp_path / "store" / "runs" / ".tmp-halfmade-0123",  # a run directory never renamed into place
        run_dir / ".tmp-snapshot-0123.json",
        run_dir / "checkpoints" / ".tmp-cp-1-0123.json",
    ]
    old[0].mkdir()
    (old[0] / "events.jsonl").write_bytes(b"x" * 1000)
    old[1].write_bytes(b"y" * 500)
    old[2].write_bytes(b"z" * 300)
    for path in [old[0] / "events.jsonl", *old]:
        os.utime(path, (hour_ago, hour_ago))
    fresh = run_dir / ".tmp-snapshot-fresh.json"  # a writer in another process may still be at it
    fresh.write_bytes(b"w")
    assert store.sweep_leftovers(dry_run=True) == (3, 1800)
    assert all(p.exists() for p in old)
    done = cli("prune", "--older-than", "30d", "--store", str(tmp_path / "store"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "removed 3 temp files left by interrupted writes (1.8 kB)" in done.stdout
    assert not any(p.exists() for p in old)
    assert fresh.exists()
    assert store.list_runs() == [run_id]
    assert runs.get_run(run_id).status == "running"  # the run itself untouched
