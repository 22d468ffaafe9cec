"""Specs and git repositories that several test files build alike."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

GIT_ENV = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}


def looping_spec(turns: int, name: str = "loop", agent: str = "worker") -> dict[str, Any]:
    """One agent step that routes back to itself on `{"next": "again"}` and to `done` on "stop"."""
    return {
        "name": name,
        "pattern": "custom",
        "workspace": "none",
        "agents": [{"name": agent}],
        "steps": [
            {
                "name": "work",
                "agent": agent,
                "routes": {"field": "next", "map": {"again": "work", "stop": "done"}},
            },
            {"name": "done", "agent": agent},
        ],
        "policy": {"max_turns": turns},
    }


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in `repo`; its stdout, unstripped (a failure raises)."""
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env or GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout


def init_repo(root: Path) -> Path:
    """An empty repository at `root` on branch main, with a committer and no signing."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "commit.gpgsign", "false")
    return root
