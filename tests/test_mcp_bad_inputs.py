"""Bad inputs through the real MCP client, both eras: each is a tool error with a clear message and no traceback,
nothing is written outside the store, and the server answers the next call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_helpers import (
    assert_no_traceback,
    assert_tool_error,
    ok,
    stdio_client,
    step,
    tree,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def base(era: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base/work is the servers' working directory; base/work/store and base/work/inline-store their stores."""
    root = tmp_path_factory.mktemp(f"bad-{era}")
    (root / "work").mkdir()
    (root / "work" / "keep.txt").write_text("untouched\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def stores(base: Path) -> list[Path]:
    return [base / "work" / "store", base / "work" / "inline-store"]


@pytest.fixture(scope="module")
async def client(era: str, base: Path, stores: list[Path]) -> AsyncIterator[Client]:
    async with stdio_client(stores[0], base / "work", era) as connected:
        yield connected


@pytest.fixture(scope="module")
async def inline_client(era: str, base: Path, stores: list[Path]) -> AsyncIterator[Client]:
    async with stdio_client(stores[1], base / "work", era, "--allow-inline-commands") as connected:
        yield connected


@pytest.fixture(scope="module")
async def run_id(client: Client) -> str:
    view = ok(await client.call_tool("start_run", {"template": "fix_tests", "run_id": "bad-inputs-target"}))
    return str(view["run_id"])


@pytest.fixture
def untouched(base: Path, stores: list[Path], client: Client, run_id: str) -> Iterator[None]:
    """Nothing under base changes except inside the stores."""
    before = tree(base, skip=stores)
    yield
    assert tree(base, skip=stores) == before


async def still_answers(client: Client) -> None:
    runs = ok(await client.call_tool("list_runs", {}))
    assert "bad-inputs-target" in [r["run_id"] for r in runs["runs"]]
    for entry in runs["runs"]:
        assert "/" not in entry["run_id"]
        assert ".." not in entry["run_id"]


BAD_IDS = ["../../x", "..", "a/b", "/etc/passwd", "..\\..\\x", "x" * 100, "", "Upper", "run id"]


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("tool", ["get_run", "step", "cancel_run", "checkpoint", "resume", "start_run"])
async def test_bad_run_ids(client: Client, tool: str, bad: str) -> None:
    args: dict[str, Any] = {"run_id": bad}
    if tool == "step":
        args |= {"task_id": "implement#1", "output": {"summary": "x"}}
    if tool == "start_run":
        args |= {"template": "fix_tests"}
    result = await client.call_tool(tool, args)
    assert_tool_error(result, "invalid run_id", "a-z, 0-9")
    await still_answers(client)


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    ("tool", "args", "needles"),
    [
        ("get_run", {"run_id": "no-such-run"}, ["no run 'no-such-run'", "list_runs"]),
        ("resume", {"run_id": "bad-inputs-target", "checkpoint_id": "../cp"}, ["invalid checkpoint_id"]),
        ("resume", {"run_id": "bad-inputs-target", "checkpoint_id": "cp-99"}, ["cp-99"]),
        ("start_run", {"template": "../../etc/passwd"}, ["unknown template", "fix_tests"]),
        ("start_run", {"spec_path": "no/such/loop.yaml"}, ["no such file"]),
        ("start_run", {}, ["exactly one of spec_path, template or spec"]),
        ("start_run", {"template": "fix_tests", "spec_path": "loop.yaml"}, ["exactly one of"]),
        ("step", {"run_id": "bad-inputs-target", "task_id": "plan#3"}, ["plan#3", "implement#1"]),
        ("list_runs", {"limit": 0}, ["limit"]),
        ("validate_spec", {}, ["exactly one of spec_path or spec"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_bad_values(
    client: Client, run_id: str, tool: str, args: dict[str, Any], needles: list[str]
) -> None:
    assert_tool_error(await client.call_tool(tool, args), *needles)
    await still_answers(client)


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    ("tool", "args", "needles"),
    [
        ("get_run", {"run_id": 5}, ["run_id", "valid string"]),
        ("list_runs", {"limit": "many"}, ["limit", "integer"]),
        ("start_run", {"template": "fix_tests", "inputs": "focus=x"}, ["inputs", "dictionary"]),
        ("step", {"run_id": "bad-inputs-target", "task_id": ["implement#1"]}, ["task_id", "valid string"]),
        ("step", {"run_id": "bad-inputs-target", "task_id": "implement#1", "outcome": "maybe"}, ["outcome"]),
        ("step", {"run_id": "bad-inputs-target", "task_id": "implement#1", "error": 42}, ["error"]),
        ("checkpoint", {"run_id": "bad-inputs-target", "label": {"x": 1}}, ["label"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_wrong_argument_types(
    client: Client, tool: str, args: dict[str, Any], needles: list[str]
) -> None:
    assert_tool_error(await client.call_tool(tool, args), *needles)
    await still_answers(client)


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    ("tool", "args", "missing"),
    [
        ("get_run", {}, "run_id"),
        ("step", {"run_id": "bad-inputs-target"}, "task_id"),
        ("step", {"task_id": "implement#1"}, "run_id"),
        ("cancel_run", {}, "run_id"),
    ],
)
async def test_missing_required_argument(
    client: Client, tool: str, args: dict[str, Any], missing: str
) -> None:
    assert_tool_error(await client.call_tool(tool, args), missing, "required")
    await still_answers(client)


@pytest.mark.usefixtures("untouched")
async def test_unknown_tool(client: Client) -> None:
    assert_tool_error(await client.call_tool("run_shell", {"cmd": "rm -rf /"}), "Unknown tool", "run_shell")
    await still_answers(client)


@pytest.mark.usefixtures("untouched")
async def test_20_mb_output_is_refused_naming_the_limit(client: Client, run_id: str) -> None:
    huge = {"summary": "x" * (20 * 1024 * 1024)}
    result = await step(client, run_id, "implement#1", huge)
    assert_tool_error(result, "limit is 4194304 bytes", "LOOPENGT_MAX_OUTPUT_BYTES")
    view = ok(await client.call_tool("get_run", {"run_id": run_id}))
    assert view["turn"] == 0
    assert [t["task_id"] for t in view["tasks"]] == ["implement#1"]
    await still_answers(client)


@pytest.mark.usefixtures("untouched")
async def test_oversized_inline_spec_is_refused_naming_the_limit(client: Client) -> None:
    spec = "name: big\n# " + "x" * (2 * 1024 * 1024) + "\n"
    assert_tool_error(await client.call_tool("start_run", {"spec": spec}), "1048576 byte limit")
    await still_answers(client)


WRITES_MARKER = ["python", "-c", "open('escaped.txt', 'w').write('the server ran an inline command')"]
INLINE_RUN_STEP = {
    "name": "inline-run",
    "goal": "run a command",
    "agents": [{"name": "a"}],
    "steps": [{"name": "go", "run": WRITES_MARKER}],
}
INLINE_COMMAND_GATE = {
    "name": "inline-gate",
    "goal": "gate with a command",
    "agents": [{"name": "a"}],
    "steps": [{"name": "go", "agent": "a", "verification_gates": ["check"]}],
    "policy": {"verification_gates": [{"name": "check", "command": WRITES_MARKER}]},
}


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("spec", [INLINE_RUN_STEP, INLINE_COMMAND_GATE], ids=["run-step", "command-gate"])
@pytest.mark.parametrize("as_text", [False, True], ids=["object", "yaml"])
async def test_inline_commands_are_refused(client: Client, spec: dict[str, Any], as_text: bool) -> None:
    import yaml

    payload = yaml.safe_dump(spec) if as_text else spec
    result = await client.call_tool("start_run", {"spec": payload})
    assert_tool_error(result, "inline spec may not contain command", "--allow-inline-commands")
    assert spec["name"] not in str(ok(await client.call_tool("list_runs", {})))
    await still_answers(client)


@pytest.mark.parametrize("spec", [INLINE_RUN_STEP, INLINE_COMMAND_GATE], ids=["run-step", "command-gate"])
async def test_inline_commands_run_with_allow_inline_commands(
    inline_client: Client, base: Path, spec: dict[str, Any]
) -> None:
    marker = base / "work" / "escaped.txt"
    marker.unlink(missing_ok=True)
    view = ok(await inline_client.call_tool("start_run", {"spec": spec}))
    if view["tasks"]:
        [task] = view["tasks"]
        view = ok(await step(inline_client, view["run_id"], task["task_id"], {"summary": "done"}))
        assert [g["passed"] for g in view["gate_results"]] == [True]
    assert view["status"] == "completed", view
    assert marker.read_text() == "the server ran an inline command"
    marker.unlink()


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    "uri",
    [
        "loopengt://runs/..%2F..%2Fx",
        "loopengt://runs/../x",
        "loopengt://runs/..%2F..%2Fx/trace",
        "loopengt://templates/..%2F..%2Fetc%2Fpasswd",
        "loopengt://runs/no-such-run/checkpoints",
        "loopengt://runs/Not%20An%20Id",
    ],
)
async def test_bad_resource_uris(client: Client, uri: str) -> None:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri, cache_mode="bypass")
    assert caught.value.code == -32602  # invalid params: not found
    assert_no_traceback(str(caught.value))
    await still_answers(client)
