"""The server's file access is confined to its project, and every value a client sends has limits
(issue 22, cases 1-4 and 10), through the real MCP client against a stdio server subprocess.

The project is base/project (the server's working directory); base/outside holds what a client must
never read or write.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_helpers import assert_tool_error, ok, stdio_client, step, text_of

pytestmark = pytest.mark.anyio

SECRET = "hunter2-do-not-echo"
SHADOW = f"root:*:20228:0:99999:7:::\nbin:*:20228:0:99999:7:::\n# {SECRET}\n"


@pytest.fixture(scope="module")
def base(era: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(f"confine-{era}")
    project, outside = root / "project", root / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "shadow").write_text(SHADOW, encoding="utf-8")
    (outside / "loop.yaml").write_text(
        "name: outside\ngoal: g\nagents: [{name: a}]\nsteps: [{name: s, agent: a}]\n"
    )
    (project / "link-out.yaml").symlink_to(outside / "loop.yaml")
    (project / "dev-zero.yaml").symlink_to("/dev/zero")
    (project / ".env").write_text(f"API_TOKEN={SECRET}\n", encoding="utf-8")
    (project / "creds.yaml").write_text(f"password: {SECRET}\nuser: admin\n", encoding="utf-8")
    (project / "shadow-copy").write_text(SHADOW, encoding="utf-8")
    (project / "spec-like.yaml").write_text(
        f"name: {{password: {SECRET}}}\ngoal: [{SECRET}]\nsteps: {SECRET}\npattern: {SECRET}\n",
        encoding="utf-8",
    )
    (project / "binary.bin").write_bytes(b"\x00\x01\x02" + SECRET.encode() + b"\xff\xfe")
    (project / "big.yaml").write_text("name: big\n# " + "x" * (2 * 1024 * 1024) + "\n", encoding="utf-8")
    (project / "deep.yaml").write_text("[" * 50_000 + "]" * 50_000, encoding="utf-8")
    os.mkfifo(project / "pipe.yaml")
    return root


@pytest.fixture(scope="module")
async def client(era: str, base: Path) -> AsyncIterator[Client]:
    async with stdio_client(base / "project" / ".loopengt", base / "project", era) as connected:
        yield connected


@pytest.fixture(scope="module")
async def run_id(client: Client) -> str:
    view = ok(await client.call_tool("start_run", {"template": "fix_tests", "run_id": "confined"}))
    return str(view["run_id"])


def answer_text(result: Any) -> str:
    return text_of(result) + json.dumps(result.structured_content or {})


async def still_answers(client: Client) -> None:
    ok(await client.call_tool("list_runs", {}))


# --- case 1: spec_path reads only the project's files, and never echoes one that is not a spec ----------


@pytest.mark.parametrize("tool", ["validate_spec", "start_run"])
@pytest.mark.parametrize(
    "path", ["/etc/shadow", "../outside/shadow", "{outside}/shadow", "../outside/loop.yaml", "link-out.yaml"]
)
async def test_a_spec_path_outside_the_project_is_refused_naming_the_root(
    client: Client, base: Path, tool: str, path: str
) -> None:
    given = path.format(outside=base / "outside")
    result = await client.call_tool(tool, {"spec_path": given})
    text = assert_tool_error(result, "outside the project root", str((base / "project").resolve()))
    assert "root:*" not in text
    assert SECRET not in text
    await still_answers(client)


@pytest.mark.parametrize("path", [".env", "creds.yaml", "shadow-copy", "binary.bin", "spec-like.yaml"])
async def test_a_project_file_that_is_not_a_spec_is_never_echoed(client: Client, path: str) -> None:
    checked = await client.call_tool("validate_spec", {"spec_path": path})
    body = ok(checked)
    assert body["valid"] is False
    assert SECRET not in answer_text(checked)
    assert "root:*" not in answer_text(checked)
    started = await client.call_tool("start_run", {"spec_path": path})
    assert started.is_error
    assert SECRET not in answer_text(started)
    assert "root:*" not in answer_text(started)
    if path != "spec-like.yaml":  # that one is a spec with wrong values: its keys are named, not its values
        assert "not a loop spec" in answer_text(checked)
        assert_tool_error(started, "not a loop spec")


# --- case 3: only regular files, within a size, never blocking; NUL bytes ----------------------------------


async def test_a_fifo_answers_at_once_and_does_not_block_the_server(client: Client) -> None:
    with anyio.fail_after(15):
        for _ in range(3):
            body = ok(await client.call_tool("validate_spec", {"spec_path": "pipe.yaml"}))
            assert "not a regular file" in json.dumps(body), body
            assert_tool_error(await client.call_tool("start_run", {"spec_path": "pipe.yaml"}), "FIFO")
        await still_answers(client)


@pytest.mark.parametrize("path", ["dev-zero.yaml", "/dev/zero", "/proc/self/fd/0", "/proc/self/environ"])
async def test_devices_and_proc_files_are_refused(client: Client, path: str) -> None:
    with anyio.fail_after(15):
        assert_tool_error(
            await client.call_tool("start_run", {"spec_path": path}), "outside the project root"
        )
        await still_answers(client)


async def test_a_spec_file_over_the_size_cap_is_refused_naming_the_variable(client: Client) -> None:
    assert_tool_error(
        await client.call_tool("start_run", {"spec_path": "big.yaml"}), "1048576", "LOOPENGT_MAX_SPEC_BYTES"
    )


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("start_run", {"spec_path": "loop\x00.yaml"}),
        ("validate_spec", {"spec_path": "\x00/etc/passwd"}),
        ("resume", {"run_id": "confined", "checkpoint_id": "cp-1", "worktree": "fork\x00"}),
    ],
)
async def test_a_nul_byte_in_a_path_is_a_clear_error(
    client: Client, run_id: str, tool: str, args: dict[str, Any]
) -> None:
    assert_tool_error(await client.call_tool(tool, args), "NUL byte")
    await still_answers(client)


# --- case 2: worktrees only inside the project's worktree folder -------------------------------------------


@pytest.mark.parametrize(
    "where", ["{outside}/fork", "../outside/fork2", "/tmp/../{outside}/fork3", "/etc/cron.d/loopengt", "."]
)
async def test_a_worktree_outside_the_worktree_folder_is_refused(
    client: Client, base: Path, run_id: str, where: str
) -> None:
    point = ok(await client.call_tool("checkpoint", {"run_id": run_id}))
    given = where.format(outside=base / "outside")
    result = await client.call_tool(
        "resume", {"run_id": run_id, "checkpoint_id": point["checkpoint_id"], "worktree": given}
    )
    assert_tool_error(result, "outside the project's worktree folder", ".loopengt/worktrees")
    assert sorted(p.name for p in (base / "outside").iterdir()) == ["loop.yaml", "shadow"]


# --- case 4: depth ------------------------------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"c": value}
    return value


@pytest.mark.parametrize("depth", [65, 150])
async def test_a_deeply_nested_output_is_refused_and_the_run_stays_readable(
    client: Client, run_id: str, depth: int
) -> None:
    result = await step(client, run_id, "implement#1", nested(depth))
    assert_tool_error(result, "64 levels", "LOOPENGT_MAX_JSON_DEPTH")
    view = ok(await client.call_tool("get_run", {"run_id": run_id}))
    assert view["turn"] == 0


async def test_a_200_deep_output_gets_a_clear_error(client: Client, run_id: str) -> None:
    result = await step(client, run_id, "implement#1", nested(200))
    assert_tool_error(result, "LOOPENGT_MAX_JSON_DEPTH")
    assert ok(await client.call_tool("get_run", {"run_id": run_id}))["turn"] == 0


@pytest.mark.parametrize("tool", ["validate_spec", "start_run"])
@pytest.mark.parametrize(
    "spec",
    [
        "[" * 50_000 + "]" * 50_000,
        "a:\n" + "".join(" " * i + "-\n" for i in range(1, 1200)),
        "- " * 50_000 + "x",
    ],
    ids=["flow", "block", "dashes"],
)
async def test_a_50000_deep_yaml_spec_gets_a_clear_error(client: Client, tool: str, spec: str) -> None:
    result = await client.call_tool(tool, {"spec": spec})
    text = answer_text(result)
    assert "levels deep" in text, text
    assert "LOOPENGT_MAX_JSON_DEPTH" in text, text
    assert result.is_error == (tool == "start_run")
    await still_answers(client)


async def test_a_deep_spec_file_and_a_deep_spec_object_get_clear_errors(client: Client) -> None:
    assert_tool_error(
        await client.call_tool("start_run", {"spec_path": "deep.yaml"}), "LOOPENGT_MAX_JSON_DEPTH"
    )
    deep = {"name": "d", "goal": "g", "context": nested(120)}
    assert_tool_error(await client.call_tool("start_run", {"spec": deep}), "LOOPENGT_MAX_JSON_DEPTH")
    body = ok(await client.call_tool("validate_spec", {"spec": deep}))
    assert "LOOPENGT_MAX_JSON_DEPTH" in json.dumps(body)


async def test_yaml_aliases_cannot_multiply_a_spec(client: Client) -> None:
    laughs = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )
    with anyio.fail_after(20):
        assert_tool_error(await client.call_tool("start_run", {"spec": laughs}), "LOOPENGT_MAX_SPEC_VALUES")


# --- case 10: every value has a size limit ------------------------------------------------------------------

HUGE = "x" * (20 * 1024 * 1024)


async def test_20_mb_inputs_are_refused_naming_the_limit(client: Client) -> None:
    result = await client.call_tool("start_run", {"template": "fix_tests", "inputs": {"focus": HUGE}})
    assert_tool_error(result, "inputs", "262144 bytes", "LOOPENGT_MAX_VALUE_BYTES")


async def test_20_mb_error_and_reason_are_refused_naming_the_limit(client: Client) -> None:
    target = ok(await client.call_tool("start_run", {"template": "fix_tests"}))["run_id"]
    failed = await step(client, target, "implement#1", None, outcome="failure", error=HUGE)
    assert_tool_error(failed, "error", "LOOPENGT_MAX_VALUE_BYTES")
    cancelled = await client.call_tool("cancel_run", {"run_id": target, "reason": HUGE})
    assert_tool_error(cancelled, "reason", "LOOPENGT_MAX_VALUE_BYTES")
    view = ok(await client.call_tool("get_run", {"run_id": target}))
    assert view["status"] == "running"
    assert view["turn"] == 0
    assert len(json.dumps(view)) < 100_000
