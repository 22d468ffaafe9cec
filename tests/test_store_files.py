"""File-store specifics: the on-disk format, torn tails, corruption, seek-based loading, locks, crashes."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.model.errors import InvalidArgument, LoopengtError, StoreConflict, StoreCorrupt
from loopengt_core.model.events import StepCompleted, to_record
from loopengt_core.store import Checkpoint, files
from loopengt_core.store.files import FAULT_ENV, FAULT_POINTS, FileStore, StoreIOError

SPEC = "version: 1\n"


def ev(seq: int, **data: Any) -> StepCompleted:
    """An event whose `output` carries `data` (the stores see a record like any other)."""
    return StepCompleted(seq=seq, at="2026-01-01T00:00:00.000Z", step="s", output=data or {"n": seq})


def _without_seq(event: StepCompleted) -> dict[str, Any]:
    return {key: value for key, value in to_record(event).items() if key != "seq"}


def evs(first: int, last: int) -> list[StepCompleted]:
    return [ev(i) for i in range(first, last + 1)]


def log_path(root: Path, run_id: str = "r1") -> Path:
    return root / "runs" / run_id / "events.jsonl"


def check_clean(path: Path) -> list[dict[str, Any]]:
    """Every line newline-terminated, checksummed as specified, seqs 1..n."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    records = []
    for number, line in enumerate(data.splitlines(), start=1):
        payload, _, crc = line.rpartition(b',"crc":"')
        body = payload + b"}"
        assert crc == b"%08x" % zlib.crc32(body) + b'"}'
        record = json.loads(body)
        assert record["seq"] == number
        records.append(record)
    return records


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def fs(root: Path) -> Iterator[FileStore]:
    store = FileStore(root)
    yield store
    store.close()


