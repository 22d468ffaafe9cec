"""OpenTelemetry spans of runs, checked with the SDK's in-memory exporter on real runs over a file store.

A run is one trace: the run span is the root, each agent task a child of it, each gate and command a child
of its task (a command step's span hangs off the run). Ids come from the run, so two processes (here two
`Runs` over one store directory) add to one coherent trace. Times are the events' `at`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from clock import Clock
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp_helpers import drive, ok, stdio_params
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

from loopengt_core.model.events import Event, event_data, parse_iso
from loopengt_core.service import telemetry
from loopengt_core.service.async_submit import quick
from loopengt_core.service.runs import Runs
from loopengt_core.service.telemetry import RunTracer, span_id, trace_id
from loopengt_core.store.files import FileStore

READY = "ready.txt"
SPEC: dict[str, Any] = {
    "name": "traced",
    "goal": "implement, build, review",
    "pattern": "sequential",
    "workspace": "none",
    "agents": [{"name": "coder"}, {"name": "reviewer"}],
    "steps": [
        {"name": "implement", "agent": "coder", "verification_gates": ["has_summary", "tests_pass"]},
        {"name": "build", "run": [sys.executable, "-c", "print('built')"]},
        {"name": "review", "agent": "reviewer", "verification_gates": ["signoff"]},
    ],
    "policy": {
        "retry": {"max_retries": 2, "backoff": "fixed", "initial_delay_seconds": 0},
        "verification_gates": [
            {"name": "has_summary", "condition": "length(output.summary) > `0`"},
            {
                "name": "tests_pass",
                "command": [
                    sys.executable,
                    "-c",
                    f"import os, sys; sys.exit(0 if os.path.exists({READY!r}) else 1)",
                ],
            },
            {"name": "signoff", "approval": True, "prompt": "Ship it?"},
        ],
    },
}


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC))


def traced(store: Path, clock: Clock, cwd: Path) -> tuple[Runs, InMemorySpanExporter]:
    """A `Runs` (one process) whose spans go to its own in-memory exporter."""
    exporter = InMemorySpanExporter()
    tracer = RunTracer([SimpleSpanProcessor(exporter)])
    return Runs(FileStore(store), clock=clock, cwd=cwd, allow_inline_commands=True, tracer=tracer), exporter


def ns(at: str) -> int:
    return (parse_iso(at) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1) * 1_000_000


def first(events: Sequence[Event], kind: str, **data: Any) -> Event:
    return next(
        e for e in events if e.type == kind and all(event_data(e).get(k) == v for k, v in data.items())
    )


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def attr(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(name)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def full_run(parts: Sequence[Runs], clock: Clock, cwd: Path) -> str:
    """implement fails its command gate once then passes; build runs; review waits for approval.

    Each action is taken by the next `Runs` of `parts` in turn (one, or several "processes").
    """
    turn = iter(parts * 5)
    run_id = next(turn).start_run(spec=SPEC).run_id
    clock.advance(5)
    first_try = next(turn).step(run_id, "implement#1", {"summary": "first try"})
    assert [t.task_id for t in first_try.tasks] == ["implement#2"]
    (cwd / READY).write_text("ok")
    clock.advance(7)
    assert [t.task_id for t in next(turn).step(run_id, "implement#2", {"summary": "fixed"}).tasks] == [
        "review#1"
    ]
    clock.advance(3)
    assert next(turn).step(run_id, "review#1", {"summary": "looks right"}).status == "waiting_approval"
    clock.advance(11)
    assert next(turn).approve(run_id, comment="ship", by="alice").status == "completed"
    return run_id


def check_trace(run_id: str, spans: Sequence[ReadableSpan], events: Sequence[Event]) -> None:
    """Names, ids, parents, attributes and times of a `full_run`'s spans, against its events."""
    names = {name: len(found) for name, found in by_name(spans).items()}
    assert names == {
        "loopengt.run traced": 1,
        "invoke_agent coder": 2,
        "invoke_agent reviewer": 1,
        "loopengt.gate has_summary": 2,
        "loopengt.gate tests_pass": 2,
        "loopengt.gate signoff": 1,
        "execute_tool tests_pass": 2,
        "execute_tool build": 1,
    }
    assert {s.context.trace_id for s in spans} == {trace_id(run_id)}
    assert len({s.context.span_id for s in spans}) == len(spans)
    run_span_id = span_id("run", run_id)
    for span in spans:
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.start_time <= span.end_time, span.name
        assert attr(span, "loopengt.run_id") == run_id
        assert attr(span, "loopengt.loop") == "traced"

    [run] = by_name(spans)["loopengt.run traced"]
    assert run.parent is None
    assert run.context.span_id == run_span_id
    assert (run.start_time, run.end_time) == (
        ns(first(events, "run_started").at),
        ns(first(events, "run_completed").at),
    )
    assert attr(run, "loopengt.outcome") == "completed"
    assert attr(run, "gen_ai.operation.name") == "invoke_workflow"

    tasks = {attr(s, "loopengt.task_id"): s for s in spans if s.name.startswith("invoke_agent")}
    expected = {
        "implement#1": ("coder", "implement", 1, "rejected", "gate_failed"),
        "implement#2": ("coder", "implement", 2, "accepted", "step_completed"),
        "review#1": ("reviewer", "review", 1, "accepted", "step_completed"),
    }
    assert set(tasks) == set(expected)
    for task_id, (agent, step, attempt, outcome, closing) in expected.items():
        span = tasks[task_id]
        assert span.context.span_id == span_id("task", run_id, task_id)
        assert parent_of(span) == run_span_id
        assert attr(span, "gen_ai.operation.name") == "invoke_agent"
        assert attr(span, "gen_ai.agent.name") == agent
        assert attr(span, "gen_ai.conversation.id") == run_id
        assert (attr(span, "loopengt.step"), attr(span, "loopengt.attempt")) == (step, attempt)
        assert attr(span, "loopengt.outcome") == outcome
        assert span.start_time == ns(first(events, "task_issued", task_id=task_id).at)
        assert span.end_time == ns(first(events, closing, task_id=task_id).at)
        assert span.status.status_code == (StatusCode.ERROR if outcome == "rejected" else StatusCode.UNSET)

    for span in spans:
        if span.name.startswith("loopengt.gate"):
            task_id = attr(span, "loopengt.task_id")
            assert parent_of(span) == span_id("task", run_id, task_id), span.name
            assert attr(span, "loopengt.attempt") == expected[task_id][2]
    gates = {(attr(s, "loopengt.task_id"), attr(s, "loopengt.gate")): s for s in spans if "gate" in s.name}
    failed = gates[("implement#1", "tests_pass")]
    assert attr(failed, "loopengt.gate.passed") is False
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.start_time == ns(first(events, "command_requested", command_id="implement#1:tests_pass").at)
    assert failed.end_time == ns(first(events, "gate_failed", task_id="implement#1").at)
    assert attr(gates[("implement#2", "tests_pass")], "loopengt.gate.passed") is True
    signoff = gates[("review#1", "signoff")]
    assert (attr(signoff, "loopengt.outcome"), attr(signoff, "loopengt.approval.by")) == ("approved", "alice")
    assert attr(signoff, "loopengt.approval.via") == "cli"  # Runs.approve's default channel
    assert signoff.start_time == ns(first(events, "approval_requested").at)
    assert signoff.end_time == ns(first(events, "approval_given").at)
    assert signoff.end_time - signoff.start_time == 11 * 10**9

    commands = {attr(s, "gen_ai.tool.call.id"): s for s in spans if s.name.startswith("execute_tool")}
    assert set(commands) == {"implement#1:tests_pass", "implement#2:tests_pass", "build#1"}
    for command_id, span in commands.items():
        assert attr(span, "gen_ai.operation.name") == "execute_tool"
        assert span.start_time == ns(first(events, "command_started", command_id=command_id).at)
        assert span.end_time == ns(first(events, "command_finished", command_id=command_id).at)
    gate_command = commands["implement#1:tests_pass"]
    assert parent_of(gate_command) == span_id("task", run_id, "implement#1")
    assert (attr(gate_command, "gen_ai.tool.name"), attr(gate_command, "loopengt.command.exit_code")) == (
        "tests_pass",
        1,
    )
    assert gate_command.status.status_code == StatusCode.ERROR
    build = commands["build#1"]
    assert parent_of(build) == run_span_id  # a command step belongs to no agent task
    assert (attr(build, "gen_ai.tool.name"), attr(build, "loopengt.outcome")) == ("build", "succeeded")
    assert attr(build, "loopengt.command.exit_code") == 0


