"""The MCP surface over stdio, through the real `mcp` client, in both protocol eras.

One server subprocess per era serves the whole module (starting one costs ~1.5 s); each test starts its own runs.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp_helpers import (
    SPECS_010,
    Scripted,
    assert_tool_error,
    drive,
    ok,
    project_spec,
    resource_json,
    resource_text,
    stdio_client,
    step,
    text_of,
    trace_events,
    with_specs,
)

from loopengt_server.mcp.tools import tools_list_size

pytestmark = pytest.mark.anyio

TOOLS = {
    "start_run",
    "step",
    "get_run",
    "resume",
    "checkpoint",
    "list_runs",
    "cancel_run",
    "validate_spec",
    "list_templates",
}
READY = "gate-ready.txt"
GATE_LOOP = textwrap.dedent(
    f"""\
    name: gated
    goal: Write the file the gate checks for
    pattern: sequential
    agents:
      - name: coder
    steps:
      - name: implement
        agent: coder
        prompt_template: "Make the check pass. Feedback: {{feedback}}"
        verification_gates: [file_ready]
    policy:
      max_turns: 5
      retry: {{max_retries: 2, backoff: fixed, initial_delay_seconds: 0}}
      verification_gates:
        - name: file_ready
          command:
            - python
            - -c
            - "import os, sys; ok = os.path.exists('{READY}'); print('fine' if ok else 'boom-marker'); sys.exit(0 if ok else 1)"
          on_failure: retry
          timeout_seconds: 30
    """
)


@pytest.fixture(scope="module")
def workdir(era: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = with_specs(tmp_path_factory.mktemp(f"stdio-{era}"))
    (path / "loop.yaml").write_text(GATE_LOOP, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
async def client(era: str, workdir: Path) -> AsyncIterator[Client]:
    async with stdio_client(workdir / "store", workdir, era) as connected:
        expected = "2026-07-28" if era == "auto" else "2025-11-25"
        assert connected.protocol_version == expected
        yield connected


async def test_tools_list_has_the_nine_tools_within_budget(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == TOOLS
    assert len(tools) == 9
    for tool in tools:
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema is not None, tool.name
        assert tool.output_schema["type"] == "object", tool.name
    size = tools_list_size(tools)
    assert size <= 8000, f"tools/list is {size} characters (budget 8,000)"


@pytest.mark.parametrize(
    ("spec", "outputs"),
    [
        ("handoff_pipeline.yaml", {}),
        (
            "supervisor_triage.yaml",
            {"supervise": [{"next_step": "fix_bug"}, {"done": True}], "fix_bug": [{"summary": "fixed #12"}]},
        ),
        ("parallel_research.yaml", {}),
        ("review_until_approved.yaml", {}),
        ("generated_by_design.yaml", {}),
    ],
)
async def test_v010_spec_runs_to_completed(client: Client, spec: str, outputs: dict[str, list[Any]]) -> None:
    path = SPECS_010 / spec
    assert path.is_file(), path
    view = ok(await client.call_tool("start_run", {"spec_path": project_spec(spec)}))
    assert view["status"] == "running", view
    assert view["tasks"]
    assert view["turn"] == 0
    seen: list[str] = []
    script = Scripted(**outputs)

    def record(task: dict[str, Any]) -> Any:
        seen.append(task["task_id"])
        return script(task)

    final = await drive(client, view, record)
    assert final["status"] == "completed", final
    assert final["tasks"] == []
    assert final["turn"] == len(seen)
    got = ok(await client.call_tool("get_run", {"run_id": view["run_id"]}))
    assert got["status"] == "completed"
    if spec == "supervisor_triage.yaml":
        assert seen == ["supervise#1", "fix_bug#1", "supervise#2"]
        assert not script.scripts["supervise"]
    if spec == "handoff_pipeline.yaml":
        assert seen == ["analyse#1", "implement#1", "review#1"]


async def test_same_step_twice_same_answer_and_trace_does_not_grow(client: Client) -> None:
    view = ok(await client.call_tool("start_run", {"spec_path": project_spec("handoff_pipeline.yaml")}))
    run_id, task = view["run_id"], view["tasks"][0]
    output = {"summary": "analysed", "findings": [1, 2]}
    first_result = await step(client, run_id, task["task_id"], output)
    first = ok(first_result)
    assert first["accepted"] is True
    assert first["turn"] == 1
    events = await trace_events(client, run_id)
    second_result = await step(client, run_id, task["task_id"], output)
    assert ok(second_result) == first
    assert text_of(second_result) == text_of(first_result)
    assert await trace_events(client, run_id) == events
    submitted = [e for e in events if e["type"] == "output_submitted"]
    assert len(submitted) == 1
    assert submitted[0]["data"]["output"] == output
    # a different output for the closed task is a clear error, and still appends nothing
    changed = await step(client, run_id, task["task_id"], {"summary": "something else"})
    assert_tool_error(changed, task["task_id"], "different output")
    assert await trace_events(client, run_id) == events


async def test_wrong_task_id_names_the_open_task(client: Client) -> None:
    view = ok(await client.call_tool("start_run", {"spec_path": project_spec("handoff_pipeline.yaml")}))
    open_id = view["tasks"][0]["task_id"]
    result = await step(client, view["run_id"], "review#7", {"summary": "x"})
    assert_tool_error(result, "review#7", open_id)
    assert ok(await client.call_tool("get_run", {"run_id": view["run_id"]}))["turn"] == 0


async def test_command_gate_failure_is_a_retry_with_the_output_as_feedback(
    client: Client, workdir: Path
) -> None:
    (workdir / READY).unlink(missing_ok=True)
    view = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))  # relative to the server's cwd
    run_id = view["run_id"]
    assert [t["task_id"] for t in view["tasks"]] == ["implement#1"]
    answer = ok(await step(client, run_id, "implement#1", {"summary": "first try"}))
    assert answer["accepted"] is True
    assert answer["status"] == "running"
    gates = {g["name"]: g for g in answer["gate_results"]}
    assert gates["file_ready"]["passed"] is False
    assert "boom-marker" in (gates["file_ready"]["feedback"] or "")
    [retry] = answer["tasks"]
    assert retry["task_id"] == "implement#2"
    assert retry["attempt"] == 2
    assert "boom-marker" in retry["feedback"]
    (workdir / READY).write_text("ready", encoding="utf-8")
    done = ok(await step(client, run_id, "implement#2", {"summary": "second try"}))
    assert [g["passed"] for g in done["gate_results"] if g["name"] == "file_ready"] == [True]
    assert done["status"] == "completed", done
    types_seen = [e["type"] for e in await trace_events(client, run_id)]
    assert "gate_failed" in types_seen
    assert "gate_passed" in types_seen
    assert types_seen[-1] == "run_completed"


async def test_resources(client: Client) -> None:
    view = ok(await client.call_tool("start_run", {"template": "fix_tests"}))
    run_id = view["run_id"]
    ok(await client.call_tool("checkpoint", {"run_id": run_id, "label": "start"}))

    listed = {str(r.uri) for r in (await client.list_resources()).resources}
    assert {"loopengt://runs", "loopengt://schema/loop-spec"} <= listed
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert {
        "loopengt://runs/{run_id}",
        "loopengt://runs/{run_id}/trace{?cursor}",
        "loopengt://runs/{run_id}/checkpoints",
        "loopengt://templates/{name}",
    } <= templates

    runs = resource_json(await client.read_resource("loopengt://runs", cache_mode="bypass"))
    assert run_id in [r["run_id"] for r in runs["runs"]]
    run = resource_json(await client.read_resource(f"loopengt://runs/{run_id}", cache_mode="bypass"))
    assert run["run_id"] == run_id
    assert run["status"] == "running"
    assert run["tasks"][0]["task_id"] == "implement#1"
    events = await trace_events(client, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run_started"
    assert "checkpoint_taken" in [e["type"] for e in events]
    assert all(e["at"].endswith(("Z", "+00:00")) for e in events)
    points = resource_json(
        await client.read_resource(f"loopengt://runs/{run_id}/checkpoints", cache_mode="bypass")
    )
    assert [(c["checkpoint_id"], c["label"]) for c in points["checkpoints"]] == [("cp-1", "start")]
    template = await client.read_resource("loopengt://templates/fix_tests")
    assert template.contents[0].mime_type == "application/yaml"
    assert "name: fix-tests" in resource_text(template)
    schema = resource_json(await client.read_resource("loopengt://schema/loop-spec"))
    assert "steps" in schema["properties"]
    assert "agents" in schema["properties"]


async def test_prompts(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert {"design_loop", "drive_run", "review_loop"} <= set(prompts)
    assert [a.name for a in prompts["drive_run"].arguments or []] == ["run_id"]
    assert "goal" in [a.name for a in prompts["design_loop"].arguments or []]
    drive_run = await client.get_prompt("drive_run", {"run_id": "my-run-123"})
    message = drive_run.messages[0]
    assert message.role == "user"
    assert isinstance(message.content, types.TextContent)
    assert "my-run-123" in message.content.text
    assert "{{run_id}}" not in message.content.text
    design = await client.get_prompt("design_loop", {"goal": "make the flaky test deterministic"})
    content = design.messages[0].content
    assert isinstance(content, types.TextContent)
    assert "make the flaky test deterministic" in content.text


async def test_completion_offers_run_ids_and_template_names(client: Client) -> None:
    view = ok(await client.call_tool("start_run", {"template": "fix_tests", "run_id": "complete-me-1"}))
    assert view["run_id"] == "complete-me-1"
    ref = types.ResourceTemplateReference(type="ref/resource", uri="loopengt://runs/{run_id}")
    values = (await client.complete(ref, {"name": "run_id", "value": "complete-"})).completion.values
    assert values == ["complete-me-1"]
    everything = (await client.complete(ref, {"name": "run_id", "value": ""})).completion.values
    assert "complete-me-1" in everything
    assert len(everything) >= 2
    tref = types.ResourceTemplateReference(type="ref/resource", uri="loopengt://templates/{name}")
    names = (await client.complete(tref, {"name": "name", "value": "fix"})).completion.values
    assert names == ["fix_tests"]
    all_names = (await client.complete(tref, {"name": "name", "value": ""})).completion.values
    assert {"fix_tests", "supervisor_workers"} <= set(all_names)


async def test_text_content_mirrors_next_action(client: Client) -> None:
    result = await client.call_tool("start_run", {"template": "fix_tests"})
    view = ok(result)
    text = text_of(result)
    assert view["run_id"] in text
    assert view["next_action"] in text
    assert view["tasks"][0]["instructions"] in text


async def test_a_step_waiting_for_another_process_lock_leaves_the_server_responsive(
    client: Client, workdir: Path
) -> None:
    """Steps run on the event loop only when the run's lock is free: a held lock never stalls the server."""
    import fcntl
    import os
    import time

    import anyio

    view = ok(await client.call_tool("start_run", {"spec_path": project_spec("handoff_pipeline.yaml")}))
    run_id, task = view["run_id"], view["tasks"][0]["task_id"]
    lock = os.open(workdir / "store" / "runs" / run_id / "lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another process in the middle of a transition of this run
    answers: list[dict[str, Any]] = []
    try:
        async with anyio.create_task_group() as tasks:

            async def submit() -> None:
                answers.append(ok(await step(client, run_id, task, {"summary": "s", "findings": []})))

            tasks.start_soon(submit)
            await anyio.sleep(0.3)
            t0 = time.monotonic()
            with anyio.fail_after(5):  # a step blocking the event loop on the lock would hang here
                templates = ok(await client.call_tool("list_templates", {}))
            assert time.monotonic() - t0 < 2.0  # answered while the step waits for the lock
            assert templates["templates"]
            assert answers == []  # still waiting
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
    assert answers[0]["accepted"] is True
