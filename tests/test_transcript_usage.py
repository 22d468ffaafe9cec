"""Usage from client transcripts (issue 16): the stop and session hooks read the session's transcript
(`transcript_path` of Claude Code's and Codex's payloads) and record its usage on the run as
`usage_read` events, attributed to the task each `step` call submitted. No line is counted twice (a
second hook over the same transcript, a restart), and what the agent reports with `step(usage=...)` wins.

The hooks run as the console script an editor starts, on transcripts written the way each client writes
them; the run is driven in this process on the same file store.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hook_helpers import git_project, hook_script, loopengt, payload, project_runs
from replay import assert_fold_equals_log

from loopengt_core.model.events import UsageRead
from loopengt_core.service.runs import Runs
from loopengt_core.store import Store
from loopengt_core.store.files import FileStore

SPEC = {
    "name": "metered",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [{"name": f"s{n}", "agent": "a"} for n in range(1, 5)],
}


def claude_message(message_id: str, usage: dict[str, int], *, step: tuple[str, str] | None = None) -> str:
    """Claude Code's lines of one assistant message: a text block, then a tool call when `step` is given
    (run_id, task_id); each line repeats the message's usage."""
    base = {"type": "assistant", "sessionId": "s", "requestId": f"req_{message_id}"}
    lines = [{**base, "message": _claude(message_id, usage, [{"type": "text", "text": "Working on it."}])}]
    if step is not None:
        call = {
            "type": "tool_use",
            "id": f"toolu_{message_id}",
            "name": "mcp__loopengt__step",
            "input": {"run_id": step[0], "task_id": step[1], "output": {"done": True}},
        }
        lines.append({**base, "message": _claude(message_id, usage, [call])})
    return "".join(json.dumps(line) + "\n" for line in lines)


def _claude(message_id: str, usage: dict[str, int], content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "usage": usage,
    }


def user_line(text: str) -> str:
    return json.dumps({"type": "user", "message": {"role": "user", "content": text}}) + "\n"


def u(inp: int, out: int, write: int = 0, read: int = 0) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
    }


def start(project: Path) -> tuple[Runs, str]:
    runs = next(project_runs(project))
    return runs, runs.start_run(spec=SPEC).run_id


def hook(kind: str, fixture: str, project: Path, transcript: Path) -> subprocess.CompletedProcess[str]:
    return hook_script(kind, payload(fixture, project, transcript_path=str(transcript)), project)


def usage_events(runs: Runs, run_id: str) -> list[UsageRead]:
    return [e for e in runs.store.events(run_id) if isinstance(e, UsageRead)]


def test_claude_code_usage_is_attributed_per_step_call_and_never_counted_twice(tmp_path: Path) -> None:
    project = git_project(tmp_path)
    runs, run_id = start(project)
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(
        user_line("Drive the loopengt run.")
        + claude_message("msg_1", u(100, 50, write=10, read=1000))
        + claude_message("msg_2", u(200, 80), step=(run_id, "s1#1")),
        encoding="utf-8",
    )
    runs.step(run_id, "s1#1", {"done": True})  # the call in the transcript; it reported no usage
    assert "usage not read" not in hook("stop", "claude-code/stop.json", project, transcript).stderr

    (first,) = usage_events(runs, run_id)
    assert (first.task_id, first.step, first.client) == ("s1#1", "s1", "claude-code")
    assert first.message_ids == ["msg_1", "msg_2"]  # msg_2's two lines counted once
    assert (first.from_offset, first.to_offset) == (0, transcript.stat().st_size)
    assert first.usage.input_tokens == 300
    assert first.usage.output_tokens == 130
    assert first.usage.cache_write_tokens == 10
    assert first.usage.cache_read_tokens == 1000
    assert first.usage.cost_usd is None  # the transcript says no cost: unknown, not 0
    assert first.usage.model == "claude-sonnet-4-5-20250929"
    view = runs.get_run(run_id)
    assert view.spend.tokens == 1440
    assert view.spend.unknown == 0
    assert {s.name: s.spend.tokens for s in view.steps}["s1"] == 1440

    hook("stop", "claude-code/stop_active.json", project, transcript)  # the same lines again: nothing
    hook("session", "claude-code/session_compact.json", project, transcript)
    assert len(usage_events(runs, run_id)) == 1

    # more work: the lines after the last step call belong to the one open task, s2#1
    with transcript.open("a", encoding="utf-8") as out:
        out.write(claude_message("msg_3", u(10, 5)))
    hook("session", "claude-code/session_compact.json", project, transcript)  # the session hook reads too
    second = usage_events(runs, run_id)[-1]
    assert (second.task_id, second.from_offset) == ("s2#1", first.to_offset)
    assert runs.get_run(run_id).spend.tokens == 1455
    assert runs.get_run(run_id).spend.reported == 1  # s2#1 is counted as a known task once submitted
    runs.step(run_id, "s2#1", {})
    assert runs.get_run(run_id).spend.reported == 2
    assert_fold_equals_log(runs, run_id)


