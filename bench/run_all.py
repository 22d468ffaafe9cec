"""Run every benchmark and write bench/RESULTS.md: each figure and ratio, goals met or missed, the machine.

Runs, as subprocesses, each writing its figures as JSON (bench/out/, not committed) beside its printed log:
compare_langgraph.py (N = 100, 200, 1,000, 10,000), steps.py (N = 2,000), mcp_roundtrip.py (both protocol
eras; the modern one also times the server of MCP_BEFORE, the commit before the step-over-MCP fixes, checked
out in a temporary git worktree), git_workspace.py (10,000 files) and concurrency.py (1-8 runs at once, on
the disk as it is and with every fsync 3 ms slower, its slow mode);
then, if a goal is missed, a cProfile of loopengt's step (2 KB outputs) and of a cold load.
Sizes are chosen so the whole thing takes ~3-9 minutes on the 2-core development VM, even with the disk
in its slow mode.

    python bench/run_all.py                    # writes bench/RESULTS.md
    python bench/run_all.py --out /tmp/R.md    # somewhere else
    python bench/run_all.py --only concurrency # rerun one benchmark, replacing its part of RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import FsyncFloor, median, pct

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
PACKAGES = ("loopengt", "mcp", "langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite", "pydantic")

SLOW = ["--slow-fsync-ms", "3"]
PLAN: list[tuple[str, list[str], float]] = [  # name, argv after the script, timeout s
    ("compare", ["compare_langgraph.py", "--sizes", "100", "200", "1000", "10000", "--budget", "60"], 900),
    ("steps", ["steps.py", "--steps", "2000", "--budget", "0"], 600),
    ("mcp", ["mcp_roundtrip.py", "--calls", "500"], 300),
    ("mcp_legacy", ["mcp_roundtrip.py", "--calls", "200", "--mode", "legacy"], 300),
    ("git", ["git_workspace.py", "--steps", "60"], 600),
    # 150 steps a run per phase: with 40, one run's phase over HTTP lasted ~0.15 s and its steps/s, the
    # base of every ratio, swung 190-300 between runs of the same code
    ("concurrency", ["concurrency.py", "--steps", "150", "--rounds", "3", "--blocks", "60"], 2400),
    # the same with every fsync 3 ms slower, as in the disk's slow mode: what group commit's overlap buys
    (
        "concurrency-slow",
        ["concurrency.py", "--runs", "1", "8", "--steps", "150", "--rounds", "3", "--blocks", "60", *SLOW],
        2400,
    ),
    ("bytes", ["bytes_per_step.py", "--steps", "1000", "--rounds", "3"], 900),
    ("start", ["server_start.py", "--starts", "15"], 600),
    ("stdio", ["stdio_transport.py", "--calls", "800", "--block", "25"], 600),
]
MCP_BEFORE = "cedc454a3c24f83a1519539feab912e497f23997"  # before the step-over-MCP fixes of 2026-11-25
GROUP_BEFORE = "69ef60adcff76f74f0cdf9d7afcd1ab963689e20"  # before group commit (issue 19)
# before the lean server start and the event-loop stdio transport (issue 19): server_start.py and
# stdio_transport.py time this code against it
START_BEFORE = "03b529a4844f1b2433cfc4f6f5518b3430aac694"
PROFILE_STEPS = 3000
LABELS = {"loopengt": "loopengt", "langgraph": "LangGraph"}
QUICK: list[tuple[str, list[str], float]] = [  # --quick: a smoke test of this script, not figures to keep
    ("compare", ["compare_langgraph.py", "--sizes", "100", "200", "--budget", "5"], 300),
    ("steps", ["steps.py", "--steps", "300"], 120),
    ("mcp", ["mcp_roundtrip.py", "--calls", "60"], 120),
    ("mcp_legacy", ["mcp_roundtrip.py", "--calls", "60", "--mode", "legacy"], 120),
    ("git", ["git_workspace.py", "--files", "500", "--steps", "5"], 120),
    (
        "concurrency",
        ["concurrency.py", "--runs", "1", "2", "--steps", "10", "--rounds", "1", "--blocks", "2"],
        300,
    ),
    (
        "concurrency-slow",
        ["concurrency.py", "--runs", "1", "2", "--steps", "10", "--rounds", "1", "--blocks", "2", *SLOW],
        300,
    ),
    ("bytes", ["bytes_per_step.py", "--steps", "100", "--rounds", "1", "--no-profile"], 300),
    ("start", ["server_start.py", "--starts", "2"], 300),
    ("stdio", ["stdio_transport.py", "--calls", "60"], 300),
]


def _checkout(commit: str) -> Path | None:
    """A temporary git worktree of `commit` (None if this clone does not have it: then no before/after)."""
    path = OUT / f"before-{commit[:7]}"
    subprocess.run(
        ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True, check=False
    )
    done = subprocess.run(
        ["git", "worktree", "add", "--detach", "--force", str(path), commit],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    return path if done.returncode == 0 else None


def _run(name: str, argv: list[str], timeout: float) -> dict[str, Any]:
    """One benchmark in its own interpreter; its stdout goes to bench/out/NAME.log, its figures to NAME.json."""
    js, log = OUT / f"{name}.json", OUT / f"{name}.log"
    js.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(js)]
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(['python', f'bench/{argv[0]}', *argv[1:]])}", flush=True)
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            cmd, check=False, timeout=timeout, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    print(f"    done in {took:.0f} s (log {log.relative_to(ROOT)})", flush=True)
    data: dict[str, Any] = json.loads(js.read_text())
    data["_command"] = " ".join(["python", f"bench/{argv[0]}", *argv[1:]])
    data["_took_s"] = took
    return data


def _fsync_median(samples: int = 500) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=".bench-fsync-", dir=ROOT) as tmp:
        floor = FsyncFloor(Path(tmp))
        try:
            values = [floor.once() for _ in range(samples)]
        finally:
            floor.close()
    return {"median_ms": median(values) / 1e6, "p99_ms": pct(values, 99) / 1e6, "samples": samples}


def _first_line(path: str, key: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def machine() -> dict[str, Any]:
    df = subprocess.run(
        ["df", "-PTh", str(HERE)], check=False, capture_output=True, text=True
    ).stdout.splitlines()
    fields = df[-1].split() if len(df) > 1 else []
    disk: dict[str, Any] = {"df": df[-1] if fields else "?"}
    if fields:
        disk.update(
            device=fields[0], type=fields[1], size=fields[2], used=fields[3], avail=fields[4], mount=fields[6]
        )
        dev = Path(fields[0]).name.rstrip("0123456789") if fields[0].startswith("/dev/") else ""
        rot = Path(f"/sys/block/{dev}/queue/rotational")
        disk["rotational"] = rot.read_text().strip() if dev and rot.exists() else "?"
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True, cwd=ROOT
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "loopengt_core", "loopengt_server"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _first_line("/proc/cpuinfo", "model name"),
        "memory": _first_line("/proc/meminfo", "MemTotal"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "disk": disk,
        "commit": git.stdout.strip() or "?",
        "engine_uncommitted": [line[3:] for line in dirty.stdout.splitlines()],
    }


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ------------------------------------------------------------------------------------------ RESULTS.md


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("**met**" if met else "**missed**")


def goal_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(goal, value, target, verdict, where) for every goal the benchmarks check."""
    rows = [
        (g["goal"], _f(g["value"], 3), g["target"], _verdict(g["met"]), g["note"])
        for g in res["compare"]["goals"]
    ]
    for n, f in res["steps"]["sizes"].items():
        rows.append(
            (
                f"steps.py: loopengt step time, last 10% / first 10% of a {int(n):,}-step run (~0.9 kB steps)",
                _f(f["loopengt"]["growth"], 3),
                "<= 1.2",
                _verdict(f["growth_met"]),
                f"CPU time's {f['cpu_growth']:.2f}; the bare fsync loop's {f['fsync']['growth']:.2f}",
            )
        )
    for key in ("mcp", "mcp_legacy"):
        m = res[key]
        before = (
            f"; the code of {m['before_commit']}: {m['ratio_before']:.2f}"
            if m.get("ratio_before") is not None
            else ""
        )
        rows.append(
            (
                f"mcp_roundtrip.py ({m['mode']}, protocol {m['protocol']}): step over MCP / no-op+fsync tool over MCP, "
                "medians",
                _f(m["ratio"], 3),
                "<= 1.5",
                _verdict(m["ratio_met"]),
                f"paired by block {m['ratio_paired']:.2f}; p99s {m['ratio_p99']:.2f}{before}",
            )
        )
        rows.append(
            (
                f"mcp_roundtrip.py ({m['mode']}): the same over (no-op + a bare fsync timed back to back), medians",
                _f(m["ratio_summed"], 3),
                "<= 1.5",
                _verdict(m["ratio_summed"] <= 1.5),
                "the back-to-back fsync understates one issued after an idle round trip (see the MCP section)",
            )
        )
    if "git" in res:
        g = res["git"]
        rows.append(
            (
                f"git_workspace.py: time a step gains by recording a {g['files']:,}-file work tree "
                "(median with git - median without)",
                _f(g["added_ms"], 1) + " ms",
                f"<= {g['goal_ms']:g} ms",
                _verdict(g["met"]),
                f"git CPU per step {g['added_git_cpu_ms']:.1f} ms; `git status` alone "
                f"{g['rows']['git status (for scale)']['median_ms']:.1f} ms",
            )
        )
    if "bytes" in res:
        b = res["bytes"]
        payload = b["sides"]["this"][0]["payload_bytes"]
        rows.append(
            (
                f"bytes_per_step.py: bytes on disk per step / the output's size ({payload:,} B outputs)",
                _f(b["disk_ratio"]),
                "<= 2",
                _verdict(b["disk_ratio"] <= 2),
                f"the log alone {b['this']['log_bytes_per_step'] / payload:.2f}x; commit {b['base_commit']} "
                f"wrote {b['base']['disk_bytes_per_step'] / payload:.2f}x",
            )
        )
    if "concurrency" in res:
        rows += concurrency_goals(res["concurrency"])
    if "concurrency-slow" in res:
        rows += concurrency_goals(res["concurrency-slow"])
    if "start" in res:
        rows += start_goals(res["start"])
    if "stdio" in res:
        rows += stdio_goals(res["stdio"])
    return rows


