"""The suite is hermetic (tests/conftest.py): what a test sees does not depend on the user's home, shell or
the directory pytest was started in, where `loopengt run` may have left a store with a running run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from mcp_helpers import SPECS_010, server_env

from loopengt_server.hooks import run_stop_hook


def test_home_and_working_directory_are_fresh_temporary_folders(tmp_path: Path) -> None:
    home, cwd = Path.home(), Path.cwd()
    assert os.environ["HOME"] == str(home)
    assert home.parent == cwd.parent  # one temporary folder per test, not this test's tmp_path
    for folder in (home, cwd):
        assert folder.is_relative_to(tmp_path.parent)  # pytest's temporary folder of this session
        assert not folder.is_relative_to(tmp_path)
        assert not folder.is_relative_to(REPO)
        assert list(folder.iterdir()) == []
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        assert Path(os.environ[name]).is_relative_to(home)


def test_the_users_settings_are_dropped() -> None:
    for name in os.environ:
        assert not name.startswith(("OTEL_", "GIT_", "CODEX_", "CLAUDE_", "CURSOR_")), name
        assert not name.startswith("LOOPENGT_") or name.startswith(
            ("LOOPENGT_TEST_", "LOOPENGT_DURABILITY_", "LOOPENGT_PG_")
        ), name


def test_subprocesses_get_the_temporary_home_and_working_directory() -> None:
    assert server_env()["HOME"] == os.environ["HOME"]
    probe = "import os, pathlib; print(pathlib.Path.home()); print(os.getcwd())"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **server_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines() == [str(Path.home()), str(Path.cwd())]


def test_the_stop_hook_finds_no_run_outside_the_test() -> None:
    """No store in the payload's folder: the hook lets the agent stop, whatever the repository holds."""
    payload = {
        "hook_event_name": "Stop",
        "session_id": "s",
        "stop_hook_active": False,
        "cwd": str(Path.cwd()),
    }
    out, err = io.StringIO(), io.StringIO()
    assert run_stop_hook(io.BytesIO(json.dumps(payload).encode()), out, err, store=None, max_loops=5) == 0
    assert out.getvalue() == ""


def test_the_0_1_0_samples_are_in_the_repository() -> None:
    assert SPECS_010.is_relative_to(REPO / "tests" / "fixtures")
    assert len(list(SPECS_010.glob("*.yaml"))) == 5
