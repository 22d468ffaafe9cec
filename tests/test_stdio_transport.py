"""The stdio wire read and written on the event loop (loopengt_server.mcp.stdio): lines that arrive in pieces,
several in one piece, a character split between pieces, and answers that fill the pipe while the client
is not reading, all through a real `loopengt serve` process on pipes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from mcp_helpers import INITIALIZE, raw_stdio_server


def _send(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.flush()


def _answer(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.endswith(b"\n"), line[-200:]
    return dict(json.loads(line))


def test_lines_in_pieces_and_answers_past_a_full_pipe(tmp_path: Path) -> None:
    proc = raw_stdio_server(tmp_path)
    try:
        init = json.dumps(INITIALIZE).encode() + b"\n"
        for piece in (init[:7], init[7:40], init[40:]):  # one line, three reads
            _send(proc, piece)
            time.sleep(0.05)
        assert _answer(proc)["result"]["serverInfo"]["name"] == "loopengt"
        _send(proc, b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

        # two requests in one write; the second names a template with "é" split between two writes
        call = {"name": "start_run", "arguments": {"template": "caf\u00e9"}}
        second = json.dumps(
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call}, ensure_ascii=False
        )
        data = b'{"jsonrpc":"2.0","id":2,"method":"ping"}\n' + second.encode() + b"\n"
        cut = data.index("\u00e9".encode()) + 1
        _send(proc, data[:cut])
        time.sleep(0.05)
        _send(proc, data[cut:])
        assert _answer(proc)["id"] == 2
        refused = _answer(proc)
        assert refused["id"] == 3
        assert refused["result"]["isError"] is True
        assert "caf\u00e9" in refused["result"]["content"][0]["text"]

        # answers worth several pipe buffers, sent while nobody reads them: the server waits, then goes on
        listing = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "tools/list"})
        size = len(json.dumps(_list(proc, listing, 4)))
        count = 4 * 65536 // size + 2
        _send(
            proc,
            b"".join(listing.replace('"id": 0', f'"id": {10 + i}').encode() + b"\n" for i in range(count)),
        )
        time.sleep(0.5)  # the pipe fills; the server must neither drop nor reorder what it still has to write
        ids = [_answer(proc)["id"] for _ in range(count)]
        assert ids == [10 + i for i in range(count)]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def _list(proc: subprocess.Popen[bytes], listing: str, request_id: int) -> dict[str, Any]:
    _send(proc, listing.replace('"id": 0', f'"id": {request_id}').encode() + b"\n")
    answer = _answer(proc)
    assert answer["id"] == request_id
    return answer
