"""Crash suite: real stdio servers driven by the real `mcp` client and killed with SIGKILL, over and over.

Run explicitly (it is not collected by `python -m pytest`):

    python -m pytest tests/durability/crash_suite.py -q -s

Each scenario keeps one file store and a ledger of what the client did: every step whose tool call returned
(acknowledged) and the one call per run that was in flight when the server died. A session is one server
process: `loopengt check` runs on the store the last one left (a new process, in parallel with the new
server's start-up), the new server's trace must hold every acknowledged output exactly once, the in-flight
submission is sent again (when it was recorded already, twice more must give the same answer and leave the
trace alone), every running run must still be drivable, and then the client submits steps until the server
dies: killed by the test after a random delay, or by itself at a fault point inside a write
(`LOOPENGT_FAULT`, see loopengt_core/store/files/faults.py). After the last kill every run is driven to its end.

Commands: in the `commands` scenario a command step and a command gate each append a line to a counter file
per run. A command whose runner died after claiming it legitimately runs again once the claim is taken over,
so the invariant is: recorded results <= executions <= claims (command_started events), and each command has
at most one recorded result.

Set LOOPENGT_DURABILITY_SEED to replay a seed (timing still varies); the seed is printed first.
"""

from __future__ import annotations

import os
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from durability_helpers import (
    ServerGone,
    call,
    check_trace,
    command_counts,
    finish_check,
    killable_stdio_client,
    lines_in,
    open_lease,
    pid_alive,
    read_pid,
    read_trace,
    seed_from_env,
    sigkill,
    start_check,
    structured,
    submissions,
)
from mcp import Client
from mcp_helpers import text_of

pytestmark = pytest.mark.anyio


def _alive_in(pidfile: Path) -> bool:
    """Whether the server whose pid the wrapper wrote is still running (False when none was written)."""
    try:
        return pid_alive(int(pidfile.read_text().strip()))
    except (OSError, ValueError):
        return False


SEED = seed_from_env()
PY = sys.executable

AGENT_SPEC = """\
name: crash-loop
goal: Survive being killed at any moment
pattern: evaluator_optimizer
agents:
  - name: critic
  - name: coder
steps:
  - name: evaluate
    agent: critic
  - name: optimize
    agent: coder
policy:
  max_turns: 10000
stop_conditions:
  - {condition_type: quality_threshold, value: 0.8}
"""


def command_spec(run_id: str) -> str:
    """work -> (gate `tally`) -> routes: more -> `count` (a command step) -> work; stop -> finish."""
    return f"""\
name: crash-commands
goal: Run each command at most once per recorded attempt
pattern: custom
agents:
  - name: coder
steps:
  - name: work
    agent: coder
    verification_gates: [tally]
    routes: {{field: go, map: {{more: count, stop: finish}}}}
  - name: count
    run: ["{PY}", "-c", "open('count-{run_id}.txt', 'a').write('c\\\\n')"]
    timeout_seconds: 20
    next: work
  - name: finish
    agent: coder
policy:
  max_turns: 10000
  retry: {{max_retries: 3, backoff: fixed, initial_delay_seconds: 0}}
  verification_gates:
    - name: tally
      command: ["{PY}", "-c", "open('gate-{run_id}.txt', 'a').write('g\\\\n')"]
      on_failure: retry
      timeout_seconds: 20
"""


# What the engine appends in the same transition right after an output_submitted, in these specs: the
# step completes (then the next task, the run's end, or a command step follows), or a command gate is queued.
AFTER_SUBMISSION = {"step_completed", "command_requested"}
AFTER_COMPLETION = {"task_issued", "run_completed", "command_requested"}


def half_applied(run_id: str, events: list[dict[str, Any]]) -> list[str]:
    """Submissions whose transition did not land whole (the decision events missing after them)."""
    problems = []
    for i, event in enumerate(events):
        if event["type"] != "output_submitted":
            continue
        following = [e["type"] for e in events[i + 1 : i + 3]]
        if (
            not following
            or following[0] not in AFTER_SUBMISSION
            or (
                following[0] == "step_completed"
                and (len(following) < 2 or following[1] not in AFTER_COMPLETION)
            )
        ):
            problems.append(f"{run_id}: seq {event['seq']} output_submitted is followed by {following}")
    return problems