def test_usage_the_agent_reports_wins_over_the_transcripts(tmp_path: Path) -> None:
    project = git_project(tmp_path)
    runs, run_id = start(project)
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(claude_message("msg_1", u(1000, 1000)), encoding="utf-8")
    hook("stop", "claude-code/stop.json", project, transcript)  # read while s1#1 is open: counted for now
    assert runs.get_run(run_id).spend.tokens == 2000
    # s1#1 submitted with its own usage: that replaces the transcript's
    answer = runs.step(run_id, "s1#1", {}, usage={"input_tokens": 300, "output_tokens": 200})
    assert answer.spend.tokens == 500
    assert answer.spend.reported == 1
    # s2#1 reported first; the transcript's lines for it later are recorded but not counted
    runs.step(run_id, "s2#1", {}, usage={"input_tokens": 10, "output_tokens": 10})
    with transcript.open("a", encoding="utf-8") as out:
        out.write(claude_message("msg_2", u(7000, 7000), step=(run_id, "s2#1")))
    hook("stop", "claude-code/stop.json", project, transcript)
    assert [e.task_id for e in usage_events(runs, run_id)] == ["s1#1", "s2#1"]
    view = runs.get_run(run_id)
    assert view.spend.tokens == 520
    assert {s.name: s.spend.tokens for s in view.steps} == {"s1": 500, "s2": 20, "s3": 0, "s4": 0}
    assert view.spend.reported == 2
    assert_fold_equals_log(runs, run_id)


def test_a_step_call_of_another_run_or_task_closes_nothing(tmp_path: Path) -> None:
    project = git_project(tmp_path)
    runs, run_id = start(project)
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(
        claude_message("msg_1", u(40, 2), step=("other-run", "s1#1"))
        + claude_message("msg_2", u(60, 3), step=(run_id, "s9#1")),
        encoding="utf-8",
    )
    hook("stop", "claude-code/stop.json", project, transcript)
    (read,) = usage_events(runs, run_id)
    assert read.task_id == "s1#1"  # the open task: no call of this run closed the lines
    assert read.usage.input_tokens == 100


def test_with_two_open_tasks_the_lines_after_the_last_call_wait_for_a_call(tmp_path: Path) -> None:
    project = git_project(tmp_path)
    body = {**SPEC, "pattern": "parallel_fan_out", "policy": {"allow_parallel": True}}
    body["steps"] = [{"name": "a1", "agent": "a"}, {"name": "a2", "agent": "a"}]
    runs = next(project_runs(project))
    run_id = runs.start_run(spec=body).run_id
    assert len(runs.get_run(run_id).tasks) == 2
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(claude_message("msg_1", u(5, 5)), encoding="utf-8")
    hook("stop", "claude-code/stop.json", project, transcript)
    assert usage_events(runs, run_id) == []  # whose it is is not known yet: unread, still unknown
    runs.step(run_id, "a2#1", {})
    with transcript.open("a", encoding="utf-8") as out:
        out.write(claude_message("msg_2", u(1, 1), step=(run_id, "a2#1")))
    hook("stop", "claude-code/stop.json", project, transcript)
    (read,) = usage_events(runs, run_id)
    assert (read.task_id, read.from_offset, read.usage.input_tokens) == ("a2#1", 0, 6)


