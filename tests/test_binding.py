"""The workspace binding on its own (`loopengt_core.service.binding.WorkspaceBinding`): what a run records
of a git work tree, what a new run starts from, and a fork's worktree, with a real repository and no
`Runs` around it. The runs' use of it is in tests/test_workspace.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loops import git, init_repo

from loopengt_core.engine.validation import load_spec
from loopengt_core.model.state import RunState
from loopengt_core.model.state.records import WorkspaceRecord
from loopengt_core.service.binding import WorkspaceBinding
from loopengt_core.service.paths import WORKTREES_DIR
from loopengt_core.service.workspace import NotAGitRepository, WorkspaceError
from loopengt_core.store.files import FileStore


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo")
    (root / "app.py").write_text("print('hi')\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def spec(workspace: str) -> Any:
    return load_spec(
        {
            "name": "w",
            "workspace": workspace,
            "agents": [{"name": "a"}],
            "steps": [{"name": "s", "agent": "a"}],
        }
    )


def test_a_snapshot_leaves_out_the_stores_folder_and_the_forks_worktrees(repo: Path) -> None:
    binding = WorkspaceBinding(FileStore(repo / "runs-store"), repo)
    before = binding.snapshot(repo).tree
    (repo / "runs-store").mkdir(exist_ok=True)
    (repo / "runs-store" / "extra.jsonl").write_text("{}\n")
    (repo / WORKTREES_DIR / "fork-1").mkdir(parents=True)
    (repo / WORKTREES_DIR / "fork-1" / "copy.py").write_text("print('fork')\n")
    assert binding.snapshot(repo).tree == before
    (repo / "new.py").write_text("x = 1\n")
    assert binding.snapshot(repo).tree != before


def test_a_new_run_starts_from_the_work_tree_as_its_spec_says(repo: Path, tmp_path: Path) -> None:
    inside = WorkspaceBinding(FileStore(tmp_path / "store"), repo)
    state = inside.start(spec("auto"))
    assert state is not None
    assert state.head == git(repo, "rev-parse", "HEAD").strip()
    assert state.tree == git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert inside.start(spec("none")) is None

    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    outside = WorkspaceBinding(FileStore(tmp_path / "store2"), elsewhere)
    assert outside.start(spec("auto")) is None
    with pytest.raises(NotAGitRepository, match="workspace: git needs a git work tree"):
        outside.start(spec("git"))


def test_a_forks_worktree_is_made_at_the_checkpoints_commit(repo: Path, tmp_path: Path) -> None:
    binding = WorkspaceBinding(FileStore(tmp_path / "store"), repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    kept = RunState.model_construct(
        workspace=WorkspaceRecord(
            root=str(repo), head=head, tree=git(repo, "rev-parse", "HEAD^{tree}").strip(), commit=head
        )
    )
    (repo / "app.py").write_text(
        "print('changed since')\n"
    )  # the fork starts from the checkpoint, not from now
    made = binding.add_worktree("run-1", "cp-1", kept, tmp_path / "fork")
    assert made.tree == git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert (tmp_path / "fork" / "app.py").read_text() == "print('hi')\n"

    nothing_kept = RunState.model_construct(workspace=None)
    with pytest.raises(WorkspaceError, match="keeps no files"):
        binding.add_worktree("run-1", "cp-2", nothing_kept, tmp_path / "fork-2")
    assert not (tmp_path / "fork-2").exists()