def test_layout_and_line_format(fs: FileStore, root: Path) -> None:
    fs.create_run(
        "r1", SPEC, [StepCompleted(seq=1, at="2026-01-01T00:00:00.000Z", step="s", output={"g": "é"})]
    )
    fs.save_snapshot("r1", 1, {"s": 1})
    fs.save_checkpoint(Checkpoint("r1", "c1", 1, None, "2026-01-01T00:00:00.000Z", {"s": 1}))
    run = root / "runs" / "r1"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "events.jsonl",
        "lock",
        "snapshot.json",
        "spec.yaml",
        "tasks.idx",  # derived: the task index, brought up to date with each snapshot
    ]
    assert (run / "spec.yaml").read_text() == SPEC
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["c1.json"]
    line = (run / "events.jsonl").read_bytes()
    payload = '{"seq":1,"type":"step_completed","at":"2026-01-01T00:00:00.000Z","data":{"step":"s","output":{"g":"é"}}}'.encode()
    assert line == payload[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(payload)
    assert json.loads((run / "snapshot.json").read_bytes())["offset"] == len(line)
    assert not [p for p in (root / "runs").iterdir() if p.name.startswith(".tmp-")]


def test_torn_last_line_is_dropped_then_truncated(fs: FileStore, root: Path) -> None:
    fs.create_run("r1", SPEC, evs(1, 3))
    path = log_path(root)
    whole = path.read_bytes()
    third = whole.rstrip(b"\n").rfind(b"\n") + 1
    with path.open("r+b") as f:
        f.truncate(third + 20)  # the last line, cut mid-way
    fresh = FileStore(root)
    assert fresh.load("r1").events == evs(1, 2)
    assert fresh.last_seq("r1") == 2
    assert fresh.events("r1") == evs(1, 2)
    assert path.stat().st_size == third + 20  # reading never repairs
    fresh.append("r1", evs(3, 4))
    assert [r["seq"] for r in check_clean(path)] == [1, 2, 3, 4]
    assert FileStore(root).load("r1").events == evs(1, 4)
    fresh.close()


@pytest.mark.parametrize(
    "tail",
    [b"\x00" * 300, b'{"seq":4,"type":"task_issued"', b"garbage without newline"],
    ids=["zeros", "half-line", "garbage"],
)
def test_unterminated_tail_is_dropped(fs: FileStore, root: Path, tail: bytes) -> None:
    fs.create_run("r1", SPEC, evs(1, 3))
    with log_path(root).open("ab") as f:
        f.write(tail)
    assert fs.last_seq("r1") == 3  # the size changed, so the tail is re-read
    assert FileStore(root).load("r1").events == evs(1, 3)
    fs.append("r1", evs(4, 4))
    check_clean(log_path(root))


def test_checksum_failing_last_line_is_dropped(fs: FileStore, root: Path) -> None:
    fs.create_run("r1", SPEC, evs(1, 3))
    path = log_path(root)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01  # flip a bit inside the last line's payload; it stays newline-terminated
    path.write_bytes(bytes(data))
    fresh = FileStore(root)
    assert fresh.load("r1").events == evs(1, 2)
    assert fresh.last_seq("r1") == 2
    fresh.append("r1", evs(3, 3))
    assert [r["seq"] for r in check_clean(path)] == [1, 2, 3]


@pytest.mark.parametrize("how", ["bitflip", "cut", "no-crc"])
def test_corrupt_middle_line_names_run_and_line(fs: FileStore, root: Path, how: str) -> None:
    fs.create_run("r1", SPEC, evs(1, 5))
    path = log_path(root)
    lines = path.read_bytes().splitlines(keepends=True)
    if how == "bitflip":
        lines[2] = lines[2].replace(b'"n":3', b'"n":8')
    elif how == "cut":
        lines[2] = lines[2][:30] + b"\n"
    else:
        lines[2] = json.dumps(to_record(ev(3))).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    fresh = FileStore(root)
    for call in (lambda: fresh.load("r1"), lambda: fresh.events("r1")):
        with pytest.raises(StoreCorrupt) as info:
            call()
        assert "'r1'" in str(info.value)
        assert "line 3" in str(info.value)
        assert info.value.run_id == "r1"
    assert fresh.events("r1", limit=2) == evs(1, 2)  # stops before the damage


@pytest.mark.parametrize("change", ["gap", "repeat"])
def test_seq_gap_or_repeat_is_corrupt(root: Path, change: str) -> None:
    store = FileStore(root)
    store.create_run("r1", SPEC, evs(1, 2))
    path = log_path(root)
    lines = path.read_bytes().splitlines(keepends=True)
    other = FileStore(root / "other")
    other.create_run("x", SPEC, evs(1, 4))
    donor = log_path(root / "other", "x").read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines, donor[3] if change == "gap" else donor[1], donor[2]]))
    with pytest.raises(StoreCorrupt, match=r"events.jsonl line 3 is damaged \(seq \d+ where 3 belongs"):
        FileStore(root).load("r1")