@dataclass(frozen=True)
class Scenario:
    name: str
    kills: int
    spec: str = "agent"  # agent | command
    faults: tuple[str, ...] = ()  # fault points drawn per session; none: the test kills after a delay
    fault_nth: tuple[int, int] = (1, 12)  # LOOPENGT_FAULT=point:n with n drawn from this range
    timer_share: float = 0.0  # with faults: the share of sessions killed by the test instead
    # Timer kills: mostly after a random number of acknowledged steps of the session plus a random delay
    # (so the kill lands while steps are in flight); `early_share` of them at a random delay after the server
    # is ready instead (landing in the recovery calls or the first steps).
    kill_after_steps: tuple[int, int] = (1, 12)
    kill_delay: tuple[float, float] = (0.0, 0.015)
    early_share: float = 0.2
    early_delay: tuple[float, float] = (0.0, 0.3)
    slots: int = 2  # runs driven at once (each by its own sequential task on one client)
    snapshot_every: int = 100
    turns: tuple[int, int] = (8, 40)  # submissions after which a run is let finish
    mode: str = "legacy"  # MCP protocol era of the client


SCENARIOS = [
    Scenario("timer", kills=60, slots=3, snapshot_every=3),
    Scenario(
        "append",
        kills=50,
        # group.before_sync: the server's quick steps are group-committed (on by default): killed after the
        # write, with the fsync handed to GroupSync's thread and not yet done
        faults=(
            "append.before_write",
            "append.mid_write",
            "append.after_write",
            "group.before_sync",
            "append.after_fsync",
        ),
        fault_nth=(1, 15),
        slots=3,
        mode="auto",
    ),
    Scenario(
        "snapshot",
        kills=35,
        faults=("snapshot.after_temp", "snapshot.after_rename"),
        fault_nth=(1, 10),
        snapshot_every=2,
    ),
    Scenario("create", kills=12, faults=("create.before_rename",), fault_nth=(1, 3), turns=(1, 3)),
    Scenario(
        "commands",
        kills=50,
        spec="command",
        faults=(
            "append.mid_write",
            "append.after_write",
            "group.before_sync",
            "append.after_fsync",
            "snapshot.after_rename",
        ),
        fault_nth=(1, 25),
        timer_share=0.4,
        kill_after_steps=(1, 4),
        kill_delay=(0.0, 0.15),
        snapshot_every=4,
        turns=(4, 15),
        mode="auto",
    ),
]
# LOOPENGT_DURABILITY_SCALE shrinks the kill counts for a quick local try (the summary then fails the bar).
SCALE = float(os.environ.get("LOOPENGT_DURABILITY_SCALE", "1"))
FALLBACK_KILL_SECONDS = 6.0  # a fault that did not fire by then: the test kills the server itself


@dataclass
class Tally:
    kills: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    doubled: int = 0
    check_failures: int = 0
    problems: list[str] = field(default_factory=list)
    acknowledged: int = 0
    inflight_recorded: int = 0  # unacknowledged submissions found in the log after the crash
    inflight_absent: int = 0
    lease_waits: int = 0
    runs: int = 0
    seconds: float = 0.0


@dataclass
class RunLedger:
    run_id: str
    spec_path: str
    target: int
    created: bool = False
    start_inflight: bool = False
    acked: dict[str, Any] = field(default_factory=dict)
    inflight: tuple[str, Any] | None = None
    view: dict[str, Any] | None = None
    ended: bool = False
    settled: bool = False  # verified after it ended; looked at again only at the end
    submissions: int = 0


