"""Every tool against hostile values (hypothesis over tool arguments), through the real MCP client and a
stdio server subprocess: each answer is a success or a tool error whose text names the problem (never
empty, never the SDK's bare "Error executing tool X", never a traceback), no answer carries a secret
from a file, and the server stays up. Plus the last-resort handler, in process with a broken store.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_helpers import assert_no_traceback, ok, stdio_client, text_of

from loopengt_core.engine.view import RunView
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore
from loopengt_server.mcp.app import build_server

SECRET = "s3cret-value-never-echoed"
TOOLS: dict[str, list[str]] = {
    "start_run": ["spec_path", "template", "spec", "inputs", "run_id"],
    "step": ["run_id", "task_id", "output", "outcome", "error"],
    "checkpoint": ["run_id", "label"],
    "resume": ["run_id", "checkpoint_id", "accept_drift", "worktree"],
    "get_run": ["run_id"],
    "list_runs": ["status", "limit"],
    "cancel_run": ["run_id", "reason"],
    "validate_spec": ["spec_path", "spec"],
    "list_templates": [],
}
ODD_PATHS = [
    "/etc/shadow",
    "/etc/passwd",
    "../../../../etc/passwd",
    "../outside/secret.yaml",
    "/proc/self/fd/0",
    "/proc/self/environ",
    "/dev/zero",
    "/dev/stdin",
    "pipe.yaml",
    "secret-link.yaml",
    ".env",
    "loop.yaml",
    "~",
    ".",
    "..",
    "",
    " ",
    "a\x00b",
    "\x00",
    "C:\\Windows\\win.ini",
    "\\\\server\\share\\x",
    "file:///etc/passwd",
    "x" * 5000,
    "/" * 300,
]
KNOWN = ["hostile-target", "implement#1", "cp-1", "fix_tests", "success", "failure", "running"]


def deep(levels: int, leaf: Any = "x") -> Any:
    value = leaf
    for i in range(levels):
        value = {"k": value} if i % 2 else [value]
    return value


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
HOSTILE = st.one_of(
    JSON_LEAVES,
    st.sampled_from(ODD_PATHS),
    st.sampled_from(KNOWN),
    st.text(
        alphabet=st.sampled_from(["\x00", "\ud7ff", "\u202e", "'", '"', "\\", "{", "}", "\n", "a"]),
        max_size=40,
    ),
    st.integers(min_value=60, max_value=190).map(deep),
    st.sampled_from([300_000, 1_100_000]).map(lambda n: "x" * n),
    st.recursive(
        JSON_LEAVES,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    ),
)
BARE = re.compile(r"Error executing tool \w+:?\s*")


@pytest.fixture(scope="module")
def project(era: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(f"hostile-{era}")
    (root / "outside").mkdir()
    (root / "outside" / "secret.yaml").write_text(f"name: x\ntoken: {SECRET}\n", encoding="utf-8")
    work = root / "project"
    work.mkdir()
    (work / ".env").write_text(f"TOKEN={SECRET}\n", encoding="utf-8")
    (work / "secret-link.yaml").symlink_to(root / "outside" / "secret.yaml")
    (work / "loop.yaml").write_text(
        "name: ok\ngoal: g\nagents: [{name: a}]\nsteps: [{name: s, agent: a}]\n",
        encoding="utf-8",
    )
    os.mkfifo(work / "pipe.yaml")
    return work


@pytest.fixture(scope="module")
def served(era: str, project: Path) -> Iterator[tuple[BlockingPortal, Client]]:
    """A client connected in an event loop of its own (a portal): hypothesis drives a sync test."""
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(stdio_client(project / ".loopengt", project, era)) as connected,
    ):
        ok(
            portal.call(
                connected.call_tool, "start_run", {"template": "fix_tests", "run_id": "hostile-target"}
            )
        )
        yield portal, connected


def check_answer(tool: str, result: Any) -> None:
    text = text_of(result)
    everything = text + json.dumps(result.structured_content or {})
    if result.is_error:
        assert text.strip(), f"{tool}: empty error"
        assert not BARE.fullmatch(text), f"{tool}: bare error {text!r}"
        assert_no_traceback(text)
        for raw in ("RecursionError", "MemoryError", "maximum recursion depth"):
            assert raw not in text, f"{tool}: {text!r}"
    assert SECRET not in everything, f"{tool}: a secret from a file reached the client"


@settings(
    max_examples=int(os.environ.get("LOOPENGT_HOSTILE_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    database=None,
)
@given(data=st.data())
def test_every_tool_answers_hostile_values_with_a_named_problem(
    served: tuple[BlockingPortal, Client], data: st.DataObject
) -> None:
    portal, client = served
    tool = data.draw(st.sampled_from(sorted(TOOLS)), label="tool")
    keys = [*TOOLS[tool], "unknown_key", "__proto__"]
    args = data.draw(st.dictionaries(st.sampled_from(keys), HOSTILE, max_size=len(keys)), label="arguments")
    result = portal.call(client.call_tool, tool, args)
    check_answer(tool, result)
    listed = portal.call(client.call_tool, "list_runs", {})
    assert not listed.is_error, text_of(listed)


def test_the_hostile_target_is_still_readable(served: tuple[BlockingPortal, Client]) -> None:
    portal, client = served
    view = ok(portal.call(client.call_tool, "get_run", {"run_id": "hostile-target"}))
    assert len(json.dumps(view)) < 1_000_000


# --- the last resort -------------------------------------------------------------------------------------


class BrokenRuns(Runs):
    """A service with a bug: reading a run raises something no handler expects."""

    def get_run(self, run_id: str, wait_seconds: float = 0.0) -> RunView:
        raise RuntimeError(f"internal detail {SECRET}")


@pytest.mark.anyio
async def test_an_unexpected_exception_is_a_tool_error_with_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = build_server(BrokenRuns(FileStore(tmp_path / "store"), cwd=tmp_path, confine_paths=True))
    async with Client(server) as connected:
        result = await connected.call_tool("get_run", {"run_id": "any"})
    assert result.is_error
    text = text_of(result)
    assert "internal error (RuntimeError)" in text, text
    assert "logged" in text
    assert SECRET not in text
    assert not BARE.fullmatch(text)
    assert any(r.exc_info and SECRET in str(r.exc_info[1]) for r in caplog.records), "no traceback logged"
