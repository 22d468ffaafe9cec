"""Helpers for the MCP tests: real server subprocesses (stdio, streamable HTTP, SSE) and the real `mcp` client.

Every server is a subprocess of `python -m loopengt_server serve`; starting one costs about
1.5 s (imports), so modules share one server per protocol era where that does not hurt isolation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp import Client, StdioServerParameters

ERAS = ["legacy", "auto"]  # Client(mode=...): the handshake era (2025-11-25) and the modern one (2026-07-28)
SPECS_010 = Path(__file__).parent / "fixtures" / "specs_v010"  # the 0.1.0 sample specs, byte for byte
PROJECT_SPECS = "specs_v010"  # where `with_specs` puts them in a server's project
START_DEADLINE_SECONDS = 30.0
LOOPENGT = Path(sys.executable).with_name("loopengt")  # the console script of this venv
# A raw initialize request (handshake era), for tests that speak JSON-RPC without the client.
INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


# --- environment and processes ---------------------------------------------------------------------------


def server_env(**extra: str) -> dict[str, str]:
    """What a server subprocess needs. StdioServerParameters merges this over a filtered default env."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1", "LOOPENGT_LOG_LEVEL": "WARNING"}
    for name in (
        "HOME",
        "TMPDIR",
        "LANG",
        "LC_ALL",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONUSERBASE",
        "SYSTEMROOT",
    ):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


def with_specs(root: Path) -> Path:
    """`root` holding a copy of the 0.1.0 sample specs in `PROJECT_SPECS`: a server reads only files
    inside its project (its working directory), so a test's specs go there."""
    import shutil

    shutil.copytree(SPECS_010, root / PROJECT_SPECS, dirs_exist_ok=True)
    return root


def project_spec(name: str) -> str:
    """The `spec_path` of a 0.1.0 sample spec in a project made with `with_specs`."""
    return f"{PROJECT_SPECS}/{name}"


def serve_args(store: Path, *extra: str) -> list[str]:
    return ["-m", "loopengt_server", "serve", "--store", str(store), *extra]