def test_a_full_run_is_one_trace_with_the_expected_spans(tmp_path: Path, clock: Clock) -> None:
    runs, exporter = traced(tmp_path / "store", clock, tmp_path)
    run_id = full_run([runs], clock, tmp_path)
    check_trace(run_id, exporter.get_finished_spans(), runs.trace(run_id))


def test_two_processes_add_to_one_coherent_trace(tmp_path: Path, clock: Clock) -> None:
    one, first_spans = traced(tmp_path / "store", clock, tmp_path)
    two, second_spans = traced(tmp_path / "store", clock, tmp_path)
    run_id = full_run([one, two], clock, tmp_path)
    made_by_one, made_by_two = first_spans.get_finished_spans(), second_spans.get_finished_spans()
    assert made_by_one
    assert made_by_two
    check_trace(run_id, [*made_by_one, *made_by_two], one.trace(run_id))
    # the second process closed implement#1, issued by the first: it read the issue time from the log
    assert "invoke_agent coder" in {s.name for s in made_by_two}


def test_cancel_abandons_open_work_and_a_fork_links_its_parent(tmp_path: Path, clock: Clock) -> None:
    runs, exporter = traced(tmp_path / "store", clock, tmp_path)
    run_id = runs.start_run(spec=SPEC).run_id
    runs.checkpoint(run_id, "start")
    clock.advance(2)
    runs.cancel_run(run_id, "changed my mind")
    spans = by_name(exporter.get_finished_spans())
    [task] = spans["invoke_agent coder"]
    assert (attr(task, "loopengt.outcome"), task.status.status_code) == ("abandoned", StatusCode.UNSET)
    [run] = spans["loopengt.run traced"]
    assert attr(run, "loopengt.outcome") == "cancelled"

    fork_id = runs.resume(run_id, "cp-1").run_id
    exporter.clear()
    runs.cancel_run(fork_id)
    spans = by_name(exporter.get_finished_spans())
    [fork] = spans["loopengt.run traced"]
    assert fork.context.trace_id == trace_id(fork_id)
    assert attr(fork, "loopengt.parent_run_id") == run_id
    assert [link.context.span_id for link in fork.links] == [span_id("run", run_id)]
    [task] = spans["invoke_agent coder"]  # the open task the fork began with
    assert parent_of(task) == span_id("run", fork_id)


