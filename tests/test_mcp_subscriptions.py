"""resources/updated reaches a subscribed client within a second of another client's step, in both eras:
legacy `resources/subscribe` + notifications, modern `subscriptions/listen`.

The stepping client runs in another server process on the same store (the subscriber's server only learns of
the change through its store watcher), or, over HTTP, on the same server as the subscriber.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated
from mcp_helpers import HttpServer, ok, project_spec, running, stdio_client, step, with_specs

pytestmark = pytest.mark.anyio

NOTIFY_WITHIN_SECONDS = 1.0
SPEC = project_spec("handoff_pipeline.yaml")


class Updates:
    """The URIs of resources/updated a client received, in order (a legacy client's message_handler).

    `mark()` before a step; `wait_for(uri)` then waits for an update of uri that arrived after the mark, so an
    earlier (or spurious) update never satisfies the wait for a later step.
    """

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.changed = anyio.Event()
        self.cursor = 0

    def add(self, uri: str) -> None:
        self.uris.append(uri)
        self.changed.set()
        self.changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.add(str(message.params.uri))

    def mark(self) -> None:
        self.cursor = len(self.uris)

    async def wait_for(self, uri: str) -> None:
        while uri not in self.uris[self.cursor :]:
            await self.changed.wait()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_specs(tmp_path_factory.mktemp("subscriptions"))


@pytest.fixture(scope="module")
def legacy_updates() -> Updates:
    return Updates()


@pytest.fixture(scope="module")
async def other(base: Path) -> AsyncIterator[Client]:
    """Another client, in another server process on the same store: the one that steps."""
    async with stdio_client(base / "store", base, "legacy") as client:
        yield client


@pytest.fixture(scope="module")
async def subscriber(era: str, base: Path, legacy_updates: Updates, other: Client) -> AsyncIterator[Client]:
    """A stdio client (with its own server process) on the shared store.

    It depends on `other` so that the clients' cancel scopes nest (fixtures share the runner task): the
    subscriber of each era is entered after `other` and left before it.
    """
    async with stdio_client(base / "store", base, era, message_handler=legacy_updates) as client:
        yield client


@pytest.fixture(scope="module")
def http_server(base: Path) -> Iterator[HttpServer]:
    with running(HttpServer("streamable-http", base / "store", base)) as (server,):
        yield server


@contextlib.asynccontextmanager
async def subscribed(client: Client, era: str, legacy_updates: Updates, uri: str) -> AsyncIterator[Updates]:
    """Subscribe `client` to `uri` the way its era does; yield the updates it receives from then on."""
    if era == "auto":
        updates = Updates()
        async with client.listen(resource_subscriptions=[uri]) as sub, anyio.create_task_group() as tasks:
            assert sub.honored.resource_subscriptions == [uri]

            async def pump() -> None:
                async for event in sub:
                    if isinstance(event, ResourceUpdated):
                        updates.add(event.uri)

            tasks.start_soon(pump)
            yield updates
            tasks.cancel_scope.cancel()
        return
    assert client.server_capabilities is not None
    assert client.server_capabilities.resources is not None
    assert client.server_capabilities.resources.subscribe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.subscribe_resource(uri)
    try:
        yield legacy_updates
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.unsubscribe_resource(uri)


async def step_and_wait(stepping: Client, run_id: str, task_id: str, updates: Updates) -> None:
    """Another client steps; the subscriber hears of it within NOTIFY_WITHIN_SECONDS of the acknowledgement."""
    uri = f"loopengt://runs/{run_id}"
    updates.mark()
    ok(await step(stepping, run_id, task_id, {"summary": task_id}))
    with anyio.fail_after(NOTIFY_WITHIN_SECONDS):
        await updates.wait_for(uri)


async def start(client: Client) -> dict[str, Any]:
    return ok(await client.call_tool("start_run", {"spec_path": SPEC}))


async def test_update_from_another_server_process(
    era: str, subscriber: Client, other: Client, legacy_updates: Updates
) -> None:
    run_id = (await start(other))["run_id"]
    async with subscribed(subscriber, era, legacy_updates, f"loopengt://runs/{run_id}") as updates:
        for task_id in ("analyse#1", "implement#1"):
            await step_and_wait(other, run_id, task_id, updates)
        # what the subscriber reads after the notification is the other client's new state
        seen = ok(await subscriber.call_tool("get_run", {"run_id": run_id}))
        assert seen["turn"] == 2
        assert [t["task_id"] for t in seen["tasks"]] == ["review#1"]


async def test_update_for_a_run_created_after_subscribing(
    era: str, subscriber: Client, other: Client, legacy_updates: Updates
) -> None:
    """The subscriber's server knows nothing of the run when the subscription starts; its start is announced."""
    run_id = f"late-{era}"
    uri = f"loopengt://runs/{run_id}"
    async with subscribed(subscriber, era, legacy_updates, uri) as updates:
        updates.mark()
        ok(await other.call_tool("start_run", {"spec_path": SPEC, "run_id": run_id}))
        with anyio.fail_after(NOTIFY_WITHIN_SECONDS):
            await updates.wait_for(uri)
        await step_and_wait(other, run_id, "analyse#1", updates)


@pytest.mark.parametrize("stepper", ["same-http-server", "other-process"])
async def test_update_over_http(era: str, http_server: HttpServer, other: Client, stepper: str) -> None:
    legacy_updates = Updates()
    async with (
        Client(
            http_server.url, mode=era, message_handler=legacy_updates, read_timeout_seconds=30
        ) as subscriber,
        contextlib.AsyncExitStack() as stack,
    ):
        if stepper == "same-http-server":
            stepping = await stack.enter_async_context(Client(http_server.url, mode="legacy"))
        else:
            stepping = other
        run_id = (await start(stepping))["run_id"]
        async with subscribed(subscriber, era, legacy_updates, f"loopengt://runs/{run_id}") as updates:
            for task_id in ("analyse#1", "implement#1", "review#1"):
                await step_and_wait(stepping, run_id, task_id, updates)
        final = ok(await subscriber.call_tool("get_run", {"run_id": run_id}))
        assert final["status"] == "completed"
