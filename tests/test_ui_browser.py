"""The web view in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

`loopengt ui` runs as its own process; this test process drives the run through the runs service, so
every change the page shows was made by another process and reached it through the store's change feed.
A screenshot of the run page is kept in the test's temporary folder (a CI artefact). The Mermaid of
every template (`loopengt graph`) is parsed and drawn by the vendored Mermaid in the browser.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from ui_helpers import UiServer, request

from loopengt_core.model.events import ApprovalGiven
from loopengt_core.service.catalog import template_names
from loopengt_core.service.runs import Runs
from loopengt_core.store import open_store
from loopengt_server.cli import app as cli_app
from loopengt_server.ui.graph import mermaid
from loopengt_server.ui.web import STATIC

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LIVE_SECONDS = 2.0
START_SECONDS = 30.0

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the Python playwright package is missing: pip install -e '.[dev]'"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium under Playwright; skipped without /usr/bin/chromium, except on CI (CI=true), which must test."""
    if not CHROMIUM.exists():
        hint = "/usr/bin/chromium is missing: apt-get install -y chromium (.ci/run installs it)"
        if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
            pytest.fail(f"{hint}; on CI the web view must be tested, not skipped", pytrace=False)
        pytest.skip(hint)
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


SPEC: dict[str, Any] = {
    "name": "watched",
    "goal": "a person approves the build",
    "pattern": "sequential",
    "agents": [{"name": "a"}],
    "steps": [
        {"name": "plan", "agent": "a", "verification_gates": ["has_plan"]},
        {"name": "build", "agent": "a", "verification_gates": ["person"]},
    ],
    "policy": {
        "verification_gates": [
            {"name": "has_plan", "condition": "output.plan != null"},
            {"name": "person", "approval": {"via": ["cli", "web"]}, "prompt": "Ship the build?"},
        ]
    },
}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def ui(store: Path, tmp_path: Path) -> Iterator[UiServer]:
    open_store(str(store)).close()
    server = UiServer(store, tmp_path)
    yield server
    server.stop()


def test_runs_page_graph_live_step_and_approval(
    browser: Any, ui: UiServer, store: Path, tmp_path: Path
) -> None:
    runs = Runs(open_store(str(store)), cwd=tmp_path)
    view = runs.start_run(spec=SPEC, run_id="ui-run")
    page = browser.new_page()
    problems: list[str] = []  # script errors and refused resources (the page's Content-Security-Policy)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.goto(ui.url)
    row = page.locator('#runs-table tr[data-run="ui-run"]')
    row.wait_for(timeout=10_000)
    assert "running" in row.inner_text()

    row.locator("a").click()
    page.locator("#graph svg").wait_for(timeout=10_000)
    drawn = page.locator("#graph svg").text_content() or ""
    for step in SPEC["steps"]:
        assert step["name"] in drawn, f"step {step['name']} not in the graph: {drawn!r}"
    page.locator('#tasks [data-task="plan#1"]').wait_for(timeout=5_000)
    current = page.locator("#graph svg g.node.running.current")  # the step with the open task, marked
    assert current.count() == 1
    assert "plan" in (current.text_content() or "")

    # A step submitted from this process (not the server's) shows on the open page within 2 s.
    submitted = time.monotonic()
    runs.step("ui-run", view.tasks[0].task_id, {"plan": "build it"})
    page.locator('#timeline tr[data-type="step_completed"]').wait_for(timeout=LIVE_SECONDS * 1000)
    seen = time.monotonic() - submitted
    assert seen < LIVE_SECONDS, f"the page showed the step after {seen:.2f} s"
    assert page.locator('#tasks [data-task="plan#1"] .outcome').inner_text() == "success"
    page.locator('#tasks [data-task="build#1"]').wait_for(timeout=LIVE_SECONDS * 1000)

    # The build waits for a person; approving in the page completes the run, recorded as via web.
    runs.step("ui-run", "build#1", {"built": True})
    page.locator("#approve-btn").wait_for(timeout=LIVE_SECONDS * 1000)
    page.fill("#approval-comment", "looks right")
    page.click("#approve-btn")
    page.locator("#run-status", has_text="completed").wait_for(timeout=5_000)
    assert runs.get_run("ui-run").status == "completed"
    answers = [e for e in runs.trace("ui-run") if isinstance(e, ApprovalGiven)]
    assert [(a.via, a.comment) for a in answers] == [("web", "looks right")]
    gate = page.locator('#tasks [data-task="build#1"] [data-gate="person"]')
    gate.wait_for(state="attached", timeout=LIVE_SECONDS * 1000)
    assert "passed — approved by" in (gate.text_content() or "")

    shot = tmp_path / "run-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert problems == []
    page.close()