class Broken(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("collector is down")

    def shutdown(self) -> None:
        pass


def test_a_failing_exporter_or_tracer_never_breaks_a_step(tmp_path: Path, clock: Clock) -> None:
    tracer = RunTracer([SimpleSpanProcessor(Broken())])
    runs = Runs(
        FileStore(tmp_path / "a"), clock=clock, cwd=tmp_path, allow_inline_commands=True, tracer=tracer
    )
    view = runs.start_run(spec={**SPEC, "steps": SPEC["steps"][2:]})
    assert runs.step(view.run_id, "review#1", {"summary": "x"}).status == "waiting_approval"
    assert runs.approve(view.run_id).status == "completed"

    def explode(*args: Any, **kwargs: Any) -> None:
        raise ValueError("bad span")

    broken = RunTracer([SimpleSpanProcessor(InMemorySpanExporter())])
    broken.span = explode  # type: ignore[method-assign]
    runs = Runs(
        FileStore(tmp_path / "b"), clock=clock, cwd=tmp_path, allow_inline_commands=True, tracer=broken
    )
    view = runs.start_run(spec={**SPEC, "steps": SPEC["steps"][2:]})
    with capture_logs() as logs:
        assert runs.step(view.run_id, "review#1", {"summary": "x"}).status == "waiting_approval"
        assert runs.approve(view.run_id).status == "completed"
    assert any(e["event"] == "tracing_failed" and "bad span" in e["error"] for e in logs)


# --- configuration --------------------------------------------------------------------------------


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_otel_env")
def test_tracing_is_off_without_otel_variables(tmp_path: Path) -> None:
    assert telemetry.from_env() is None
    assert Runs(FileStore(tmp_path / "store"), cwd=tmp_path).tracer is None
    assert telemetry.configure({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert telemetry.configure({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}) is None
    assert telemetry.exporter_names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == ["otlp"]
    assert telemetry.exporter_names({"OTEL_TRACES_EXPORTER": "otlp,console"}) == ["otlp", "console"]
    # not even imported: tracing costs nothing when it is off
    code = (
        "import sys; from loopengt_core.service.runs import Runs; from loopengt_core.store.files import FileStore; "
        f"Runs(FileStore({str(tmp_path / 'other')!r})); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"


def test_the_console_exporter_writes_to_stderr_never_stdout(
    tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    tracer = telemetry.configure({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(tracer, RunTracer)
    runs = Runs(
        FileStore(tmp_path / "store"), clock=clock, cwd=tmp_path, allow_inline_commands=True, tracer=tracer
    )
    runs.cancel_run(runs.start_run(spec=SPEC).run_id)
    tracer.shutdown()  # flushes the batch
    out, err = capsys.readouterr()
    assert "loopengt.run" not in out  # (stdout may hold structlog's unconfigured info lines in tests)
    assert {s["name"] for s in json_objects(err)} == {"loopengt.run traced", "invoke_agent coder"}


def test_without_the_sdk_or_exporter_tracing_is_off_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with capture_logs() as logs:
        assert telemetry.configure({"OTEL_TRACES_EXPORTER": "otlp"}) is None
    assert "pip install 'loopengt[otel]'" in logs[0]["reason"]
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace.export", None)
    with capture_logs() as logs:
        assert telemetry.configure({"OTEL_TRACES_EXPORTER": "console"}) is None
    assert "opentelemetry-sdk is not installed" in logs[0]["reason"]


@pytest.mark.usefixtures("no_otel_env")
def test_otlp_exports_over_http_to_the_endpoint_in_the_variables(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)  # the exporter reads its own variables
        tracer = telemetry.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        assert isinstance(tracer, RunTracer)
        runs = Runs(
            FileStore(tmp_path / "s"), clock=clock, cwd=tmp_path, allow_inline_commands=True, tracer=tracer
        )
        run_id = runs.start_run(spec=SPEC).run_id
        runs.cancel_run(run_id)
        tracer.shutdown()
    finally:
        server.shutdown()
    request = ExportTraceServiceRequest()
    for path, body in bodies:
        assert path == "/v1/traces"
        request.MergeFromString(body)
    spans = [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert {span.name for span in spans} == {"loopengt.run traced", "invoke_agent coder"}
    assert {int.from_bytes(span.trace_id, "big") for span in spans} == {trace_id(run_id)}


# --- through the real MCP server ------------------------------------------------------------------


@pytest.mark.anyio
async def test_server_writes_console_spans_to_stderr_and_keeps_stdout_clean(tmp_path: Path) -> None:
    faults: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):  # a line on stdout that is not JSON-RPC
            faults.append(message)

    env = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "loopengt-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "20",
    }
    params = stdio_params(tmp_path / "store", tmp_path, env=env)
    spec = {
        "name": "served",
        "goal": "g",
        "agents": [{"name": "a"}],
        "steps": [{"name": "one", "agent": "a"}],
    }
    with (tmp_path / "stderr.txt").open("w") as errlog:
        async with Client(
            stdio_client(params, errlog=errlog), mode="legacy", message_handler=on_message
        ) as client:
            view = await drive(client, ok(await client.call_tool("start_run", {"spec": spec})))
            assert view["status"] == "completed"
            ok(await client.call_tool("list_runs", {}))  # spans exported meanwhile would show up here
    assert faults == []
    spans = json_objects((tmp_path / "stderr.txt").read_text())
    assert {s["name"] for s in spans} == {"loopengt.run served", "invoke_agent a"}
    assert {int(s["context"]["trace_id"], 16) for s in spans} == {trace_id(view["run_id"])}
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"loopengt-e2e"}


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects in a stream of console-exported spans (and perhaps log lines)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) >= 0:
        try:
            value, at = decoder.raw_decode(text, at)
            found.append(value)
        except ValueError:
            at += 1
    return found


def test_a_bad_otel_variable_turns_tracing_off_instead_of_stopping_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "0")  # the SDK refuses it with a ValueError
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    assert runs.tracer is None
    assert runs.start_run(
        spec={"name": "t", "agents": [{"name": "a"}], "steps": [{"name": "s", "agent": "a"}]}
    )


def test_a_ratio_sampler_keeps_or_drops_whole_runs(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OTEL_TRACES_SAMPLER=parentbased_traceidratio, a run's task spans follow its run span."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    exporter = InMemorySpanExporter()
    tracer = RunTracer([SimpleSpanProcessor(exporter)])
    runs = Runs(FileStore(tmp_path / "store"), clock=clock, cwd=tmp_path, tracer=tracer)
    spec = {"name": "s", "agents": [{"name": "a"}], "steps": [{"name": "one", "agent": "a"}]}
    for _ in range(16):
        run_id = runs.start_run(spec=spec).run_id
        runs.step(run_id, "one#1", "done")
    traces: dict[int, list[str]] = {}
    for span in exporter.get_finished_spans():
        assert span.context is not None
        traces.setdefault(span.context.trace_id, []).append(span.name)
    assert 0 < len(traces) < 16  # some runs sampled, some not (16 ids, ratio 0.5)
    assert all(sorted(names) == ["invoke_agent a", "loopengt.run s"] for names in traces.values())


def test_a_run_this_process_does_not_follow_yet_is_not_stepped_on_the_event_loop(
    tmp_path: Path, clock: Clock
) -> None:
    """The first traced step of a run reads its earlier events: that belongs on a worker thread."""
    writer, _ = traced(tmp_path / "store", clock, tmp_path)
    run_id = writer.start_run(spec=SPEC).run_id
    reader, _ = traced(tmp_path / "store", clock, tmp_path)
    reader.get_run(run_id)  # loaded here, but nothing appended here yet
    assert not quick(reader, run_id)
    assert quick(writer, run_id)
