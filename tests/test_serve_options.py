"""`serve` options that keep a server to what it should reach: no token, no network (issue 22, 14);
`--root DIR` serves another folder's project, confined to it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp_helpers import LOOPENGT, assert_tool_error, free_port, ok, server_env

LOOP = "name: rooted\ngoal: g\nagents: [{name: a}]\nsteps: [{name: s, agent: a}]\n"


def env_without_token() -> dict[str, str]:
    env = {**os.environ, **server_env()}
    env.pop("LOOPENGT_TOKEN", None)
    return env


def loopengt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console script without LOOPENGT_TOKEN; a server that starts instead of refusing times out."""
    return subprocess.run(
        [str(LOOPENGT), *args],
        cwd=cwd,
        env=env_without_token(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("command", ["serve", "mcp"])
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "my-host.example"])
def test_serve_on_a_non_loopback_host_without_a_token_refuses_to_start(
    tmp_path: Path, command: str, host: str
) -> None:
    try:
        done = loopengt(
            command,
            "--transport",
            "streamable-http",
            "--host",
            host,
            "--port",
            str(free_port()),
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`loopengt {command} --host {host}` started without LOOPENGT_TOKEN")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "LOOPENGT_TOKEN" in lines[0]
    assert host in lines[0]
    assert "Traceback" not in done.stderr


def test_serve_on_a_non_loopback_host_with_a_token_starts(tmp_path: Path) -> None:
    port = free_port()
    argv = [
        str(LOOPENGT),
        "serve",
        "--transport",
        "streamable-http",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    ]
    env = {**env_without_token(), "LOOPENGT_TOKEN": "a-long-random-token"}
    with subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) as proc:
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(5)  # still serving
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.mark.anyio
async def test_root_serves_another_folder_and_confines_paths_to_it(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "loop.yaml").write_text(LOOP, encoding="utf-8")
    (elsewhere / "loop.yaml").write_text(LOOP, encoding="utf-8")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "loopengt_server", "serve", "--root", str(project)],
        cwd=str(elsewhere),
        env=server_env(),
    )
    async with Client(params, mode="legacy", read_timeout_seconds=60) as client:
        view = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))
        assert view["loop"] == "rooted"
        refused = await client.call_tool("start_run", {"spec_path": str(elsewhere / "loop.yaml")})
        assert_tool_error(refused, "outside the project root", str(project.resolve()))
    assert (project / ".loopengt" / "runs" / view["run_id"]).is_dir()  # the project's own store
    assert not (elsewhere / ".loopengt").exists()


def test_root_that_is_not_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    done = loopengt("serve", "--root", str(tmp_path / "missing"), cwd=tmp_path)
    assert done.returncode == 2
    assert "--root" in done.stderr
    assert "not a directory" in done.stderr