CONCURRENCY_GOAL = 3.0  # 8 concurrent runs >= 3x the steps/s of one (issue 19)
GROUP_COMMIT_COST = 0.95  # one run with group commit on >= 0.95x its steps/s with it off


def _concurrency_label(c: dict[str, Any]) -> str:
    """`concurrency.py`, with --slow-fsync-ms when the run had it (its rows and section are apart)."""
    slow = c.get("slow_fsync_ms") or 0
    return f"concurrency.py --slow-fsync-ms {slow:g}" if slow else "concurrency.py"


def concurrency_goals(c: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The goal rows of bench/concurrency.py: N runs / one run (in-process, HTTP), and group commit's cost."""
    fig, ns = c["figures"], [str(n) for n in c["runs"]]
    top = ns[-1]
    name = _concurrency_label(c)
    rows = []
    for kind, label in (
        ("inprocess", "in-process `Runs.step` threads"),
        ("http-on", "HTTP clients, one server"),
    ):
        if kind not in fig:
            continue
        f = fig[kind][top]
        rows.append(
            (
                f"{name}: steps/s of {top} concurrent runs / of one run, {label}",
                _f(f["vs_one"], 2),
                f">= {CONCURRENCY_GOAL:g}x",
                _verdict(f["vs_one"] >= CONCURRENCY_GOAL),
                f"paired by round {f['vs_one_paired']:.2f}; bare append+fsync, same concurrency: "
                f"{fig['bare'][top]['vs_one']:.2f}x; fsync overlap {f['overlap']:.0%}; server/process CPU "
                f"{f['cpu_ms']:.2f} ms a step"
                + (f"; the clients' CPU {f['client_cpu_ms']:.2f} ms a step" if "client_cpu_ms" in f else "")
                + (f", of it user {f['user_ms']:.2f} ms" if "user_ms" in f else "")
                + (
                    f"; ceiling on this machine's {os.cpu_count()} cores x{f['ceiling']:.2f} "
                    + (
                        f"(one run's step / the user CPU a step at {top}: one interpreter runs Python on one "
                        "core at a time; and / the CPU a step per core)"
                        if "user_ms" in f
                        else f"(one run's step / the server's CPU a step at {top}, and / the server's and "
                        "clients' CPU a step per core)"
                    )
                    if "ceiling" in f
                    else ""
                ),
            )
        )
    p = c.get("one_run_on_off")
    if p:
        rows.append(
            (
                f"{name}: one run's in-process step time, group commit on / off",
                _f(p["on_off"], 3),
                "<= 1.05",
                _verdict(p["on_off"] <= 1.05),
                f"{p['on_ms']:.3f} vs {p['off_ms']:.3f} ms (medians of {p['blocks']} blocks of {p['steps']} steps, "
                f"one process, in turns); paired {p['on_off_paired']:.3f}",
            )
        )
    o = c.get("one_run")
    if o:
        rows.append(
            (
                "concurrency.py: the same, this code / the code before group commit (all changes since)",
                _f(o["ratio"], 3),
                "informational",
                "n/a",
                f"{o['after_ms']:.3f} vs {o['before_ms']:.3f} ms ({o['before_commit'][:7]}); paired "
                f"{o['ratio_paired']:.3f}; the typed events, one copy of each output and the layout came after it",
            )
        )
    b = c.get("bytes")
    if b and name == "concurrency.py":
        rows.append(
            (
                f"concurrency.py: bytes on disk per step / the output's size ({b['output_bytes']:,} B outputs)",
                _f(b["dir_ratio"], 2),
                "<= 2x",
                _verdict(b["dir_ratio"] <= 2),
                f"the log alone {b['log_per_step']:,.0f} B a step ({b['log_ratio']:.2f}x); with snapshot and task "
                f"index {b['dir_per_step']:,.0f} B, over {b['steps']} steps",
            )
        )
    for kind in ("http", "stdio"):
        if f"{kind}-on" not in fig or f"{kind}-off" not in fig:
            continue
        by_round = fig[f"{kind}-on"][ns[0]]["on_vs_off"]
        turns = c.get("alternating", {}).get(kind)
        one = turns["ratio"] if turns else by_round
        how = (
            f"{turns['blocks']} blocks of {turns['block_steps']} steps each, in turns"
            if turns
            else "paired by round"
        )
        rows.append(
            (
                f"{name}: one run over {kind}, steps/s with group commit / without ({how})",
                _f(one, 3),
                f">= {GROUP_COMMIT_COST:g}",
                _verdict(one >= GROUP_COMMIT_COST),
                (
                    f"paired by block {turns['paired']:.3f}; {turns['on_steps_s']:.0f} vs {turns['off_steps_s']:.0f} "
                    f"steps/s; by round {by_round:.2f}; "
                    if turns
                    else ""
                )
                + f"at {top} runs: {fig[f'{kind}-on'][top]['on_vs_off']:.2f}",
            )
        )
    return rows


def concurrency_section(c: dict[str, Any]) -> list[str]:
    fig, ns = c["figures"], [str(n) for n in c["runs"]]
    slow = c.get("slow_fsync_ms") or 0
    lines = [
        f"## {_concurrency_label(c)}: N runs at once (group commit)"
        + (f", every log fsync {slow:g} ms slower" if slow else ""),
        "",
        f"`{c['_command']}` ({c['_took_s']:.0f} s): N runs x {c['steps']} steps each, {c['rounds']} rounds taking "
        "turns; medians over rounds. bare: N threads each appending a 300-byte line + fdatasync to its own file; "
        "in-process: N threads on one `Runs`; http: N client sessions on one server; stdio: one session, N runs "
        "stepped by concurrent calls; on/off: group commit on (default) or off (LOOPENGT_GROUP_COMMIT=0, the "
        "quick step fsyncs on the event loop). overlap: share of log fsyncs that began while another was in "
        "flight (LOOPENGT_FSYNC_STATS); CPU: the server's (in-process: the process's) CPU ms per step. Each "
        "round takes the kinds in the opposite order of the one before."
        + (
            f" Every log fdatasync (bare, in-process, servers) sleeps {slow:g} ms after the real one "
            "(`--slow-fsync-ms`): the disk's slow mode, on demand."
            if slow
            else ""
        ),
        "",
    ]
    rows = []
    for kind, by_n in fig.items():
        for n in ns:
            f = by_n[n]
            rows.append(
                [
                    kind,
                    n,
                    _f(f["steps_s"], 0),
                    _f(f["vs_one"]),
                    _f(f["vs_one_paired"]),
                    _f(f.get("on_vs_off")) if "on_vs_off" in f else "",
                    f"{f['overlap']:.0%}" if "overlap" in f else "",
                    _f(f["mean_inflight"]) if "mean_inflight" in f else "",
                    _f(f["cpu_ms"]) if "cpu_ms" in f else "",
                ]
            )
    lines += _table(
        [
            "kind",
            "runs",
            "steps/s",
            "x one run",
            "paired",
            "on/off",
            "fsync overlap",
            "mean in flight",
            "CPU ms/step",
        ],
        rows,
        "lrrrrrrrr",
    )
    for kind, a in c.get("alternating", {}).items():
        lines += [
            "",
            f"One run over {kind}, group commit on and off, one run on each server stepped in {a['blocks']} "
            f"blocks of {a['block_steps']} steps taking turns: {a['on_steps_s']:.0f} vs {a['off_steps_s']:.0f} "
            f"steps/s, on/off **{a['ratio']:.3f}** (median of the block pairs {a['paired']:.3f}).",
        ]
    st = c.get("start") if not slow else None
    if st:
        lines += [
            "",
            f"Server start, spawn to the answer to `initialize` over stdio (median of {max(3, c['rounds'])}, in "
            f"turns): loopengt **{st['loopengt_s']:.2f} s**, the bare SDK server (bench/_noop_server.py) "
            f"{st['sdk_s']:.2f} s, ratio {st['ratio']:.2f}. Cumulative import times (`-X importtime`, one start): "
            + ", ".join(
                f"`{k}` {v:.2f} s" for k, v in sorted(st["imports_s"].items(), key=lambda kv: -kv[1])
            ),
        ]
    if c.get("hop_us") is not None and not slow:
        hop = c["hop_us"]
        lines += [
            "",
            "stdio transport: the SDK's stdio server (mcp/server/stdio.py) reads each line with a worker-thread "
            "call and writes each message with two (write, flush): 3 thread round trips a tool call, "
            f"{hop:.0f} µs each here (median of 2,000 `anyio.to_thread.run_sync` no-ops), ~{3 * hop / 1000:.2f} ms "
            "a step, plus 2 per notification sent. loopengt's stdio transport (loopengt_server/mcp/stdio.py) reads "
            "and writes a pipe on the event loop and makes none (stdio_transport.py below).",
        ]
    return [*lines, ""]


def bytes_section(b: dict[str, Any]) -> list[str]:
    payload = b["sides"]["this"][0]["payload_bytes"]
    lines = [
        f"## bytes_per_step.py: disk per step for {payload:,}-byte outputs, this tree vs {b['base_commit']}",
        "",
        f"`{b['_command']}` ({b['_took_s']:.0f} s): {b['steps']:,} steps a run, {b['rounds']} rounds alternating "
        "the two trees; medians over the rounds. Step time and CPU are ratios of this tree to the base in the "
        "same command.",
        "",
    ]
    rows = [
        [
            name,
            _f(b[name]["disk_bytes_per_step"], 0),
            _f(b[name]["disk_bytes_per_step"] / payload),
            _f(b[name]["log_bytes_per_step"], 0),
            _f(b[name]["step_ms_median"], 3),
            _f(b[name]["cpu_ms_median"], 3),
        ]
        for name in ("this", "base")
    ]
    lines += _table(
        ["tree", "disk B/step", "x output", "log B/step", "step median ms", "CPU ms/step"], rows, "lrrrrr"
    )
    lines += ["", f"Step time this / base: {b['step_ratio']:.2f}; CPU per step: {b['cpu_ratio']:.2f}."]
    if b.get("materialise_us"):
        m = b["materialise_us"]
        lines += [
            "",
            f"A task's input materialised (its earlier outputs put back): {m['from_the_fold']:.1f} µs from the "
            f"outputs the fold holds (what the code does), {m['read_by_seq']:.1f} µs reading the referred event "
            "through the store by seq.",
        ]
    if b.get("json"):
        lines += [
            "",
            "JSON work per step (json.dumps / json.loads metered in one more run of each tree):",
            "",
        ]
        for name, calls in b["json"].items():
            text = ", ".join(
                f"`{fn}` {c['per_step']:.2f} calls, {c['bytes_per_step']:.0f} B = "
                f"{c['bytes_per_step'] / payload:.2f}x the output, {c['ms_per_step']:.3f} ms"
                for fn, c in sorted(calls.items())
            )
            lines.append(f"- {name}: {text}")
    return [*lines, ""]


def _table(head: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    return [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(marks) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def compare_section(c: dict[str, Any]) -> list[str]:
    lines = [
        "## loopengt vs LangGraph: one step x N, 2 KB added each step, durable every step",
        "",
        f"`{c['_command']}` ({c['_took_s']:.0f} s). Each system in its own fresh process after a 20-step "
        f"warm-up; the two take turns in blocks of {c['block']} steps, with 10 bare append+fsync calls after each "
        "round (fsync ms: their median, the disk's mode during the runs). Cold load: median (and min) of "
        f"{c['cold_repeats']} fresh processes, interleaved across sizes and systems, timing only `get_run` / "
        "`graph.get_state` (imports and opening excluded, OS page cache warm). CPU ms: process CPU time per "
        "step (LangGraph's includes its background writer thread). Disk: apparent bytes of the sqlite file / "
        "the store directory after closing. RSS +run: peak RSS minus RSS before the run. The loopengt spec says "
        "`workspace: none` (no git snapshot per step). A run stops after "
        f"{c['budget_s']:.0f} s of its own steps or at {c['max_bytes'] / 1e9:.0f} GB on disk.",
        "",
    ]
    head = [
        "N",
        "system",
        "steps run",
        "median ms",
        "mean ms",
        "p99 ms",
        "first 10% ms",
        "last 10% ms",
        "last/first",
        "CPU ms",
        "disk MB",
        "peak RSS MB",
        "RSS +run MB",
        "cold load ms (min)",
        "fsync ms",
    ]
    rows = []
    for n, pair in c["sizes"].items():
        for system, label in (("loopengt", "loopengt"), ("langgraph", "LangGraph")):
            s = pair[system]
            rows.append(
                [
                    f"{int(n):,}",
                    label,
                    f"{s['steps']:,}" + (" (stopped)" if s["stopped"] else ""),
                    _f(s["median_ms"], 3),
                    _f(s["mean_ms"], 3),
                    _f(s["p99_ms"], 2),
                    _f(s["first10_ms"], 3),
                    _f(s["last10_ms"], 3),
                    _f(s["growth"]),
                    _f(s["cpu_median_ms"], 3),
                    _f(s["bytes"] / 1e6),
                    _f(s["rss_peak_mb"], 1),
                    _f(s["rss_delta_mb"], 1),
                    f"{s['cold_load_ms']:.2f} ({min(s['cold_loads_ms']):.2f})",
                    _f(pair["fsync"]["median_ms"], 3),
                ]
            )
    lines += _table(head, rows, "rl" + "r" * (len(head) - 2))
    lines += [
        "",
        "Ratios, loopengt / LangGraph (below 1: loopengt smaller or faster), and the speed-up (LangGraph's "
        "time / loopengt's; paired: median over rounds of LangGraph's block median / loopengt's):",
        "",
    ]
    head = [
        "N",
        "step median",
        "speed-up (median)",
        "speed-up (paired)",
        "step mean",
        "speed-up (mean)",
        "disk",
        "peak RSS",
        "RSS +run",
        "cold load",
        "note",
    ]
    rows = []
    for n, pair in c["sizes"].items():
        r = pair["ratios"]
        notes = [f"speed over the first {r['same_steps']:,} steps of both" if r["langgraph_capped"] else ""]
        notes += [f"{LABELS[s]} {pair[s]['stopped']}" for s in LABELS if pair[s]["stopped"]]
        rows.append(
            [
                f"{int(n):,}",
                _f(r["step_median"], 3),
                f"{r['speedup_median']:.2f}x",
                "n/a"
                if r["speedup_paired"] is None
                else f"{r['speedup_paired']:.2f}x ({r['blocks_paired']} rounds)",
                _f(r["step_mean"], 3),
                f"{r['speedup_mean']:.2f}x",
                f"{r['storage']:.4f} (1/{1 / r['storage']:.0f})",
                _f(r["rss_peak"]),
                _f(r["rss_delta"]),
                _f(r["cold_load"]),
                "; ".join(x for x in notes if x),
            ]
        )
    lines += _table(head, rows, "r" * (len(head) - 1) + "l")
    sq = next(iter(c["sizes"].values()))["langgraph"]["sqlite"]
    lines += [
        "",
        f"LangGraph's sqlite connection: journal_mode={sq['journal_mode']}, synchronous={sq['synchronous']} "
        "(2 = FULL: every commit fdatasyncs the WAL). A LangGraph step is two commits: the node's writes (from a "
        'background thread) and the checkpoint, which `durability="sync"` waits for before the next step.',
        "",
    ]
    return lines


def steps_section(s: dict[str, Any]) -> list[str]:
    lines = [
        "## steps.py: loopengt `Runs.step` vs a bare append+fsync (~0.9 kB steps)",
        "",
        f"`{s['_command']}` ({s['_took_s']:.0f} s); interleaved in blocks of 50.",
        "",
    ]
    head = [
        "N",
        "loopengt steps/s",
        "median ms",
        "p99 ms",
        "fsync/s",
        "fsync median ms",
        "ratio median",
        "paired by block",
        "p99 ratio",
        "mean ratio",
        "CPU ms/step",
        "last/first (CPU)",
        "snapshot step ms",
        "log MB",
        "snapshot kB",
    ]
    rows = []
    for n, f in s["sizes"].items():
        rows.append(
            [
                f"{int(n):,}",
                _f(f["loopengt"]["per_s"], 0),
                _f(f["loopengt"]["median_ms"], 3),
                _f(f["loopengt"]["p99_ms"], 3),
                _f(f["fsync"]["per_s"], 0),
                _f(f["fsync"]["median_ms"], 3),
                _f(f["ratio_median"]),
                _f(f["ratio_paired"]),
                _f(f["ratio_p99"]),
                _f(f["ratio_mean"]),
                _f(f["cpu_median_ms"], 3),
                f"{f['loopengt']['growth']:.2f} ({f['cpu_growth']:.2f})",
                _f(f["snapshot_step_median_ms"], 3),
                _f(f["log_bytes"] / 1e6),
                _f(f["snapshot_bytes"] / 1e3, 1),
            ]
        )
    lines += _table(head, rows)
    for n, why in s.get("skipped", {}).items():
        lines.append(f"\nN = {int(n):,} skipped: {why}")
    return [*lines, ""]


def mcp_section(ms: list[dict[str, Any]]) -> list[str]:
    lines = ["## mcp_roundtrip.py: a durable `step` over MCP stdio", ""]
    for m in ms:
        lines += [
            f"`{m['_command']}` ({m['_took_s']:.0f} s): protocol {m['protocol']}, {m['calls']} calls of each kind "
            f"after warm-up; server start + connect {m['started_s']:.2f} s.",
            "",
        ]
        rows = [
            [r["label"], _f(r["median_ms"], 3), _f(r["p99_ms"], 3), _f(r["max_ms"]), _f(r["growth"])]
            for r in m["rows"].values()
        ]
        lines += _table(["call", "median ms", "p99 ms", "max ms", "last/first 10%"], rows)
        sp = m["split_ms"]
        floor = m["rows"]["noop_fsync"]["median_ms"] - m["rows"]["noop"]["median_ms"]
        lines += [
            "",
            f"step / no-op+fsync tool: medians **{m['ratio']:.2f}** (goal <= 1.5: {_verdict(m['ratio_met'])}), "
            f"paired by block {m['ratio_paired']:.2f}, p99s {m['ratio_p99']:.2f}"
            + (
                f"; the server of {m['before_commit']} (before the fixes), same floor: {m['ratio_before']:.2f}"
                if m.get("ratio_before") is not None
                else ""
            )
            + f". Over (no-op + the bare fsync timed back to back): {m['ratio_summed']:.2f}. The floor tool "
            f"(bench/_noop_server.py `append_fsync`) is the SDK's no-op plus one append+fsync of the same line; "
            f"an fsync issued after an idle round trip took {floor:.3f} ms here against "
            f"{m['rows']['fsync']['median_ms']:.3f} ms back to back. Median step split: transport "
            f"{sp['transport']:.3f} ms + `Runs.step` {sp['service']:.3f} ms + the rest (tool layer, the fsync's "
            f"idle penalty, notifications) {sp['rest']:.3f} ms.",
            "",
        ]
    return lines


def git_section(g: dict[str, Any]) -> list[str]:
    lines = [
        "## git_workspace.py: what recording the code's state adds to a step",
        "",
        f"`{g['_command']}` ({g['_took_s']:.0f} s): a repository of {g['files']:,} committed files, "
        f"{g['untracked']} untracked and {g['ignored']:,} ignored; git {g['git']}. Two runs of the same spec, "
        f"`workspace: git` and `workspace: none`, interleaved in blocks of {g['block']}, {g['steps']} timed steps "
        "each; before each step the agent edits one tracked file (not timed). git CPU: CPU time of the git "
        "processes a call started.",
        "",
    ]
    rows = [
        [name, _f(r["median_ms"], 1), _f(r["p90_ms"], 1), _f(r["max_ms"], 1), _f(r["git_cpu_ms"], 1)]
        for name, r in g["rows"].items()
    ]
    lines += _table(["call", "median ms", "p90 ms", "max ms", "git CPU ms"], rows)
    lines += [
        "",
        f"Added per step: **{g['added_ms']:.1f} ms** (goal <= {g['goal_ms']:g} ms: {_verdict(g['met'])}), "
        f"{g['added_git_cpu_ms']:.1f} ms of it git CPU.",
        "",
    ]
    return lines


def profile_section(p: dict[str, Any], missed: list[str]) -> list[str]:
    lines = [
        f"## Profile of loopengt's step ({p['n']:,} `Runs.step` calls, 2 KB outputs, cProfile)",
        "",
        "Run because a goal was missed: " + "; ".join(missed) + ". "
        f"`python bench/compare_langgraph.py --sizes --profile {p['n']}`; all times inflated by the profiler "
        f"({p['elapsed_s']:.1f} s profiled).",
        "",
        "Top functions by cumulative time:",
        "",
    ]
    head = ["cumulative s", "ms/step", "own s", "calls", "function"]

    def rows(entries: list[dict[str, Any]]) -> list[list[str]]:
        return [
            [
                _f(r["cumulative_s"], 3),
                _f(r["cumulative_ms_per_step"], 3),
                _f(r["own_s"], 3),
                f"{r['calls']:,}",
                f"`{r['function']}`",
            ]
            for r in entries
        ]

    lines += _table(head, rows(p["cumulative"]), "rrrrl")
    lines += ["", "Top functions by own time:", ""]
    lines += _table(head, rows(p["own"]), "rrrrl")
    lines += ["", "What grew from the first 10% of the steps to the last 10% (cumulative ms per step):", ""]
    lines += _table(
        ["first 10%", "last 10%", "function"],
        [
            [_f(g["first_ms_per_step"], 3), _f(g["last_ms_per_step"], 3), f"`{g['function']}`"]
            for g in p["growth"]
        ],
        "rrl",
    )
    lines += [
        "",
        f"Cold load of that {p['n']:,}-step run in a fresh process, `get_run` under cProfile "
        f"({p['cold_load_ms']:.1f} ms with the profiler), top by cumulative time:",
        "",
    ]
    lines += _table(
        ["cumulative ms", "own ms", "calls", "function"],
        [
            [_f(r["cumulative_s"] * 1e3, 2), _f(r["own_s"] * 1e3, 2), f"{r['calls']:,}", f"`{r['function']}`"]
            for r in p["cold_load"]
        ],
        "rrrl",
    )
    return [*lines, ""]


def write(res: dict[str, Any], path: Path) -> None:
    m, v = res["machine"], res["versions"]
    d = m["disk"]
    fs0, fs1 = res["fsync_start"], res["fsync_end"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python bench/run_all.py` on {res['date']} in {res['elapsed_s'] / 60:.1f} min. Do not edit by "
        "hand: rerun it. Absolute times on this VM swing with other load and with the disk's mode (see "
        "bench/README.md); the ratios against a baseline of the same command are the figures to compare.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpus']} cores ({m['cpu_model']}); memory {m['memory']}; load average "
        f"{res['load_start'][0]:.2f} at the start, {res['load_end'][0]:.2f} at the end",
        f"- Python {m['python']} ({m['platform']}); SQLite {m['sqlite']}",
        f"- Disk of bench/: `{d['df']}` (`df -PTh`; rotational: {d.get('rotational', '?')})",
        f"- Bare append+fsync (300 B, 500 calls) in that filesystem: median {fs0['median_ms']:.3f} ms "
        f"(p99 {fs0['p99_ms']:.3f}) at the start, {fs1['median_ms']:.3f} ms (p99 {fs1['p99_ms']:.3f}) at the end",
        "- Packages: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Commit {m['commit']}"
        + (
            f"; the engine had uncommitted changes in the working tree measured: {', '.join(m['engine_uncommitted'])}"
            if m["engine_uncommitted"]
            else ""
        ),
        "",
        "## Goals",
        "",
    ]
    goals = goal_rows(res)
    lines += _table(["goal", "value", "target", "verdict", "details"], [list(g) for g in goals], "lrlll")
    lines += ["", *compare_section(res["compare"]), *steps_section(res["steps"])]
    lines += mcp_section([res["mcp"], res["mcp_legacy"]])
    if "git" in res:
        lines += git_section(res["git"])
    if "concurrency" in res:
        lines += concurrency_section(res["concurrency"])
    if "concurrency-slow" in res:
        lines += concurrency_section(res["concurrency-slow"])
    if "bytes" in res:
        lines += bytes_section(res["bytes"])
    if "start" in res:
        lines += start_section(res["start"])
    if "stdio" in res:
        lines += stdio_section(res["stdio"])
    if res.get("profile"):
        lines += profile_section(res["profile"], res["missed"])
    path.write_text("\n".join(lines).rstrip() + "\n")


def start_goals(s: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """server_start.py's row: time to the first answer against the code before the lean start."""
    if s.get("ratio") is None:
        return []
    return [
        (
            f"server_start.py: spawn -> first answer of `loopengt serve` (stdio), this code / the code of "
            f"{s['before_commit']}",
            _f(s["ratio"], 3),
            "< 1",
            _verdict(s["ratio"] < 1),
            f"{s['first_s']['now']:.2f} s vs {s['first_s']['before']:.2f} s (medians of {s['starts']} starts in "
            f"turns; paired {s['ratio_paired']:.2f}); a process that only imports the SDK's server: "
            f"{s['sdk_floor_s']:.2f} s, so loopengt's own part {s['first_s']['now'] - s['sdk_floor_s']:.2f} s vs "
            f"{s['first_s']['before'] - s['sdk_floor_s']:.2f} s",
        )
    ]


def start_section(s: dict[str, Any]) -> list[str]:
    rows = [
        [
            "this code" if k == "now" else f"the code of {s.get('before_commit', '?')}",
            f"{s['first_s'][k]:.3f}",
            f"{s['listed_s'][k]:.3f}",
        ]
        for k in s["first_s"]
    ]
    rows.append(["a process that imports `mcp.server.mcpserver` and exits", f"{s['sdk_floor_s']:.3f}", ""])
    return _section(
        "## server_start.py: spawn to the first answer of `loopengt serve`",
        f"`{s['_command']}` ({s['_took_s']:.0f} s): fresh stdio server processes in turns, timed by the SDK's "
        "`Client` from spawn to its connection (the answer to `server/discover`) and to a first `tools/list`; "
        "medians.",
        ["server", "first answer s", "tools/list s"],
        rows,
    )


def _section(title: str, intro: str, head: list[str], rows: list[list[str]]) -> list[str]:
    """A benchmark's section: its title, what was run and how, and its table."""
    return [title, "", intro, "", *_table(head, rows), ""]


def stdio_goals(s: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """stdio_transport.py's row: server CPU a step over stdio against the SDK's own transport."""
    kinds = s["kinds"]
    if "before" not in kinds:
        return []
    now, before = kinds["now"], kinds["before"]
    return [
        (
            f"stdio_transport.py: server CPU per step over MCP stdio, this code / the code of {before['commit']} "
            "(the SDK's stdio transport)",
            _f(s["cpu_ratio"], 3),
            "< 1",
            _verdict(s["cpu_ratio"] < 1),
            f"{now['cpu_ms']:.2f} vs {before['cpu_ms']:.2f} ms; worker-thread hops a call {_f(now['hops_per_call'], 1)} "
            f"vs {_f(before['hops_per_call'], 1)}; round-trip medians {now['median_ms'] / before['median_ms']:.2f}; "
            f"Runs.step in-process {s['core_cpu_ms']:.2f} ms CPU",
        )
    ]


def stdio_section(s: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"{'this code' if k == 'now' else 'SDK transport'} ({v['commit']})",
            f"{v['median_ms']:.3f}",
            f"{v['cpu_ms']:.3f}",
            f"{v['cpu_ms'] - s['core_cpu_ms']:.3f}",
            _f(v["hops_per_call"], 1),
        ]
        for k, v in s["kinds"].items()
    ]
    rows.append(["`Runs.step` in-process", "", f"{s['core_cpu_ms']:.3f}", "", ""])
    return _section(
        "## stdio_transport.py: server CPU of a step over MCP stdio",
        f"`{s['_command']}` ({s['_took_s']:.0f} s): {s['calls']} sequential steps on each server, in turns by "
        "block; server CPU from /proc, worker-thread hops counted by bench/_counted.py (every "
        "`anyio.to_thread.run_sync`, over the session's calls).",
        ["server", "round trip ms", "server CPU ms", "outside Runs.step ms", "thread hops"],
        rows,
    )


# Benchmarks `--only` can rerun on their own: their section and goal rows replace the old ones in place.
SPLICEABLE = {
    "concurrency": (concurrency_section, concurrency_goals),
    "concurrency-slow": (concurrency_section, concurrency_goals),
    "start": (start_section, start_goals),
    "stdio": (stdio_section, stdio_goals),
}


def splice(path: Path, name: str, data: dict[str, Any], date: str) -> None:
    """Replace (or add) one benchmark's section and goal rows in an existing RESULTS.md."""
    section_of, goals_of = SPLICEABLE[name]
    section = section_of(data)
    section.insert(
        1,
        f"\n_Rerun alone by `python bench/run_all.py --only {name}` on {date}; the other sections "
        "are from the full run dated at the top._",
    )
    goals = ["| " + " | ".join(g) + " |" for g in goals_of(data)]
    prefix = goals[0].split(":")[0] + ":" if goals else None
    lines = path.read_text().splitlines()
    title = section[0]
    if title in lines:  # drop the old section: its title up to the next heading
        start = lines.index(title)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        del lines[start:end]
    else:
        start = next((i for i, line in enumerate(lines) if line.startswith("## Profile")), len(lines))
    lines[start:start] = section
    if prefix is not None:
        lines = [line for line in lines if not line.startswith(prefix)]
        head = lines.index("## Goals")
        end = next(i for i in range(head + 3, len(lines)) if not lines[i].startswith("|"))
        lines[end:end] = goals
    path.write_text("\n".join(lines).rstrip() + "\n")


def _group_before(quick: bool) -> list[str]:
    """concurrency.py's --before arguments: a worktree of the code before group commit (`_drop` removes it)."""
    path = None if quick else _checkout(GROUP_BEFORE)
    return [] if path is None else ["--before", str(path), "--before-commit", GROUP_BEFORE]


def _start_before(quick: bool) -> list[str]:
    """server_start.py's and stdio_transport.py's --before: a worktree of START_BEFORE (`_drop` removes it)."""
    path = None if quick else _checkout(START_BEFORE)
    return [] if path is None else ["--before", str(path)]


def _extra(name: str, quick: bool) -> list[str]:
    """The before/after arguments of one benchmark of the plan."""
    if name == "concurrency":
        return _group_before(quick)
    if name in ("start", "stdio"):
        return _start_before(quick)
    return []


def _drop(commit: str) -> None:
    """Remove the temporary worktree `_checkout(commit)` made, if any."""
    path = OUT / f"before-{commit[:7]}"
    if path.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="the Markdown file to write")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile even if a goal is missed")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: check this script works (use --out)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(SPLICEABLE),
        help="rerun just these and replace their sections and goal rows in --out (which must exist)",
    )
    args = parser.parse_args(argv)
    plan, profile_steps = (QUICK, 500) if args.quick else (PLAN, PROFILE_STEPS)
    OUT.mkdir(exist_ok=True)
    if args.only:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        try:
            for name, argv_, timeout in plan:
                if name in args.only:
                    splice(
                        Path(args.out), name, _run(name, [*argv_, *_extra(name, args.quick)], timeout), date
                    )
        finally:
            _drop(GROUP_BEFORE)
            _drop(START_BEFORE)
        print(f"\nupdated {args.out}: {', '.join(args.only)}")
        return
    began = time.monotonic()
    res: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "load_start": os.getloadavg(),
        "fsync_start": _fsync_median(),
    }
    before = None if args.quick else _checkout(MCP_BEFORE)
    try:
        for name, argv_, timeout in plan:
            extra = ["--before", str(before)] if name == "mcp" and before is not None else []
            extra += _extra(name, args.quick)
            res[name] = _run(name, [*argv_, *extra], timeout)
    finally:
        if before is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)
        _drop(GROUP_BEFORE)
        _drop(START_BEFORE)
    res["missed"] = [g[0] for g in goal_rows(res) if g[3] == "**missed**"]
    if res["missed"] and not args.no_profile:
        prof = _run("profile", ["compare_langgraph.py", "--sizes", "--profile", str(profile_steps)], 600)
        res["profile"] = prof["profile"]
    res["fsync_end"] = _fsync_median()
    res["load_end"] = os.getloadavg()
    res["elapsed_s"] = time.monotonic() - began
    (OUT / "run_all.json").write_text(json.dumps(res, indent=1, default=str))
    write(res, Path(args.out))
    print(f"\nwrote {args.out} in {res['elapsed_s'] / 60:.1f} min; goals missed: {len(res['missed'])}")
    for goal in res["missed"]:
        print(f"  missed: {goal}")


if __name__ == "__main__":
    main()
