"""The web view without a browser: `loopengt graph`, `loopengt report`, the live stream on both stores,
and /ui mounted in the streamable-HTTP server behind its Host checks and token.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import HttpServer, run_cli
from test_follow import postgres_url
from typer.testing import CliRunner
from ui_helpers import UiServer, request

from loopengt_core.engine.validation import load_spec
from loopengt_core.service.runs import Runs
from loopengt_core.store import open_store
from loopengt_server.cli import app as cli_app
from loopengt_server.ui.graph import mermaid

LIVE_SECONDS = 2.0
AGENTS = [{"name": "a"}]


def _edges(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if "-->" in line or "-.->" in line}


def test_graph_draws_each_patterns_transitions() -> None:
    sequential = load_spec(
        {
            "name": "s",
            "agents": AGENTS,
            "steps": [
                {"name": "b", "agent": "a", "dependencies": ["a"]},
                {"name": "a", "agent": "a", "allow_retry": False},
            ],
        }
    )
    text = mermaid(sequential)
    assert text.startswith("flowchart TD\n")
    assert {"start --> s1", "s1 --> s0", "s0 --> finish"} <= _edges(text)  # dependency order, not file order
    assert 's0 -.->|"retry ≤3"| s0' in _edges(text)
    assert not any(e.startswith("s1 -.->") for e in _edges(text))  # allow_retry: false

    supervisor = load_spec(
        {
            "name": "sw",
            "pattern": "supervisor_worker",
            "agents": AGENTS,
            "steps": [{"name": n, "agent": "a"} for n in ("lead", "dev", "test")],
        }
    )
    assert {
        "start --> s0",
        's0 -->|"next_step: dev"| s1',
        "s1 --> s0",
        's0 -->|"next_step: test"| s2',
        "s2 --> s0",
        's0 -->|"done"| finish',
    } <= _edges(mermaid(supervisor))

    custom = load_spec(
        {
            "name": "c",
            "pattern": "custom",
            "agents": AGENTS,
            "steps": [
                {
                    "name": "triage",
                    "agent": "a",
                    "routes": {"field": "kind", "map": {"bug": "fix"}, "default": "plan"},
                },
                {"name": "fix", "agent": "a", "next": ["t1", "t2"], "on_failure": "plan"},
                {"name": "plan", "agent": "a"},
                {"name": "t1", "agent": "a", "next": "join"},
                {"name": "t2", "agent": "a", "next": "join"},
                {"name": "join", "agent": "a", "dependencies": ["t1", "t2"]},
            ],
        }
    )
    assert {
        's0 -->|"kind = bug"| s1',
        's0 -->|"default"| s2',
        's1 -->|"fan-out"| s3',
        's1 -->|"fan-out"| s4',
        's1 -.->|"on failure"| s2',
        "s3 --> s5",
        "s2 --> finish",
        "s5 --> finish",
    } <= _edges(mermaid(custom))

    marked = mermaid(custom, {"triage": "completed", "fix": "running"}, frozenset({"fix"}))
    assert "class s0 completed" in marked
    assert "class s1 running" in marked
    assert "class s1 current" in marked


def test_graph_command_reads_files_and_templates_and_names_a_bad_file(tmp_path: Path) -> None:
    cli = CliRunner()
    for name in ("fix_tests", "supervisor_workers"):
        result = cli.invoke(cli_app, ["graph", name])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("flowchart TD\n")
    spec = tmp_path / "loop.yaml"
    spec.write_text("name: x\nagents: [{name: a}]\nsteps: [{name: only, agent: a}]\n")
    result = run_cli("graph", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 's0["only<br/>agent a"]' in result.stdout
    missing = run_cli("graph", "nowhere.yaml", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "loopengt: nowhere.yaml: no such file"


SPEC: dict[str, Any] = {
    "name": "reported",
    "goal": "show every part",
    "agents": AGENTS,
    "steps": [
        {"name": "plan", "agent": "a", "verification_gates": ["has_plan"]},
        {"name": "build", "agent": "a"},
    ],
    "policy": {
        "verification_gates": [
            {"name": "has_plan", "condition": "output.plan != null", "feedback": "Say what the plan is."}
        ]
    },
}


def test_report_has_steps_attempts_gates_spend_checkpoints_and_timeline(tmp_path: Path) -> None:
    store = tmp_path / "store"
    runs = Runs(open_store(str(store)), cwd=tmp_path)
    runs.start_run(spec=SPEC, run_id="rep")
    runs.step(
        "rep", "plan#1", {"nothing": 1}, usage={"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.5}
    )
    runs.step("rep", "plan#2", {"plan": "do it"})
    runs.checkpoint("rep", "halfway")
    runs.step("rep", "build#1", {"built": True})
    out = tmp_path / "report.md"
    result = run_cli("report", "rep", "--store", str(store), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith("# Run rep: completed\n")
    assert "| spend | 120 tokens, $0.5 (2 of 3 submissions reported no usage) |" in text
    assert "```mermaid\nflowchart TD\n" in text
    assert "class s0 completed" in text
    assert "| plan | completed | 2 | 120 tokens, $0.5 |" in text
    assert "#### plan#1 (agent a, attempt 1): success" in text
    assert "#### plan#2 (agent a, attempt 2): success" in text
    assert "Feedback given: Say what the plan is." in text
    assert "| plan#1 | has_plan | failed |" in text
    assert "| plan#2 | has_plan | passed |" in text
    assert "| cp-1 |" in text
    assert "halfway" in text
    timeline = [line for line in text.splitlines() if line.startswith("| ") and "Z | " in line]
    assert len(timeline) == len(runs.trace("rep"))
    stdout = run_cli("report", "rep", "--store", str(store), cwd=tmp_path)
    assert stdout.stdout == text
    unknown = run_cli("report", "nope", "--store", str(store), cwd=tmp_path)
    assert unknown.returncode == 1
    assert "no run 'nope'" in unknown.stderr


class Stream:
    """An SSE stream read on a thread: `next()` is the next (event, data) within a deadline."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        self.conn.connect()
        self.sock = self.conn.sock  # the response keeps it open after conn.close(): shut it down to end
        self.conn.request(
            "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {}
        )
        self.response = self.conn.getresponse()
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name, data = "message", []
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and data:
                    self.events.put((name, json.loads("\n".join(data))))
                    name, data = "message", []
        except Exception:  # closed by the test (http.client then fails in its own ways)
            return

    def next(self, timeout: float) -> tuple[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


@pytest.fixture(params=["files", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return postgres_url(request.getfixturevalue("postgres_dsn"))
    return str(tmp_path / "store")


def test_stream_tells_a_change_from_another_process_within_2_s(location: str, tmp_path: Path) -> None:
    runs = Runs(open_store(location), cwd=tmp_path)
    runs.start_run(spec=SPEC, run_id="live")
    server = UiServer(location, tmp_path)
    try:
        run_stream = Stream(server.url + "api/runs/live/stream")
        runs_stream = Stream(server.url + "api/stream")
        name, first = run_stream.next(10)
        assert name == "snapshot"
        assert [e["type"] for e in first["events"]] == ["run_started", "task_issued"]
        assert [t["task_id"] for t in first["tasks"]] == ["plan#1"]
        assert "s0" in first["spec"]["nodes"].values()
        assert "class s0 running" in first["graph"]
        assert runs_stream.next(10)[1]["runs"][0]["status"] == "running"
        for attempt, output in ((1, {"nothing": 1}), (2, {"plan": "p"})):
            before = time.monotonic()
            runs.step("live", f"plan#{attempt}", output)
            name, update = run_stream.next(LIVE_SECONDS)
            assert time.monotonic() - before < LIVE_SECONDS
            assert name == "update"
            assert update["events"][0]["seq"] == first["events"][-1]["seq"] + 1  # only the new events
            first = update
        assert [t["task_id"] for t in update["tasks"]] == ["build#1", "plan#2"]
        assert [s["status"] for s in update["run"]["steps"]] == ["completed", "running"]
        assert "class s0 completed" in update["graph"]
        runs.cancel_run("live", "enough")
        deadline = time.monotonic() + LIVE_SECONDS
        while True:
            _, listing = runs_stream.next(max(0.01, deadline - time.monotonic()))
            if listing["runs"][0]["status"] == "cancelled":
                break
        run_stream.close()
        runs_stream.close()
    finally:
        server.stop()
        runs.store.close()


def test_bad_requests_get_clear_errors(tmp_path: Path) -> None:
    store = tmp_path / "store"
    runs = Runs(open_store(str(store)), cwd=tmp_path)
    runs.start_run(spec=SPEC, run_id="r1")
    server = UiServer(store, tmp_path)
    try:
        status, answer = request(server.url + "api/runs?status=nope")
        assert status == 400
        assert "status must be one of running" in answer["error"]
        assert request(server.url + "api/runs/nope/stream") == (
            404,
            {"error": "no run 'nope' in this store; list_runs shows the runs there are"},
        )
        status, answer = request(
            server.url + "api/runs/r1/cancel",
            raw=b"reason=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 400
        assert "application/json" in answer["error"]
        status, answer = request(server.url + "api/runs/r1/cancel", raw=b"[1]")
        assert status == 400
        assert answer["error"] == "the request body must be a JSON object"
        parts = urllib.parse.urlsplit(server.url)
        too_big = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        too_big.putrequest("POST", parts.path + "api/runs/r1/cancel")
        too_big.putheader("Content-Type", "application/json")
        too_big.putheader("Content-Length", str(5 * 1024 * 1024))
        too_big.endheaders()  # refused on its length, before any of it is sent
        assert too_big.getresponse().status == 413
        too_big.close()
        status, answer = request(server.url + "api/runs/r1/approve", body={"approved": "yes"})
        assert status == 400
        assert "approved must be true" in answer["error"]
        status, answer = request(server.url + "api/runs/r1/approve", body={"approved": True})
        assert status == 409
        assert "approval" in answer["error"]
        status, answer = request(server.url + "api/runs/r1/diff?task=plan#1")
        assert status == 400
        assert "records no files" in answer["error"]
        assert runs.get_run("r1").status == "running"
    finally:
        server.stop()


def test_ui_mounted_in_the_http_server_behind_its_host_check_and_token(tmp_path: Path) -> None:
    store = tmp_path / "store"
    Runs(open_store(str(store)), cwd=tmp_path).start_run(spec=SPEC, run_id="m1")
    server = HttpServer("streamable-http", store, tmp_path, env={"LOOPENGT_TOKEN": "tok-1"}).start()
    try:
        base = f"http://127.0.0.1:{server.port}/ui/"
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/ui/")
        page = conn.getresponse()
        assert page.status == 200
        assert b"static/app.js" in page.read()
        assert request(base + "api/runs")[0] == 401
        status, listing = request(base + "api/runs", headers={"Authorization": "Bearer tok-1"})
        assert status == 200
        assert [r["run_id"] for r in listing] == ["m1"]
        status, answer = request(
            base + "api/runs", headers={"Authorization": "Bearer tok-1", "Host": "evil.example"}
        )
        assert status == 421, answer
        status, answer = request(base + "api/runs/m1/checkpoint", body={"label": "x"})
        assert status == 401
        status, answer = request(
            base + "api/runs/m1/checkpoint", body={"label": "x"}, headers={"Authorization": "Bearer tok-1"}
        )
        assert status == 200
        assert answer["checkpoint"]["checkpoint_id"] == "cp-1"
        stream = Stream(base + "api/runs/m1/stream", {"Authorization": "Bearer tok-1"})
        assert stream.next(10)[1]["checkpoints"][0]["label"] == "x"
        stream.close()
    finally:
        server.stop()


def test_diff_shows_the_files_a_tasks_submission_changed(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / ".gitignore").write_text(".loopengt/\n")
    store = project / ".loopengt"
    runs = Runs(open_store(str(store)), cwd=project)
    runs.start_run(spec={**SPEC, "workspace": "git"}, run_id="g1")
    (project / "plan.txt").write_text("the plan\n")
    runs.step("g1", "plan#1", {"plan": "written"})
    runs.step("g1", "build#1", {"built": True})  # no file changed
    server = UiServer(store, project)
    try:
        diff = (
            urllib.request.urlopen(server.url + "api/runs/g1/diff?task=plan%231", timeout=10).read().decode()
        )
        assert "+++ b/plan.txt" in diff
        assert "+the plan" in diff
        unchanged = urllib.request.urlopen(server.url + "api/runs/g1/diff?task=build%231", timeout=10).read()
        assert unchanged == b"(no change to the files)\n"
        status, answer = request(server.url + "api/runs/g1/diff?task=nope%231")
        assert status == 400
        assert answer["error"] == "task must be one of the run's tasks (got 'nope#1')"
    finally:
        server.stop()