def test_seek_loading_of_a_long_run(root: Path) -> None:
    """10,000 events: a fresh instance loads the snapshot plus the tail, reading a sliver of the log."""
    store = FileStore(root)
    store.create_run("long", SPEC, evs(1, 100))
    for first in range(101, 10_001, 100):
        store.append("long", evs(first, first + 99))
    store.save_snapshot("long", 9_950, {"folded": 9_950})
    size = log_path(root, "long").stat().st_size

    fresh = FileStore(root)
    loaded = fresh.load("long")
    assert loaded.snapshot == {"folded": 9_950}
    assert loaded.snapshot_seq == 9_950
    assert loaded.events == evs(9_951, 10_000)
    assert fresh.lines_parsed <= 52  # the tail plus the one line that checks the offset
    # The first load in a process reads the bytes behind the snapshot once, for its prefix CRC (no parsing:
    # 1.1 MB here, about 0.5 ms); a later load in the same process reads only a sliver.
    assert fresh.bytes_read < size + 20_000
    fresh.bytes_read = fresh.lines_parsed = 0
    assert fresh.load("long").events == evs(9_951, 10_000)
    assert fresh.lines_parsed <= 52
    assert fresh.bytes_read < size // 20

    # After the load, following the log reads only what is new.
    fresh.bytes_read = fresh.lines_parsed = 0
    assert fresh.events("long", after=10_000) == []
    assert fresh.events("long", after=9_990) == evs(9_991, 10_000)
    assert fresh.lines_parsed <= 60
    store.append("long", evs(10_001, 10_003))
    fresh.bytes_read = fresh.lines_parsed = 0
    assert fresh.events("long", after=10_000) == evs(10_001, 10_003)
    assert fresh.last_seq("long") == 10_003
    fresh.append("long", evs(10_004, 10_004))
    assert fresh.lines_parsed <= 6
    assert fresh.bytes_read < 20_000

    # A third instance that never loaded: last_seq and reading the end read only the end of the file.
    third = FileStore(root)
    assert third.last_seq("long") == 10_004
    assert third.events("long", after=10_002) == evs(10_003, 10_004)  # counts lines back from the end
    assert third.bytes_read < 40_000
    assert third.lines_parsed <= 5
    # Its first append checks the log once as a load does (never append after a damaged line); later
    # ones read only the end again.
    third.append("long", evs(10_005, 10_005))
    assert third.lines_parsed <= 5 + 60
    third.bytes_read = third.lines_parsed = 0
    third.append("long", evs(10_006, 10_006))
    assert third.events("long", after=10_004) == evs(10_005, 10_006)
    assert third.bytes_read < 40_000
    assert third.lines_parsed <= 5
    for opened in (store, fresh, third):
        opened.close()


