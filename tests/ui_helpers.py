"""The web view's test helpers: `loopengt ui` as a process, and plain HTTP requests to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class UiServer:
    """`loopengt ui` as a process; `url` is the page's address it printed."""

    def __init__(self, store: Path | str, cwd: Path, token: str | None = None) -> None:
        self.log_path = cwd / f"ui-{id(self)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPENGT_")}
        env.update(PYTHONUNBUFFERED="1", **({"LOOPENGT_TOKEN": token} if token else {}))
        loopengt = Path(sys.executable).with_name("loopengt")
        self.process = subprocess.Popen(
            [str(loopengt), "ui", "--store", str(store)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log_path.open("wb"),
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("loopengt ui: http://"):
            self.stop()
            raise AssertionError(f"loopengt ui did not print its address: {line!r} {self.stderr()}")
        self.url = line.split()[2]

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def request(
    url: str, *, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> tuple[int, Any]:
    """GET (or POST `body` as JSON, or `raw` bytes): the status and the answer (JSON decoded, else text)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, _decoded(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decoded(exc.read())


def _decoded(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")