def codex_rollout(run_id: str) -> str:
    """A Codex rollout: session meta, the turn's model, a function call of step, token counts after each
    response (one repeated with the same totals), as Codex writes them."""
    lines: list[dict[str, Any]] = [
        {"type": "session_meta", "payload": {"id": "019d036d", "cwd": "/home/dev/project"}},
        {"type": "turn_context", "payload": {"cwd": "/home/dev/project", "model": "gpt-5-codex"}},
        {"type": "response_item", "payload": {"type": "message", "role": "user", "content": []}},
        _token_count(last=(1200, 1000, 300), total=(1200, 1000, 300)),
        {
            "type": "response_item",
            "payload": {
                "type": "function_call",
                "name": "mcp__loopengt__step",
                "arguments": json.dumps({"run_id": run_id, "task_id": "s1#1", "output": {}}),
                "call_id": "call_1",
            },
        },
        _token_count(last=(1500, 1200, 100), total=(2700, 2200, 400)),
        _token_count(last=(1500, 1200, 100), total=(2700, 2200, 400)),  # repeated with rate limits
        {"type": "response_item", "payload": {"type": "function_call_output", "call_id": "call_1"}},
        _token_count(last=(100, 0, 20), total=(2800, 2200, 420)),
    ]
    return "".join(json.dumps({"timestamp": "2026-12-06T10:30:00.000Z", **line}) + "\n" for line in lines)


def _token_count(last: tuple[int, int, int], total: tuple[int, int, int]) -> dict[str, Any]:
    def usage(values: tuple[int, int, int]) -> dict[str, int]:
        given, cached, out = values
        return {
            "input_tokens": given,
            "cached_input_tokens": cached,
            "output_tokens": out,
            "reasoning_output_tokens": 0,
            "total_tokens": given + out,
        }

    info = {"last_token_usage": usage(last), "total_token_usage": usage(total), "model_context_window": 1}
    return {"type": "event_msg", "payload": {"type": "token_count", "info": info, "rate_limits": {}}}


@pytest.mark.parametrize("restart", [False, True], ids=["one-service", "restart"])
def test_codex_rollout_usage_counts_each_response_once(tmp_path: Path, restart: bool) -> None:
    project = git_project(tmp_path)
    runs, run_id = start(project)
    transcript = tmp_path / "rollout.jsonl"
    transcript.write_text(codex_rollout(run_id), encoding="utf-8")
    runs.step(run_id, "s1#1", {})
    hook("stop", "codex/stop.json", project, transcript)
    if restart:
        runs = Runs(FileStore(project / ".loopengt"), cwd=project)
    hook("stop", "codex/stop_active.json", project, transcript)
    first, second = usage_events(runs, run_id)
    # s1#1: the responses up to its call and the one that made it (its token count follows the call)
    assert first.task_id == "s1#1"
    assert first.usage.input_tokens == (1200 - 1000) + (1500 - 1200)  # cached input split out
    assert first.usage.cache_read_tokens == 2200
    assert first.usage.output_tokens == 400
    assert first.usage.model == "gpt-5-codex"
    assert len(first.message_ids) == 2  # the repeated token count is one response
    assert second.task_id == "s2#1"  # after the last call: the open task
    assert (second.usage.input_tokens, second.usage.output_tokens) == (100, 20)
    assert runs.get_run(run_id).spend.tokens == 2800 + 420
    assert_fold_equals_log(runs, run_id)


def test_transcript_usage_counts_against_an_enforced_budget(tmp_path: Path) -> None:
    project = git_project(tmp_path)
    runs = next(project_runs(project))
    run_id = runs.start_run(
        spec={**SPEC, "policy": {"budget": {"mode": "enforce", "max_tokens": 1000}}}
    ).run_id
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(claude_message("msg_1", u(900, 200), step=(run_id, "s1#1")), encoding="utf-8")
    answer = runs.step(run_id, "s1#1", {})
    assert answer.status == "running"  # the transcript was not read yet: unknown usage
    hook("stop", "claude-code/stop.json", project, transcript)
    assert runs.get_run(run_id).spend.tokens == 1100
    paused = runs.step(run_id, "s2#1", {})
    assert paused.paused_for == "budget"
    assert_fold_equals_log(runs, run_id)


