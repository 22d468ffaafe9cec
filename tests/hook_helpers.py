"""What the hook tests share: the recorded payloads pointed at a test project, the project (a git root)
and its store, and the console script run as a person runs it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcp_helpers import LOOPENGT, server_env

from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

FIXTURES = Path(__file__).parent / "fixtures" / "hooks"
RECORDED_PROJECT = "/home/dev/project"


def payload(name: str, project: Path, **changes: Any) -> dict[str, Any]:
    """A recorded payload (tests/fixtures/hooks/<client>/<name>), pointed at `project`."""
    data = json.loads((FIXTURES / name).read_text("utf-8"))
    if "cwd" in data:
        data["cwd"] = data["cwd"].replace(RECORDED_PROJECT, str(project))
    if "workspace_roots" in data:
        data["workspace_roots"] = [r.replace(RECORDED_PROJECT, str(project)) for r in data["workspace_roots"]]
    return {**data, **changes}


def loopengt(*args: str, project: Path) -> subprocess.CompletedProcess[str]:
    """`loopengt ARGS --store PROJECT/.loopengt` in the project, as a person runs it (exit 0 asserted)."""
    return _script([*args, "--store", str(project / ".loopengt")], project)


def hook_script(kind: str, given: dict[str, Any], project: Path) -> subprocess.CompletedProcess[str]:
    """`loopengt hook KIND` with `given` on stdin, in the project, as an editor runs it (exit 0 asserted)."""
    done = _script(["hook", kind], project, stdin=json.dumps(given))
    assert "Traceback" not in done.stderr
    return done


def _script(args: list[str], project: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(LOOPENGT), *args],
        input=stdin,
        cwd=project,
        env={**os.environ, **server_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def git_project(tmp_path: Path) -> Path:
    """A project folder that is a repository's root (the hook looks for the store up to there)."""
    folder = tmp_path / "project"
    (folder / ".git").mkdir(parents=True)
    return folder


def project_runs(project: Path) -> Iterator[Runs]:
    """The project's file store, driven in this process."""
    store = FileStore(project / ".loopengt")
    yield Runs(store, cwd=project)
    store.close()
