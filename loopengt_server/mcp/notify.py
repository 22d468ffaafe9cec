"""Telling subscribed clients that a run changed, in both protocol eras, whoever changed it.

Handshake-era clients (`resources/subscribe`) are kept per URI with their session; 2026-07-28 clients
listen through the SDK's subscription bus. A watcher polls the store's cheap per-run version token,
so changes made by another client, a CLI command or another server process are announced too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, ServerEvent

from loopengt_core.model.errors import LoopengtError
from loopengt_core.service.runs import Runs
from loopengt_server.mcp.sdk import add_request_handler, on_disconnect

log = logging.getLogger("loopengt.notify")
POLL_SECONDS = 0.2


class CountingBus(InMemorySubscriptionBus):
    """The SDK's in-process bus, counting listeners so the watcher idles when nobody listens."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners = 0

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        unsubscribe = super().subscribe(listener)
        self.listeners += 1
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                self.listeners -= 1
                unsubscribe()

        return release


def run_uris(run_id: str) -> list[str]:
    """The resource URIs that change when a run changes (its view, trace, checkpoints, and the run list)."""
    base = f"loopengt://runs/{run_id}"
    return [base, f"{base}/trace", f"{base}/checkpoints", "loopengt://runs"]


class Notifier:
    """Tells subscribed sessions (both protocol eras) which run resources changed, whoever changed them."""

    def __init__(self, runs: Runs, bus: CountingBus) -> None:
        self.runs = runs
        self.bus = bus
        self.sessions: dict[str, list[ServerSession]] = {}
        self._versions: dict[str, str] = {}
        self._primed = False

    # --- handshake era -------------------------------------------------------------------------

    def install(self, mcp: MCPServer) -> None:
        """Serve resources/subscribe and unsubscribe (MCPServer leaves them out; this also advertises them)."""
        add_request_handler(mcp, "resources/subscribe", types.SubscribeRequestParams, self._subscribe)
        add_request_handler(mcp, "resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe)

    async def _subscribe(
        self, ctx: ServerRequestContext, params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        # Any URI may be subscribed (the conformance suite subscribes to ones we do not serve).
        uri = str(params.uri)
        self.sessions.setdefault(uri, []).append(ctx.session)
        on_disconnect(ctx.session, self._drop, uri, ctx.session)
        return types.EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext, params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        self._drop(str(params.uri), ctx.session)
        return types.EmptyResult()

    def _drop(self, uri: str, session: ServerSession) -> None:
        left = [s for s in self.sessions.get(uri, []) if s is not session]
        if left:
            self.sessions[uri] = left
        else:
            self.sessions.pop(uri, None)

    # --- both eras -----------------------------------------------------------------------------

    async def changed(self, run_id: str) -> None:
        """Announce that a run changed (called after our own writes, and by the watcher)."""
        if not self.listening:
            return  # the watcher announces, once, what changed while nobody listened
        with contextlib.suppress(LoopengtError):
            self._versions[run_id] = await anyio.to_thread.run_sync(self.runs.reader.version, run_id)
        for uri in run_uris(run_id):
            await self.bus.publish(ResourceUpdated(uri=uri))
            for session in list(self.sessions.get(uri, [])):
                try:
                    await session.send_resource_updated(uri)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    self._drop(uri, session)

    @property
    def listening(self) -> bool:
        """Whether any client listens: while none does, nothing is read or sent."""
        return bool(self.sessions) or self.bus.listeners > 0

    async def watch(self) -> None:
        """Announce runs changed elsewhere while anyone listens; runs until cancelled.

        A store that pushes changes (PostgreSQL: LISTEN/NOTIFY) tells them, across servers; otherwise the
        store's per-run version tokens are polled.
        """
        if self.runs.feed is not None:  # shared with get_run's waits: one listener per process
            await self._listen(self.runs.feed.subscribe())
            return
        # Learn every run's version now, not at the first scan after someone subscribes: a change made by
        # another process right after a client subscribed would otherwise become the baseline, unannounced.
        # Runs changed (or created) while nobody listened are announced once at the next scan.
        try:
            await anyio.to_thread.run_sync(self._scan)
        except LoopengtError as exc:
            log.warning("watch failed: %s", exc)
        while True:
            await anyio.sleep(POLL_SECONDS)
            if not self.listening:
                continue
            try:
                changed = await anyio.to_thread.run_sync(self._scan)
            except LoopengtError as exc:
                log.warning("watch failed: %s", exc)
                continue
            for run_id in changed:
                await self.changed(run_id)

    async def _listen(self, changes: Callable[[float], list[str]]) -> None:
        while True:
            try:
                run_ids = await anyio.to_thread.run_sync(changes, 1.0, abandon_on_cancel=True)
            except LoopengtError as exc:
                log.warning("listening for changes failed: %s", exc)
                await anyio.sleep(1.0)
                continue
            for run_id in run_ids:
                await self.changed(run_id)

    def _scan(self) -> list[str]:
        changed = []
        first, self._primed = not self._primed, True
        for run_id in self.runs.reader.list_runs():
            version = self.runs.reader.version(run_id)
            if self._versions.get(run_id) != version:
                if not first:
                    changed.append(run_id)
                self._versions[run_id] = version
        return changed