def test_a_transcript_that_is_not_there_or_not_json_is_no_block_and_no_usage(tmp_path: Path) -> None:
    project = git_project(tmp_path)
    runs, run_id = start(project)
    done = hook("stop", "claude-code/stop.json", project, tmp_path / "missing.jsonl")
    assert json.loads(done.stdout)["decision"] == "block"  # the hook still answers
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"not json\n\x00\xff\n[1, 2]\n")
    assert json.loads(hook("stop", "claude-code/stop.json", project, garbage).stdout)["decision"] == "block"
    assert usage_events(runs, run_id) == []
    assert runs.get_run(run_id).spend.unknown == 0


def test_show_trace_and_eval_carry_transcript_usage_per_step(tmp_path: Path) -> None:
    project = git_project(tmp_path)
    runs, run_id = start(project)
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(claude_message("msg_1", u(1000, 234)), encoding="utf-8")
    hook("stop", "claude-code/stop.json", project, transcript)  # s1#1 is open: its usage
    runs.step(run_id, "s1#1", {"long": "x" * 5000})  # an output far past the trace line's cut

    def cli(*args: str) -> str:
        return loopengt(*args, project=project).stdout

    shown = cli("show", run_id, "--trace")
    assert "step s1: completed (1 attempt, 1,234 tokens, cost unknown)" in shown
    read_line = next(line for line in shown.splitlines() if " usage_read " in line)
    assert read_line.endswith("[1,234 tokens, cost unknown, model claude-sonnet-4-5-20250929]")
    submitted = next(line for line in shown.splitlines() if " output_submitted " in line)
    assert "[" not in submitted[-30:]  # it reported no usage: nothing added to its line
    metrics = json.loads(cli("eval", run_id, "--json"))
    assert metrics["spend"]["tokens"] == 1234
    assert metrics["attempts"][0]["spend"]["tokens"] == 1234
    assert "1,234" in cli("eval", run_id)


def test_a_task_span_carries_transcript_usage_read_while_it_was_open(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from loopengt_core.service.telemetry import RunTracer

    project = git_project(tmp_path)
    exporter = InMemorySpanExporter()
    runs = Runs(
        FileStore(project / ".loopengt"), cwd=project, tracer=RunTracer([SimpleSpanProcessor(exporter)])
    )
    run_id = runs.start_run(spec=SPEC).run_id
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(claude_message("msg_1", u(700, 300, read=50)), encoding="utf-8")
    assert len(runs.read_transcript(run_id, transcript, client="claude-code")) == 1
    runs.step(run_id, "s1#1", {})
    span = next(
        s for s in exporter.get_finished_spans() if (s.attributes or {}).get("loopengt.task_id") == "s1#1"
    )
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 700
    assert attributes["gen_ai.usage.output_tokens"] == 300
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 50
    assert "loopengt.usage.cost_usd" not in attributes  # unknown, never 0


def test_each_store_records_a_transcript_once_across_services(
    tmp_path: Path, store_factory: Callable[[], Store]
) -> None:
    first, second = store_factory(), store_factory()  # two services on the same storage
    try:
        runs = Runs(first, cwd=tmp_path)
        run_id = runs.start_run(spec=SPEC).run_id
        transcript = tmp_path / "session.jsonl"
        transcript.write_text(claude_message("msg_1", u(10, 20), step=(run_id, "s1#1")), encoding="utf-8")
        runs.step(run_id, "s1#1", {})
        other = Runs(second, cwd=tmp_path)
        assert len(other.read_transcript(run_id, transcript, client="claude-code")) == 1
        assert runs.read_transcript(run_id, transcript, client="claude-code") == []  # the other read it
        assert runs.get_run(run_id).spend.tokens == 30
        assert other.get_run(run_id) == runs.get_run(run_id)
    finally:
        first.close()
        second.close()
