"""`loopengt serve` over stdio answers a line that is not a JSON-RPC message with the error JSON-RPC 2.0
asks for (id null; -32700 for text that is not JSON, -32600 for JSON that is no message) and goes on."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

from mcp_helpers import INITIALIZE, raw_stdio_server


def test_malformed_lines_are_answered_and_the_session_goes_on(tmp_path: Path) -> None:
    proc = raw_stdio_server(tmp_path)
    assert proc.stdin is not None
    assert proc.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def answer() -> dict[str, Any]:
        return dict(json.loads(lines.get(timeout=30)))

    def send(raw: str) -> None:
        proc.stdin.write(raw.encode() + b"\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    try:
        send("this is not json")
        first = answer()
        assert first["id"] is None
        assert first["error"]["code"] == -32700
        send('{"jsonrpc":"2.0","id":8,')
        assert answer()["error"]["code"] == -32700
        for not_a_message in ('{"foo": 1}', "[1, 2]", '"text"'):
            send(not_a_message)
            got = answer()
            assert (got["id"], got["error"]["code"]) == (None, -32600), not_a_message
        send(json.dumps(INITIALIZE))
        initialized = answer()
        assert initialized["id"] == 1
        assert initialized["result"]["serverInfo"]["name"] == "loopengt"
        send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        send("garbage again")
        replies = [answer(), answer()]
        assert {r.get("id") for r in replies} == {2, None}
        tools = next(r for r in replies if r.get("id") == 2)
        assert len(tools["result"]["tools"]) == 9
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