class Lane:
    """One scenario: one store, its runs and what the client knows about them, and the servers' lives."""

    def __init__(self, scenario: Scenario, root: Path, rng: random.Random, tally: Tally) -> None:
        self.sc = scenario
        self.root = root
        self.store = root / "store"
        self.rng = rng
        self.tally = tally
        self.runs: list[RunLedger] = []
        self.owned: set[str] = set()
        self.lost_steps: set[tuple[str, str]] = set()  # (run_id, task_id): acknowledged, then missing
        self.doubled_steps: dict[tuple[str, str], int] = {}  # (run_id, task_id): extra output_submitted
        self.counter = 0
        self.nonce = 0
        self.pidfile = root / "server.pid"
        self.session_acks = 0
        self.kill_after_steps = 0
        self.acked_enough = anyio.Event()
        self.log = root / "server.log"
        (root / "agent.yaml").write_text(AGENT_SPEC, encoding="utf-8")

    def problem(self, text: str) -> None:
        """Note a problem once (a lost step is seen again by every later session's verification)."""
        text = f"[{self.sc.name}] {text}"
        if text not in self.tally.problems:
            self.tally.problems.append(text)

    def lost(self, run_id: str, task_id: str) -> None:
        self.lost_steps.add((run_id, task_id))
        self.tally.lost = len(self.lost_steps)

    def doubled(self, run_id: str, task_id: str, extra: int) -> None:
        key = (run_id, task_id)
        self.doubled_steps[key] = max(extra, self.doubled_steps.get(key, 0))
        self.tally.doubled = sum(self.doubled_steps.values())

    # --- runs and outputs ---------------------------------------------------------------------

    def new_run(self) -> RunLedger:
        self.counter += 1
        run_id = f"{self.sc.name}-{self.counter}"
        spec_path = "agent.yaml"
        if self.sc.spec == "command":
            spec_path = f"cmd-{run_id}.yaml"
            (self.root / spec_path).write_text(command_spec(run_id), encoding="utf-8")
        run = RunLedger(run_id, spec_path, self.rng.randint(*self.sc.turns))
        self.runs.append(run)
        self.tally.runs += 1
        return run

    def output_for(self, run: RunLedger, task: dict[str, Any]) -> dict[str, Any]:
        self.nonce += 1
        nonce = f"{run.run_id}/{task['task_id']}/{self.nonce}"
        finishing = run.submissions >= run.target
        step = task["step"]
        if step == "evaluate":
            return {"score": 0.95 if finishing else 0.1, "nonce": nonce}
        if step == "work":
            return {"go": "stop" if finishing else "more", "nonce": nonce}
        return {"summary": f"{step} by the crash suite", "nonce": nonce}

    # --- one server's life --------------------------------------------------------------------

    async def session(self, *, final: bool = False) -> None:
        fault = None
        if not final and self.sc.faults and self.rng.random() >= self.sc.timer_share:
            fault = f"{self.rng.choice(self.sc.faults)}:{self.rng.randint(*self.sc.fault_nth)}"
        delay, after_steps = None, 0
        if not final and fault:
            delay = FALLBACK_KILL_SECONDS
        elif not final and self.rng.random() < self.sc.early_share:
            delay = self.rng.uniform(*self.sc.early_delay)
        elif not final:
            after_steps = self.rng.randint(*self.sc.kill_after_steps)
            delay = self.rng.uniform(*self.sc.kill_delay)
        self.session_acks, self.acked_enough = 0, anyio.Event()
        self.kill_after_steps = after_steps
        env = {"LOOPENGT_SNAPSHOT_EVERY": str(self.sc.snapshot_every)}
        if fault:
            env["LOOPENGT_FAULT"] = fault
        self.pidfile.unlink(missing_ok=True)
        log_mark = self.log.stat().st_size if self.log.exists() else 0
        checker = start_check(self.store) if self.store.exists() else None
        killed_by_test = False
        gone = False
        client_cm = killable_stdio_client(
            self.store, self.root, self.pidfile, self.log, env=env, mode=self.sc.mode
        )
        entered = False
        try:
            async with client_cm as client:
                entered = True
                pid = await read_pid(self.pidfile)
                if checker is not None:
                    code, out = await finish_check(checker)
                    if code != 0:
                        self.tally.check_failures += 1
                        self.problem(f"loopengt check exited {code} after a kill: {out.strip()[-2000:]}")

                async def killer() -> None:
                    nonlocal killed_by_test
                    assert delay is not None
                    if after_steps:
                        await self.acked_enough.wait()
                    await anyio.sleep(delay)
                    killed_by_test = True
                    sigkill(pid)

                async with anyio.create_task_group() as background:
                    if delay is not None:
                        background.start_soon(killer)
                    try:
                        await self.recover(client, pid)
                        if final:
                            await self.finish_all(client, pid)
                        else:
                            async with anyio.create_task_group() as drivers:
                                for _ in range(self.sc.slots):
                                    drivers.start_soon(self.drive_slot, client, pid)
                            gone = True  # the slots return only when the server is gone
                    except ServerGone:
                        gone = True
                    background.cancel_scope.cancel()
        except Exception:
            # A server now writes while it starts (it runs the commands no one runs, after a kill), so a
            # fault point can fire before the client's handshake is done: that is a death like any other.
            if entered or _alive_in(self.pidfile):
                raise
            gone = True
            if checker is not None:
                code, out = await finish_check(checker)
                if code != 0:
                    self.tally.check_failures += 1
                    self.problem(f"loopengt check exited {code} after a kill: {out.strip()[-2000:]}")
        self.owned.clear()
        if final:
            if gone:
                self.problem("the server died in the final session, where nothing kills it")
            return
        if not gone:
            self.problem("a session ended without the server dying")
            return
        self.tally.kills += 1
        if killed_by_test:
            self.tally.kinds["timer (fault did not fire)" if fault else "timer"] += 1
        else:
            self.tally.kinds[fault.split(":")[0] if fault else "unexpected"] += 1
        if not killed_by_test and not fault:
            self.problem("the server died before the test killed it")
        new_log = self.log.read_bytes()[log_mark:].decode(errors="replace") if self.log.exists() else ""
        if "Traceback (most recent call last)" in new_log:
            self.problem(f"the server logged a traceback (fault {fault}):\n{new_log[-3000:]}")

    async def drive_slot(self, client: Client, pid: int) -> None:
        """Submit steps to one run after another until the server dies."""
        try:
            while True:
                run = next((r for r in self.runs if not r.ended and r.run_id not in self.owned), None)
                if run is None:
                    run = self.new_run()
                self.owned.add(run.run_id)
                if not run.created:
                    run.start_inflight = True
                    result = await call(
                        client, "start_run", {"spec_path": run.spec_path, "run_id": run.run_id}, pid=pid
                    )
                    run.view = structured(result)
                    run.created, run.start_inflight = True, False
                while not await self.step_once(client, pid, run):
                    pass
                self.owned.discard(run.run_id)
        except ServerGone:
            return

    async def step_once(self, client: Client, pid: int, run: RunLedger) -> bool:
        """Submit one output to the run's first open task; True once the run has ended."""
        view = run.view
        assert view is not None
        if view["status"] != "running":
            run.ended = True
            if view["status"] != "completed":
                self.problem(f"{run.run_id} ended {view['status']}: {view.get('error')}")
            return True
        if not view["tasks"]:
            self.problem(f"{run.run_id} is running without open tasks: {view['next_action']}")
            run.ended = True
            return True
        task = view["tasks"][0]
        output = self.output_for(run, task)
        run.inflight = (task["task_id"], output)
        run.submissions += 1
        result = await call(
            client, "step", {"run_id": run.run_id, "task_id": task["task_id"], "output": output}, pid=pid
        )
        if result.is_error:
            self.problem(f"{run.run_id}: step {task['task_id']} refused: {text_of(result)}")
            run.inflight = None
            run.ended = True
            return True
        run.acked[task["task_id"]] = output
        run.inflight = None
        run.view = structured(result)
        self.tally.acknowledged += 1
        self.session_acks += 1
        if self.session_acks == self.kill_after_steps:
            self.acked_enough.set()
        return False

    # --- after a crash ------------------------------------------------------------------------

    async def recover(self, client: Client, pid: int, *, everything: bool = False) -> None:
        """What the last server left must hold every acknowledged step once and be drivable to its end."""
        for run in list(self.runs):
            if not run.created:
                if run.start_inflight:  # start_run was cut off: starting the same id again is idempotent
                    result = await call(
                        client, "start_run", {"spec_path": run.spec_path, "run_id": run.run_id}, pid=pid
                    )
                    run.view = structured(result)
                    run.created, run.start_inflight = True, False
                continue
            if run.settled and not everything:
                continue
            await self.recover_run(client, pid, run)
            if run.ended:
                run.settled = True

    async def recover_run(self, client: Client, pid: int, run: RunLedger) -> None:
        try:
            events = await read_trace(client, run.run_id, pid=pid)
        except ServerGone:
            raise
        except Exception as exc:
            for task_id in run.acked or {"start_run": None}:
                self.lost(run.run_id, task_id)
            self.problem(f"{run.run_id}: acknowledged run unreadable after a crash: {exc!r}")
            run.ended = run.settled = True
            return
        report = check_trace(run.run_id, events)
        for task_id, extra in report.doubled_tasks.items():
            self.doubled(run.run_id, task_id, extra)
        for text in report.problems + half_applied(run.run_id, events):
            self.problem(text)
        for task_id, output in run.acked.items():
            found = submissions(events, task_id)
            if output not in found:
                self.lost(run.run_id, task_id)
                self.problem(f"{run.run_id}: acknowledged {task_id} lost (recorded: {found})")
        if run.inflight is not None:
            await self.resubmit(client, pid, run, events)
        else:
            run.view = structured(await call(client, "get_run", {"run_id": run.run_id}, pid=pid))
        view = run.view
        assert view is not None
        if view["status"] == "running" and not view["tasks"]:
            # a command whose runner died: resume runs it (its claim is taken over)
            view = run.view = structured(await call(client, "resume", {"run_id": run.run_id}, pid=pid))
            lease = open_lease(await read_trace(client, run.run_id, pid=pid))
            if view["status"] == "running" and not view["tasks"] and lease is not None:
                # The dead runner's pid is in use again (pids wrap around), so the claim looks alive: it
                # is taken over when its lease ends. Rare; wait for it rather than call the run stuck.
                self.tally.lease_waits += 1
                await anyio.sleep(max(0.0, (lease - datetime.now(UTC)).total_seconds()) + 0.5)
                view = run.view = structured(await call(client, "resume", {"run_id": run.run_id}, pid=pid))
            if view["status"] == "running" and not view["tasks"]:
                self.problem(f"{run.run_id}: cannot be continued after a crash: {view['next_action']}")
        if view["status"] != "running":
            run.ended = True
            if view["status"] != "completed":
                self.problem(f"{run.run_id} ended {view['status']}: {view.get('error')}")
        if self.sc.spec == "command":
            await self.check_commands(client, pid, run)

    async def resubmit(self, client: Client, pid: int, run: RunLedger, events: list[dict[str, Any]]) -> None:
        """The step in flight at the crash: present at most once; sending it again is idempotent."""
        assert run.inflight is not None
        task_id, output = run.inflight
        before = submissions(events, task_id)
        if before not in ([], [output]):
            self.problem(f"{run.run_id}: {task_id} recorded {before}, but the client sent {output}")
        args = {"run_id": run.run_id, "task_id": task_id, "output": output}
        first = await call(client, "step", args, pid=pid)
        if first.is_error:
            self.problem(
                f"{run.run_id}: resubmitting {task_id} (recorded before: {bool(before)}) after the crash "
                f"was refused: {text_of(first)}"
            )
            run.inflight = None
            run.view = structured(await call(client, "get_run", {"run_id": run.run_id}, pid=pid))
            return
        answer = structured(first)
        after = await read_trace(client, run.run_id, pid=pid)
        if len(submissions(after, task_id)) != 1:
            self.doubled(run.run_id, task_id, len(submissions(after, task_id)) - 1)
            self.problem(f"{run.run_id}: {task_id} recorded {len(submissions(after, task_id))} times")
        if before:
            self.tally.inflight_recorded += 1
            if self.sc.spec == "agent" and after != events:
                self.problem(f"{run.run_id}: resending the recorded {task_id} changed the trace")
        else:
            self.tally.inflight_absent += 1
        again = structured(await call(client, "step", args, pid=pid))
        if again != answer:
            self.problem(f"{run.run_id}: resending {task_id} answered differently:\n{answer}\n{again}")
        if await read_trace(client, run.run_id, pid=pid) != after:
            self.problem(f"{run.run_id}: resending {task_id} a second time changed the trace")
        run.acked[task_id] = output
        run.inflight = None
        run.view = again

    async def check_commands(self, client: Client, pid: int, run: RunLedger) -> None:
        events = await read_trace(client, run.run_id, pid=pid)
        for kind, name in (("step", "count"), ("gate", "gate")):
            claims, results = command_counts(events, kind)
            executions = lines_in(self.root / f"{name}-{run.run_id}.txt")
            if not results <= executions <= claims:
                self.problem(
                    f"{run.run_id}: {kind} commands ran {executions} times for {results} recorded results "
                    f"and {claims} claims"
                )

    async def finish_all(self, client: Client, pid: int) -> None:
        """After the last kill: verify everything once more and drive every run to its end."""
        await self.recover(client, pid, everything=True)
        for run in self.runs:
            run.target = 0
            if not run.ended:
                assert run.created
                for _ in range(200):
                    if await self.step_once(client, pid, run):
                        break
                else:
                    self.problem(f"{run.run_id} did not end")
        for run in self.runs:
            view = structured(await call(client, "get_run", {"run_id": run.run_id}, pid=pid))
            if view["status"] != "completed":
                self.problem(f"{run.run_id} is {view['status']} at the end, not completed")
            await self.recover_run(client, pid, run)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def run_lane(scenario: Scenario, root: Path, totals: dict[str, Tally]) -> None:
    """All of one scenario's kills, then the final session and a last `loopengt check`."""
    tally = totals[scenario.name] = Tally()
    lane = Lane(scenario, root, random.Random(f"{SEED}-{scenario.name}"), tally)
    kills = max(1, round(scenario.kills * SCALE))
    started = time.monotonic()
    while tally.kills < kills and len(tally.problems) < 20:
        await lane.session()
    if len(tally.problems) < 20:
        await lane.session(final=True)
        code, out = await finish_check(start_check(lane.store))
        if code != 0:
            tally.check_failures += 1
            lane.problem(f"the final loopengt check exited {code}: {out[-2000:]}")
    tally.seconds = time.monotonic() - started