def raw_stdio_server(tmp_path: Path) -> subprocess.Popen[bytes]:
    """`loopengt serve` on pipes, for tests that write the JSON-RPC lines themselves (stderr dropped)."""
    return subprocess.Popen(
        [sys.executable, *serve_args(tmp_path / "store")],
        cwd=tmp_path,
        env=server_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def stdio_params(
    store: Path, cwd: Path, *extra: str, env: dict[str, str] | None = None
) -> StdioServerParameters:
    """A stdio server on `store`, working directory `cwd` (spec paths and commands are relative to it)."""
    return StdioServerParameters(
        command=sys.executable, args=serve_args(store, *extra), cwd=str(cwd), env=server_env(**(env or {}))
    )


def stdio_client(store: Path, cwd: Path, mode: str, *extra: str, **client_options: Any) -> Client:
    return Client(stdio_params(store, cwd, *extra), mode=mode, read_timeout_seconds=60, **client_options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpServer:
    """`loopengt serve --transport streamable-http|sse` as a subprocess on a free port of 127.0.0.1."""

    def __init__(
        self,
        transport: str,
        store: Path,
        cwd: Path,
        *,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        assert transport in ("streamable-http", "sse")
        self.transport = transport
        self.store = store
        self.cwd = cwd
        self.env = env or {}
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = cwd / f"server-{transport}-{id(self)}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{'mcp' if self.transport == 'streamable-http' else 'sse'}"

    def spawn(self) -> None:
        self.port = free_port()
        argv = [
            sys.executable,
            *serve_args(self.store, "--transport", self.transport, "--port", str(self.port)),
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, *self.args],
                cwd=self.cwd,
                env={**os.environ, **server_env(**self.env)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def wait_ready(self, deadline: float) -> None:
        """Poll until the port accepts connections; fail with the server's log if it exits or the deadline passes."""
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.transport} server exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"{self.transport} server did not listen in time:\n{self.log()}"
                    ) from None
                time.sleep(0.05)

    def start(self) -> HttpServer:
        start_all([self])
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no cleanup runs in the server (what a crash looks like)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


def start_all(servers: Iterable[HttpServer]) -> None:
    """Start several servers at once (their imports overlap) and wait until each listens."""
    servers = list(servers)
    for server in servers:
        server.spawn()
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    try:
        for server in servers:
            server.wait_ready(deadline)
    except BaseException:
        for server in servers:
            server.stop()
        raise


@contextlib.contextmanager
def running(*servers: HttpServer) -> Iterator[tuple[HttpServer, ...]]:
    start_all(servers)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def run_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`loopengt ARGS` (the console script), as a person would type it in a terminal."""
    return subprocess.run(
        [str(LOOPENGT), *args],
        cwd=cwd,
        env={**os.environ, **server_env()},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- answers -----------------------------------------------------------------------------------------------


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def ok(result: types.CallToolResult) -> dict[str, Any]:
    """The structured content of a successful tool call (fails the test with the error text otherwise)."""
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None, result
    return dict(result.structured_content)


def assert_tool_error(result: types.CallToolResult, *needles: str) -> str:
    """A tool error (isError) whose text names each needle and carries no traceback."""
    assert result.is_error, f"expected a tool error, got {result.structured_content or text_of(result)}"
    text = text_of(result)
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in {text!r}"
    assert_no_traceback(text)
    return text


def assert_no_traceback(text: str) -> None:
    for marker in ("Traceback (most recent call last)", 'File "/', '.py", line '):
        assert marker not in text, f"traceback text in {text!r}"


def resource_json(result: types.ReadResourceResult) -> Any:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents), content
    return json.loads(content.text)


def resource_text(result: types.ReadResourceResult) -> str:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents), content
    return content.text


async def trace_events(client: Client, run_id: str) -> list[dict[str, Any]]:
    """The whole trace, following the pages' next_cursor."""
    events: list[dict[str, Any]] = []
    uri = f"loopengt://runs/{run_id}/trace"
    while True:
        body = resource_json(await client.read_resource(uri, cache_mode="bypass"))
        assert body["run_id"] == run_id
        events += body["events"]
        if body["next_cursor"] is None:
            return events
        uri = f"loopengt://runs/{run_id}/trace?cursor={body['next_cursor']}"


# --- driving runs ------------------------------------------------------------------------------------------


def sample(schema: Any) -> Any:
    """A small value that satisfies a simple JSON Schema (its required properties and their types)."""
    if not isinstance(schema, dict):
        return "ok"
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: sample(props.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return []
    if kind in ("number", "integer"):
        return schema.get("maximum", 1)
    if kind == "boolean":
        return True
    return "ok"


def default_output(task: dict[str, Any]) -> dict[str, Any]:
    """An output that passes the usual gates: the schema's required fields, a summary, a score, approval."""
    defaults = {"summary": f"did {task['step']}", "score": 0.95, "approved": True, "comments": "looks good"}
    sampled = sample(task.get("output_schema") or {})
    return {**defaults, **(sampled if isinstance(sampled, dict) else {})}


class Scripted:
    """Outputs per step, in order (a supervisor's choices); other steps get `default_output`."""

    def __init__(self, **scripts: list[Any]) -> None:
        self.scripts = {step: list(outputs) for step, outputs in scripts.items()}

    def __call__(self, task: dict[str, Any]) -> Any:
        queue = self.scripts.get(task["step"])
        if queue:
            return queue.pop(0)
        return default_output(task)


async def step(client: Client, run_id: str, task_id: str, output: Any, **extra: Any) -> types.CallToolResult:
    return await client.call_tool("step", {"run_id": run_id, "task_id": task_id, "output": output, **extra})


async def drive(
    client: Client,
    view: dict[str, Any],
    output_for: Callable[[dict[str, Any]], Any] = default_output,
    *,
    max_submissions: int = 60,
) -> dict[str, Any]:
    """Submit an output for each open task until the run has none (or is no longer running); the last view."""
    submitted = 0
    while view["status"] == "running" and view["tasks"]:
        for task in list(view["tasks"]):
            submitted += 1
            assert submitted <= max_submissions, f"run {view['run_id']} did not end: {view['next_action']}"
            view = ok(await step(client, view["run_id"], task["task_id"], output_for(task)))
    return view


def tree(root: Path, *, skip: Sequence[Path] = ()) -> dict[str, tuple[int, int]]:
    """Every file and directory under root (but not under `skip`) with its size and mtime, to compare later."""
    skipped = [p.resolve() for p in skip]
    out: dict[str, tuple[int, int]] = {}
    for path in sorted(root.rglob("*")):
        resolved = path.resolve()
        if any(resolved == s or s in resolved.parents for s in skipped):
            continue
        stat = path.lstat()
        out[str(path.relative_to(root))] = (stat.st_size if path.is_file() else -1, stat.st_mtime_ns)
    return out