def test_snapshot_with_a_wrong_offset_falls_back_to_a_scan(fs: FileStore, root: Path) -> None:
    fs.create_run("r1", SPEC, evs(1, 10))
    fs.save_snapshot("r1", 6, {"at": 6})
    snap = root / "runs" / "r1" / "snapshot.json"
    payload = json.dumps({"seq": 6, "offset": 17, "state": {"at": 6}}, separators=(",", ":")).encode()
    snap.write_bytes(payload[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(payload))
    loaded = FileStore(root).load("r1")
    assert (loaded.snapshot_seq, loaded.events) == (6, evs(7, 10))


def test_damaged_snapshot_is_ignored(fs: FileStore, root: Path) -> None:
    fs.create_run("r1", SPEC, evs(1, 4))
    fs.save_snapshot("r1", 3, {"at": 3})
    snap = root / "runs" / "r1" / "snapshot.json"
    snap.write_bytes(snap.read_bytes().replace(b'"at":3', b'"at":4'))
    loaded = FileStore(root).load("r1")
    assert (loaded.snapshot, loaded.snapshot_seq, loaded.events) == (None, 0, evs(1, 4))


def test_corrupt_checkpoint_is_reported(fs: FileStore, root: Path) -> None:
    fs.create_run("r1", SPEC, evs(1, 1))
    fs.save_checkpoint(Checkpoint("r1", "c1", 1, "x", "2026-01-01T00:00:00.000Z", {"a": 1}))
    path = root / "runs" / "r1" / "checkpoints" / "c1.json"
    path.write_bytes(path.read_bytes().replace(b'"a":1', b'"a":2'))
    with pytest.raises(StoreCorrupt, match="c1"):
        fs.get_checkpoint("r1", "c1")


def test_leftover_temp_dirs_are_not_runs(fs: FileStore, root: Path) -> None:
    fs.create_run("r1", SPEC, [])
    (root / "runs" / ".tmp-r2-abc").mkdir()
    (root / "runs" / "stray").mkdir()  # no spec.yaml: not a run
    assert fs.list_runs() == ["r1"]


def test_filesystem_errors_become_loopengt_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = FileStore(blocker)
    with pytest.raises(StoreIOError) as info:
        store.create_run("r1", SPEC, [])
    assert isinstance(info.value, LoopengtError)
    assert "r1" in str(info.value)
    assert store.list_runs() == []
    assert not store.exists("r1")


def test_a_full_disk_is_one_clear_line_without_a_double_colon(
    fs: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs.create_run("r1", SPEC, evs(1, 1))

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as os.write raises it: no file name

    monkeypatch.setattr(files.store, "write_all", disk_full)
    with pytest.raises(StoreIOError) as info:
        fs.append("r1", evs(2, 2))
    assert str(info.value) == "file store: appending to run 'r1' failed: No space left on device"


def test_invalid_fault_setting_is_refused(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv(FAULT_ENV, "append.nowhere")
    with pytest.raises(InvalidArgument, match=r"append\.mid_write"):
        FileStore(root)
    monkeypatch.setenv(FAULT_ENV, "append.mid_write:0")
    with pytest.raises(InvalidArgument):
        FileStore(root)


# ------------------------------------------------------------------------------- batches


def seal(obj: dict[str, Any]) -> bytes:
    """A log line as the store writes it (compact JSON, CRC of the object without `crc`)."""
    payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return payload[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(payload)


def batched_run(root: Path) -> tuple[Path, list[int]]:
    """Batches 1 | 2-4 | 5 | 6-9 with a snapshot inside 2-4; returns the log and its line ends."""
    store = FileStore(root)
    store.create_run("r1", SPEC, evs(1, 1))
    store.append("r1", evs(2, 4))
    store.append("r1", evs(5, 5))
    store.save_snapshot("r1", 3, {"at": 3})
    store.append("r1", evs(6, 9))
    store.close()
    path = log_path(root)
    ends, offset = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        offset += len(line)
        ends.append(offset)
    return path, ends


def test_multi_event_batches_carry_their_end_and_load_whole(root: Path) -> None:
    path, _ = batched_run(root)
    records = check_clean(path)
    assert [r.get("end") for r in records] == [None, 4, 4, 4, None, 9, 9, 9, 9]
    fresh = FileStore(root)
    assert fresh.last_seq("r1") == 9
    loaded = fresh.load("r1")
    assert (loaded.snapshot, loaded.snapshot_seq, loaded.events) == ({"at": 3}, 3, evs(4, 9))
    assert all("end" not in to_record(e) for e in loaded.events)
    assert FileStore(root).events("r1") == evs(1, 9)
    assert FileStore(root).events("r1", after=2, limit=1) == evs(3, 3)  # a limit may end mid-batch
    assert FileStore(root).events("r1", after=6, limit=2) == evs(7, 8)
    fresh.close()


def test_snapshot_inside_a_batch_points_after_its_own_line(root: Path) -> None:
    _, ends = batched_run(root)
    snap = json.loads((root / "runs" / "r1" / "snapshot.json").read_bytes())
    assert (snap["seq"], snap["offset"]) == (3, ends[2])
    FileStore(root).save_snapshot("r1", 7, {"at": 7})  # a fresh instance, no cached offsets
    snap = json.loads((root / "runs" / "r1" / "snapshot.json").read_bytes())
    assert (snap["seq"], snap["offset"]) == (7, ends[6])
    loaded = FileStore(root).load("r1")
    assert (loaded.snapshot_seq, loaded.events) == (7, evs(8, 9))


# Cuts inside the last batch (6-9, lines 6..9): after k whole lines, and k whole lines plus part of the next.
CUTS = [(k, part) for k in range(4) for part in (0, 25) if (k, part) != (0, 0)]


@pytest.mark.parametrize(("whole", "part"), CUTS, ids=[f"{k}lines+{p}" for k, p in CUTS])
@pytest.mark.parametrize("first_call", ["load", "last_seq", "events", "events_after", "append"])
def test_unfinished_batch_is_dropped_whole(root: Path, whole: int, part: int, first_call: str) -> None:
    path, ends = batched_run(root)
    watcher = FileStore(root)
    watcher.load("r1")  # a process that saw the whole log before the cut
    with path.open("r+b") as f:
        f.truncate(ends[4 + whole] + part)
    cut_size = path.stat().st_size
    fresh = FileStore(root)  # cold: the first call below is the one that discovers the cut
    if first_call == "load":
        loaded = fresh.load("r1")
        assert (loaded.snapshot, loaded.snapshot_seq, loaded.events) == ({"at": 3}, 3, evs(4, 5))
    elif first_call == "last_seq":
        assert fresh.last_seq("r1") == 5
    elif first_call == "events":
        assert fresh.events("r1") == evs(1, 5)
    elif first_call == "events_after":
        assert fresh.events("r1", after=5) == []
        assert fresh.events("r1", after=4) == evs(5, 5)
        assert fresh.events("r1", after=3, limit=5) == evs(4, 5)
        assert fresh.events("r1", after=5, limit=1) == []
    else:
        with pytest.raises(StoreConflict):
            fresh.append("r1", [ev(6 + max(whole, 1))])  # continuing the half batch is refused
    assert fresh.last_seq("r1") == 5
    assert fresh.events("r1", after=2) == evs(3, 5)
    assert fresh.load("r1").events == evs(4, 5)
    assert path.stat().st_size == cut_size  # reading never repairs

    # The watcher's cached view is older than the file's size, so it re-reads the end and agrees.
    assert watcher.last_seq("r1") == 5
    assert watcher.events("r1", after=4) == evs(5, 5)

    # The dropped seqs are free again; the new batch replaces the unfinished one on disk.
    replacement = [ev(6, new=6), ev(7, new=7)]
    fresh.append("r1", replacement)
    records = check_clean(path)
    assert [r["seq"] for r in records] == list(range(1, 8))
    assert [r.get("end") for r in records[5:]] == [7, 7]
    assert records[5]["data"]["output"] == {"new": 6}
    for reader in (FileStore(root), watcher, fresh):
        assert reader.last_seq("r1") == 7
        assert reader.events("r1", after=5) == replacement
        assert reader.load("r1").events == [*evs(4, 5), *replacement]
    watcher.close()
    fresh.close()


def test_unfinished_batch_right_after_create(root: Path) -> None:
    store = FileStore(root)
    store.create_run("r1", SPEC, [])
    store.append("r1", evs(1, 3))
    path = log_path(root)
    with path.open("r+b") as f:
        f.truncate(len(path.read_bytes().splitlines(keepends=True)[0]))
    fresh = FileStore(root)
    assert fresh.last_seq("r1") == 0
    assert FileStore(root).load("r1").events == []
    assert FileStore(root).events("r1") == []
    fresh.append("r1", evs(1, 1))
    assert [r["seq"] for r in check_clean(path)] == [1]
    store.close()
    fresh.close()


def test_lines_without_end_are_batches_of_one(root: Path) -> None:
    """A log written before the marker existed: every line stands alone."""
    store = FileStore(root)
    store.create_run("r1", SPEC, [])
    path = log_path(root)
    path.write_bytes(b"".join(seal(to_record(e)) for e in evs(1, 4)))
    fresh = FileStore(root)
    assert fresh.last_seq("r1") == 4
    assert fresh.load("r1").events == evs(1, 4)
    fresh.append("r1", evs(5, 6))
    assert [r.get("end") for r in check_clean(path)] == [None, None, None, None, 6, 6]
    assert FileStore(root).events("r1", after=3) == evs(4, 6)
    store.close()
    fresh.close()


@pytest.mark.parametrize("damage", ["unmarked", "other-end", "end-below-seq"])
def test_batch_broken_off_mid_log_is_corrupt(root: Path, damage: str) -> None:
    store = FileStore(root)
    store.create_run("r1", SPEC, evs(1, 1))
    path = log_path(root)
    third = {"unmarked": {}, "other-end": {"end": 5}, "end-below-seq": {"end": 2}}[damage]
    lines = [
        seal({"seq": 2, "end": 4, **_without_seq(ev(2))}),
        seal({"seq": 3, **third, **_without_seq(ev(3))}),
        seal({"seq": 4, "end": 4, **_without_seq(ev(4))}),
    ]
    with path.open("ab") as f:
        f.write(b"".join(lines))
    for call in (lambda: FileStore(root).load("r1"), lambda: FileStore(root).events("r1")):
        with pytest.raises(StoreCorrupt, match="line 3"):
            call()
    store.close()


def test_unfinished_tail_after_a_broken_batch_is_corrupt(root: Path) -> None:
    """last_seq walks back over an unfinished tail batch; meeting a broken one, it reports like load."""
    store = FileStore(root)
    store.create_run("r1", SPEC, evs(1, 1))
    with log_path(root).open("ab") as f:
        for seq, end in [(2, 4), (3, 5), (4, 5)]:
            f.write(seal({"seq": seq, "end": end, **_without_seq(ev(seq))}))
    for call in (lambda: FileStore(root).load("r1"), lambda: FileStore(root).last_seq("r1")):
        with pytest.raises(StoreCorrupt, match="line 3"):
            call()
    store.close()


# ------------------------------------------------------------------------------- two processes


def _transition_worker(root: str, worker: int, rounds: int) -> None:
    """Load-decide-append under the lock; each append is a pair that must stay together."""
    store = FileStore(root)
    for _ in range(rounds):
        with store.lock("shared"):
            loaded = store.load("shared")
            last = loaded.events[-1].seq if loaded.events else loaded.snapshot_seq
            store.append("shared", [ev(last + 1, w=worker, part=1), ev(last + 2, w=worker, part=2)])
    store.close()


def test_processes_appending_under_lock_never_interleave(root: Path) -> None:
    store = FileStore(root)
    store.create_run("shared", SPEC, [])
    store.save_snapshot("shared", 0, {})
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_transition_worker, args=(str(root), w, 40)) for w in range(3)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(60)
    assert [proc.exitcode for proc in workers] == [0, 0, 0]
    records = check_clean(log_path(root, "shared"))
    assert len(records) == 240
    for first, second in zip(records[::2], records[1::2], strict=True):
        assert (first["data"]["output"]["part"], second["data"]["output"]["part"]) == (1, 2)
        assert first["data"]["output"]["w"] == second["data"]["output"]["w"]
    assert {r["data"]["output"]["w"] for r in records} == {0, 1, 2}


def test_lock_blocks_another_process(root: Path) -> None:
    store = FileStore(root)
    store.create_run("r1", SPEC, evs(1, 1))
    script = textwrap.dedent(
        """
        import sys, time
        from loopengt_core.store.files import FileStore
        store = FileStore(sys.argv[1])
        print("ready", flush=True)
        start = time.monotonic()
        with store.lock("r1"):
            print(f"{time.monotonic() - start:.3f}", flush=True)
        """
    )
    with store.lock("r1"):
        proc = subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting for the lock
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert float(out) >= 0.4
    store.close()


# ------------------------------------------------------------------------------- crashes

CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    from loopengt_core.model.events import StepCompleted
    from loopengt_core.store.files import FileStore

    def ev(i):
        return StepCompleted(seq=i, at="2026-01-01T00:00:00.000Z", step="s", output={"n": i, "pad": "x" * 200})

    store = FileStore(sys.argv[1])
    point = sys.argv[2]

    def append(events):
        if not point.startswith("group."):
            store.append("r1", events)
            return
        with store.deferring() as fsyncs:  # as the MCP server's event loop appends: fsync in GroupSync
            store.append("r1", events)
        for future in fsyncs:
            future.exception()
            store.synced("r1", future)

    if point == "create.before_rename":
        store.create_run("r2", "spec: crash\\n", [ev(1)])
    store.create_run("r1", "spec: 1\\n", [ev(1)])
    for i in range(2, 6):
        append([ev(i)])
        print("acked", i, flush=True)
    store.save_snapshot("r1", 5, {"at": 5})
    print("snapshot", 5, flush=True)
    append([ev(6), ev(7), ev(8)])
    print("acked", 8, flush=True)
    store.save_snapshot("r1", 8, {"at": 8})
    print("snapshot", 8, flush=True)
    append([ev(9)])
    print("acked", 9, flush=True)
    """
)

# Which pass through the point crashes: the 6th append is the batch 6-8, the 2nd snapshot is at seq 8.
FAULTS = {
    "append.before_write": "append.before_write:5",
    "append.mid_write": "append.mid_write:5",
    "append.after_write": "append.after_write:5",
    "append.after_fsync": "append.after_fsync:5",
    "snapshot.after_temp": "snapshot.after_temp:2",
    "snapshot.after_rename": "snapshot.after_rename:2",
    "create.before_rename": "create.before_rename",
    "group.before_sync": "group.before_sync:5",  # written, its fsync handed to GroupSync, then killed
}


def test_every_fault_point_is_exercised() -> None:
    assert set(FAULTS) == FAULT_POINTS


@pytest.mark.parametrize("point", sorted(FAULTS))
def test_crash_at_fault_point_keeps_acknowledged_events(root: Path, point: str) -> None:
    env = {**os.environ, FAULT_ENV: FAULTS[point]}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), point],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    acked = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("acked")]
    store = FileStore(root)
    if point == "create.before_rename":
        assert acked == []
        assert store.list_runs() == []
        assert not store.exists("r2")
        store.create_run("r2", SPEC, evs(1, 1))  # the leftover temp dir is no obstacle
        assert store.list_runs() == ["r2"]
        return
    assert acked == [2, 3, 4, 5] if point.startswith(("append", "group")) else [2, 3, 4, 5, 8]
    loaded = store.load("r1")
    seqs = [*range(1, loaded.snapshot_seq + 1), *(e.seq for e in loaded.events)]
    durable = seqs[-1]
    assert seqs == list(range(1, durable + 1))
    assert durable >= acked[-1]
    if point == "append.after_fsync":
        assert durable == 8  # written and synced, only the acknowledgement was lost
    if point == "snapshot.after_rename":
        assert (loaded.snapshot, loaded.snapshot_seq) == ({"at": 8}, 8)
    if point == "snapshot.after_temp":
        assert (loaded.snapshot, loaded.snapshot_seq) == ({"at": 5}, 5)
    # The store carries on cleanly from whatever survived.
    with pytest.raises(StoreConflict):
        store.append("r1", [ev(durable)])
    store.append("r1", [ev(durable + 1)])
    assert [r["seq"] for r in check_clean(log_path(root))] == list(range(1, durable + 2))
    assert FileStore(root).load("r1").events[-1] == ev(durable + 1)
    store.close()


def test_mid_write_crash_leaves_a_torn_tail_that_is_repaired(root: Path) -> None:
    env = {**os.environ, FAULT_ENV: "append.mid_write:5"}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), "append.mid_write"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL
    raw = log_path(root).read_bytes()
    assert not raw.endswith(b"\n")  # really torn: half of the three-line batch
    # Half of three equal-sized lines ends inside the second: event 6 is on disk whole, 7 is torn.
    assert b'"seq":6,"end":8' in raw.splitlines()[-2]
    store = FileStore(root)
    durable = store.last_seq("r1")
    # The append of 6-8 was never acknowledged and is incomplete, so none of it counts: not even 6.
    assert durable == 5
    loaded = store.load("r1")
    assert (loaded.snapshot_seq, loaded.events) == (5, [])
    assert [e.seq for e in store.events("r1", after=3)] == [4, 5]
    store.append("r1", [ev(durable + 1)])
    assert [r["seq"] for r in check_clean(log_path(root))] == [1, 2, 3, 4, 5, 6]
    assert FileStore(root).load("r1").events == [ev(6)]