@pytest.mark.timeout(900)
async def test_crash_suite(tmp_path: Path) -> None:
    """Every scenario at once (each its own store; server start-up is CPU-bound, so lanes overlap well)."""
    print(f"\ncrash suite seed: {SEED} (replay with LOOPENGT_DURABILITY_SEED={SEED})")
    totals: dict[str, Tally] = {}
    started = time.monotonic()
    async with anyio.create_task_group() as lanes:
        for scenario in SCENARIOS:
            root = tmp_path / scenario.name
            root.mkdir()
            lanes.start_soon(run_lane, scenario, root, totals)
    total = Tally()
    for scenario in SCENARIOS:
        tally = totals[scenario.name]
        print(
            f"[{scenario.name}] {tally.kills} kills {dict(tally.kinds)}, {tally.runs} runs, "
            f"{tally.acknowledged} acknowledged steps, steps in flight at a kill found recorded "
            f"{tally.inflight_recorded} / absent {tally.inflight_absent}, lost {tally.lost}, "
            f"doubled {tally.doubled}, check failures {tally.check_failures}, waits for a lease "
            f"{tally.lease_waits}, {tally.seconds:.0f} s"
        )
        for name in ("kills", "lost", "doubled", "check_failures", "acknowledged", "runs"):
            setattr(total, name, getattr(total, name) + getattr(tally, name))
        total.problems += tally.problems
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"{total.acknowledged} acknowledged steps in {total.runs} runs, {time.monotonic() - started:.0f} s "
        f"(CPU: this process {me.ru_utime + me.ru_stime:.0f} s, servers, checks and commands "
        f"{children.ru_utime + children.ru_stime:.0f} s)"
    )
    print(
        f"kills: {total.kills}, acknowledged steps lost: {total.lost}, doubled: {total.doubled}, "
        f"check failures: {total.check_failures}"
    )
    assert not total.problems, "\n".join(total.problems)
    assert total.lost == 0
    assert total.doubled == 0
    assert total.check_failures == 0
    assert total.kills >= 200 * min(1.0, SCALE)