def test_cancel_and_checkpoint_from_the_page(browser: Any, ui: UiServer, store: Path, tmp_path: Path) -> None:
    runs = Runs(open_store(str(store)), cwd=tmp_path)
    runs.start_run(spec=SPEC, run_id="to-cancel")
    page = browser.new_page()
    page.goto(ui.url + "#/run/to-cancel")
    page.fill("#checkpoint-label", "before the end")
    page.click("#checkpoint-btn")
    page.locator('#checkpoints tr[data-checkpoint="cp-1"]').wait_for(timeout=5_000)
    assert [c.label for c in runs.list_checkpoints("to-cancel")] == ["before the end"]
    page.on("dialog", lambda dialog: dialog.accept())
    page.fill("#cancel-reason", "not needed")
    page.click("#cancel-btn")
    page.locator("#run-status", has_text="cancelled").wait_for(timeout=5_000)
    assert runs.get_run("to-cancel").error == "not needed"
    page.close()


def test_with_a_token_actions_need_it(browser: Any, store: Path, tmp_path: Path) -> None:
    runs = Runs(open_store(str(store)), cwd=tmp_path)
    runs.start_run(spec=SPEC, run_id="guarded")
    server = UiServer(store, tmp_path, token="s3cret-token")
    try:
        action = server.url + "api/runs/guarded/cancel"
        assert request(action, body={})[0] == 401
        assert request(action, body={}, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(server.url + "api/runs")[0] == 401
        status, answer = request(
            action, body={}, headers={"Authorization": "Bearer s3cret-token", "Origin": "http://evil.example"}
        )
        assert status == 403, answer
        status, answer = request(
            action, body={}, headers={"Authorization": "Bearer s3cret-token", "Sec-Fetch-Site": "cross-site"}
        )
        assert status == 403, answer
        assert runs.get_run("guarded").status == "running"

        # The page asks for the token, then shows the runs and acts with it.
        page = browser.new_page()
        page.goto(server.url)
        page.locator("#token-form").wait_for(state="visible", timeout=10_000)
        page.fill("#token", "s3cret-token")
        page.click("#token-form button")
        page.locator('#runs-table tr[data-run="guarded"]').wait_for(timeout=10_000)
        page.goto(server.url + "#/run/guarded")
        page.on("dialog", lambda dialog: dialog.accept())
        page.click("#cancel-btn")
        page.locator("#run-status", has_text="cancelled").wait_for(timeout=5_000)
        page.close()
    finally:
        server.stop()


def _parse(page: Any, text: str) -> str | None:
    """None when the vendored Mermaid parses and draws `text`, else its error."""
    return page.evaluate(
        """async (text) => {
            try {
                await mermaid.parse(text);
                await mermaid.render("g" + Math.random().toString(36).slice(2), text);
                return null;
            } catch (error) { return String(error && error.message || error); }
        }""",
        text,
    )


def test_graph_of_every_template_is_mermaid_that_mermaid_accepts(browser: Any) -> None:
    page = browser.new_page()
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(STATIC / "mermaid.min.js"))
    page.evaluate("mermaid.initialize({startOnLoad: false, securityLevel: 'strict'})")
    cli = CliRunner()
    names = template_names()
    assert len(names) >= 6
    for name in names:
        result = cli.invoke(cli_app, ["graph", name])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("flowchart TD\n")
        assert _parse(page, result.stdout) is None, (name, _parse(page, result.stdout), result.stdout)
    # The page's version: every step status and the current-step mark as classes.
    from loopengt_core.engine.validation import load_spec
    from loopengt_core.service.catalog import template_text

    spec = load_spec(template_text(names[0]))
    statuses = dict(
        zip(
            [s.name for s in spec.steps],
            ["completed", "running", "failed", "waiting_approval", "skipped", "pending"],
            strict=False,
        )
    )
    marked = mermaid(spec, statuses, frozenset([spec.steps[0].name]))
    assert _parse(page, marked) is None, marked
    page.close()


CUSTOM: dict[str, Any] = {
    "name": "routes-and-joins",
    "pattern": "custom",
    "agents": [{"name": "a"}],
    "steps": [
        {
            "name": "triage",
            "agent": "a",
            "routes": {"field": "kind", "map": {"bug": "fix", "idea": "plan"}, "default": "plan"},
        },
        {"name": "fix", "agent": "a", "next": ["test", "docs"], "on_failure": "plan"},
        {"name": "plan", "agent": "a"},
        {"name": "test", "agent": "a", "next": "merge"},
        {"name": "docs", "agent": "a", "next": "merge"},
        {"name": "merge", "agent": "a", "dependencies": ["test", "docs"]},
    ],
}


def test_graph_of_custom_and_fan_out_specs_parses(browser: Any) -> None:
    from loopengt_core.engine.validation import load_spec

    page = browser.new_page()
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(STATIC / "mermaid.min.js"))
    page.evaluate("mermaid.initialize({startOnLoad: false, securityLevel: 'strict'})")
    fan_out = {
        "name": "fan",
        "pattern": "parallel_fan_out",
        "agents": [{"name": "a"}],
        "steps": [
            {"name": "a1", "agent": "a"},
            {"name": "a2", "agent": "a"},
            {"name": "join", "agent": "a", "dependencies": ["a1", "a2"]},
        ],
    }
    for data in (CUSTOM, fan_out):
        text = mermaid(load_spec(data))
        assert _parse(page, text) is None, text
    page.close()
