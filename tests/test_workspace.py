"""Git-aware runs on real temporary repositories: recorded trees, checkpoints that keep the code,
drift, resume with accept_drift, forks into worktrees, and the user's branch, index and stash untouched.

Every check of a recorded tree is independent of loopengt's own code: the tree is checked out with
plain git (`read-tree` + `checkout-index` into another directory) and compared byte for byte with the
files on disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from loops import GIT_ENV, git, init_repo
from mcp_helpers import assert_tool_error, ok, stdio_client

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.model.events import event_data
from loopengt_core.model.state import project_run
from loopengt_core.service import workspace
from loopengt_core.service.runs import Runs
from loopengt_core.service.workspace import NotAGitRepository, WorkspaceDrift, WorkspaceError
from loopengt_core.store.files import FileStore

PY = sys.executable

SPEC: dict[str, Any] = {
    "name": "edits",
    "agents": [{"name": "coder"}],
    "steps": [
        {"name": "one", "agent": "coder"},
        {"name": "two", "agent": "coder"},
        {"name": "three", "agent": "coder"},
    ],
}

# custom: triage routes to `fix` (an agent step) or `write_docs` (a command step that writes a file).
ROUTED: dict[str, Any] = {
    "name": "routed",
    "pattern": "custom",
    "agents": [{"name": "coder"}],
    "steps": [
        {
            "name": "triage",
            "agent": "coder",
            "routes": {"field": "kind", "map": {"bug": "fix", "docs": "write_docs"}},
        },
        {"name": "fix", "agent": "coder"},
        {"name": "write_docs", "run": [PY, "-c", "open('docs.txt', 'w').write('written by the loop\\n')"]},
    ],
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a commit, a nested dir, a binary file, ignored files and an untracked file."""
    root = init_repo(tmp_path / "repo")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("def f():\n    return 1\n")
    (root / "README.md").write_text("# demo\n")
    (root / "data.bin").write_bytes(bytes(range(256)) * 40)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    (root / "notes.txt").write_text("untracked, not ignored\n")
    (root / "debug.log").write_text("ignored\n")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_bytes(b"\x00ignored")
    return root


def make_runs(tmp_path: Path, cwd: Path, store: Path | None = None) -> Runs:
    return Runs(FileStore(store or tmp_path / "store"), cwd=cwd, allow_inline_commands=True)


def is_ignored(rel: str) -> bool:
    return rel.endswith(".log") or rel.startswith("build/")


def disk_files(root: Path, *, skip: tuple[str, ...] = (".git", ".loopengt")) -> dict[str, bytes]:
    """The files a tree of `root` should hold: everything but .git, the store and ignored files."""
    out: dict[str, bytes] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in skip or path.is_dir() or is_ignored(rel):
            continue
        out[rel] = path.read_bytes()
    return out


def tree_files(repo: Path, tree: str, dest: Path) -> dict[str, bytes]:
    """Check `tree` out with plain git into `dest` (a scratch index, never the repository's)."""
    env = {**GIT_ENV, "GIT_INDEX_FILE": str(dest.parent / f"{dest.name}.index")}
    git(repo, "read-tree", tree, env=env)
    git(repo, "checkout-index", "-a", f"--prefix={dest}/", env=env)
    return disk_files(dest, skip=())


def events_of(runs: Runs, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [event_data(e) for e in runs.trace(run_id) if e.type == kind]


def user_state(repo: Path) -> dict[str, Any]:
    """What a run must never change: the index bytes, the branch, HEAD, the stash, refs/heads."""
    return {
        "index": (repo / ".git" / "index").read_bytes(),
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "head": git(repo, "rev-parse", "HEAD"),
        "stash": git(repo, "stash", "list"),
        "heads": git(repo, "for-each-ref", "refs/heads"),
    }


# --- recording ------------------------------------------------------------------------------------


def test_each_step_records_the_tree_git_sees_after_the_agents_edits(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo, store=repo / ".loopengt")  # the store inside the work tree is left out
    view = runs.start_run(spec=SPEC)
    assert view.workspace is not None
    assert view.workspace.root == str(repo)
    assert view.workspace.head == git(repo, "rev-parse", "HEAD").strip()
    started = event_data(runs.trace(view.run_id)[0])["workspace"]
    checks = [started["tree"]]
    assert tree_files(repo, started["tree"], tmp_path / "t0") == disk_files(repo)

    edits = [
        lambda: (repo / "src" / "pkg" / "mod.py").write_text("def f():\n    return 2\n"),
        lambda: ((repo / "README.md").unlink(), (repo / "src" / "new.py").write_text("x = 1\n")),
        lambda: (repo / "data.bin").write_bytes(b"\xff\xfe" * 5000),
    ]
    for index, (task, edit) in enumerate(zip(["one#1", "two#1", "three#1"], edits, strict=True), start=1):
        edit()
        (repo / f"scratch{index}.log").write_text("ignored noise\n")
        answer = runs.step(view.run_id, task, {"done": index})
        recorded = events_of(runs, view.run_id, "output_submitted")[-1]["workspace"]
        assert recorded["tree"] not in checks, "every edit gives a new tree"
        checks.append(recorded["tree"])
        assert tree_files(repo, recorded["tree"], tmp_path / f"t{index}") == disk_files(repo)
        assert answer.workspace is not None
        assert answer.workspace.tree == recorded["tree"]
        assert answer.workspace.drift is False
    assert answer.status == "completed"
    assert ".loopengt/runs" not in git(repo, "ls-tree", "-r", "--name-only", checks[-1])
    # replay (a fresh service, the fold of the log) never runs git: it only reads the events
    state = project_run(runs.trace(view.run_id))
    assert state.workspace is not None
    assert state.workspace.tree == checks[-1]


def test_a_whole_run_leaves_the_users_branch_index_and_stash_alone(repo: Path, tmp_path: Path) -> None:
    (repo / "README.md").write_text("# stashed\n")
    git(repo, "stash", "push", "-q", "-m", "user stash")
    (repo / "README.md").write_text("# staged\n")
    git(repo, "add", "README.md")  # a staged change ...
    (repo / "README.md").write_text("# staged, then edited again\n")  # ... and an unstaged one on top
    before = user_state(repo)
    status = git(repo, "status", "--porcelain")
    before["index"] = (repo / ".git" / "index").read_bytes()  # git status may refresh the stat cache

    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec=SPEC)
    (repo / "src" / "pkg" / "mod.py").write_text("changed\n")
    runs.step(view.run_id, "one#1", {})
    runs.get_run(view.run_id)
    runs.checkpoint(view.run_id, "mid")
    (repo / "extra.py").write_text("new\n")
    runs.resume(view.run_id, accept_drift=True)
    runs.step(view.run_id, "two#1", {})
    assert runs.step(view.run_id, "three#1", {}).status == "completed"
    assert runs.diff(view.run_id, stat=True)

    assert user_state(repo) == before
    assert git(repo, "diff", "--cached", "--name-only") == "README.md\n"
    after = set(git(repo, "status", "--porcelain").splitlines())
    assert after == set(status.splitlines()) | {" M src/pkg/mod.py", "?? extra.py"}
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/loopengt")
    assert refs == f"refs/loopengt/{view.run_id}/cp-1\n"


# --- drift ----------------------------------------------------------------------------------------


def test_drift_between_steps_is_named_in_get_run_and_next_action(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec=SPEC).run_id
    runs.step(run_id, "one#1", {})
    clean = runs.get_run(run_id)
    assert clean.workspace is not None
    assert clean.workspace.drift is False
    assert clean.workspace.changed == []

    (repo / "src" / "pkg" / "mod.py").write_text("edited by hand\n")
    (repo / "fresh.txt").write_text("new\n")
    (repo / "ignored.log").write_text("not drift\n")
    view = runs.get_run(run_id)
    assert view.workspace is not None
    assert view.workspace.drift is True
    assert view.workspace.changed == ["fresh.txt", "src/pkg/mod.py"]
    assert "Files changed outside the loop since the last recorded step: fresh.txt, src/pkg/mod.py" in (
        view.next_action
    )
    assert "two#1" in view.next_action  # the usual instruction follows

    # submitting records the files as they are: no drift any more
    answer = runs.step(run_id, "two#1", {})
    assert answer.workspace is not None
    assert answer.workspace.drift is False
    assert "Files changed" not in answer.next_action


def test_resume_refuses_drift_unless_accepted(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec=SPEC).run_id
    runs.step(run_id, "one#1", {})
    before = len(runs.trace(run_id))
    assert runs.resume(run_id).status == "running"  # no drift: resume just continues

    (repo / "README.md").write_text("changed while nobody watched\n")
    (repo / "src" / "pkg" / "mod.py").unlink()
    with pytest.raises(WorkspaceDrift) as refused:
        runs.resume(run_id)
    message = str(refused.value)
    assert "README.md, src/pkg/mod.py" in message
    assert "accept_drift=true" in message
    assert "--accept-drift" in message
    assert refused.value.changed == ["README.md", "src/pkg/mod.py"]
    assert len(runs.trace(run_id)) == before + 1  # only the first resume's run_resumed

    view = runs.resume(run_id, accept_drift=True)
    assert view.workspace is not None
    assert view.workspace.drift is False
    accepted = events_of(runs, run_id, "workspace_accepted")
    assert len(accepted) == 1
    assert accepted[0]["changed"] == ["README.md", "src/pkg/mod.py"]
    assert tree_files(repo, accepted[0]["tree"], tmp_path / "accepted") == disk_files(repo)
    assert runs.resume(run_id).status == "running"  # accepted: nothing to refuse any more
    assert runs.step(run_id, "two#1", {}).status == "running"


def test_resume_cli_accept_drift(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_id = make_runs(tmp_path, repo).start_run(spec=SPEC).run_id
    (repo / "README.md").write_text("changed\n")
    cli = [str(Path(PY).parent / "loopengt")]
    refused = subprocess.run(
        [*cli, "resume", run_id, "--store", str(store)], cwd=repo, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert "README.md" in refused.stderr
    assert "--accept-drift" in refused.stderr
    ok = subprocess.run(
        [*cli, "resume", run_id, "--accept-drift", "--store", str(store)],
        cwd=repo,
        check=False,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    diff = subprocess.run(
        [*cli, "diff", run_id, "--store", str(store)], cwd=repo, capture_output=True, text=True, check=False
    )
    assert diff.returncode == 0
    assert "+changed" in diff.stdout
    assert "-# demo" in diff.stdout


# --- checkpoints and forks ------------------------------------------------------------------------


def test_a_checkpoint_restored_into_a_worktree_has_the_same_files_byte_for_byte(
    repo: Path, tmp_path: Path
) -> None:
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec=SPEC).run_id
    (repo / "src" / "pkg" / "mod.py").write_text("def f():\n    return 42\n")
    (repo / "src" / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "src" / "tool.sh").chmod(0o755)
    (repo / "blob.bin").write_bytes(os.urandom(300_000))
    runs.step(run_id, "one#1", {})
    expected = disk_files(repo)
    info = runs.checkpoint(run_id, "after one")
    assert info.commit is not None
    assert [c.commit for c in runs.list_checkpoints(run_id)] == [info.commit]
    assert git(repo, "rev-parse", f"refs/loopengt/{run_id}/cp-1").strip() == info.commit
    assert git(repo, "rev-parse", f"{info.commit}^").strip() == git(repo, "rev-parse", "HEAD").strip()

    (repo / "src" / "pkg" / "mod.py").write_text("later edit\n")  # the checkpoint keeps the old one
    fork = runs.resume(run_id, info.checkpoint_id, worktree=str(tmp_path / "fork"))
    worktree = tmp_path / "fork"
    assert fork.parent_run_id == run_id
    assert fork.workspace is not None
    assert fork.workspace.root == str(worktree)
    assert fork.workspace.drift is False
    assert disk_files(worktree) == expected
    assert not (worktree / "debug.log").exists()
    assert not (worktree / "build").exists()
    assert os.access(worktree / "src" / "tool.sh", os.X_OK)
    assert [t.task_id for t in fork.tasks] == ["two#1"]


def test_a_fork_in_a_worktree_takes_another_route_while_the_original_completes_its_own(
    repo: Path, tmp_path: Path
) -> None:
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec=ROUTED).run_id
    info = runs.checkpoint(run_id, "before triage")
    worktree = tmp_path / "docs-fork"
    fork = runs.resume(run_id, info.checkpoint_id, worktree=str(worktree))

    # the original: a bug, fixed by the agent in the repository
    (repo / "src" / "pkg" / "mod.py").write_text("fixed\n")
    runs.step(run_id, "triage#1", {"kind": "bug"})
    done = runs.step(run_id, "fix#1", {"summary": "fixed"})
    assert done.status == "completed"
    assert [(s.name, s.status) for s in done.steps] == [
        ("triage", "completed"),
        ("fix", "completed"),
        ("write_docs", "skipped"),
    ]

    # the fork: docs; its command step runs in the worktree, not in the repository
    (worktree / "README.md").write_text("# demo, triaged in the fork\n")
    forked = runs.step(fork.run_id, "triage#1", {"kind": "docs"})
    assert forked.status == "completed", forked.error
    assert [(s.name, s.status) for s in forked.steps] == [
        ("triage", "completed"),
        ("fix", "skipped"),
        ("write_docs", "completed"),
    ]
    assert (worktree / "docs.txt").read_text() == "written by the loop\n"
    assert not (repo / "docs.txt").exists()
    assert (worktree / "src" / "pkg" / "mod.py").read_text() == "def f():\n    return 1\n"
    finished = events_of(runs, fork.run_id, "command_finished")[-1]["workspace"]
    assert tree_files(repo, finished["tree"], tmp_path / "fork-tree") == disk_files(worktree)
    assert forked.workspace is not None
    assert forked.workspace.tree == finished["tree"]
    assert "docs.txt" in runs.diff(fork.run_id, stat=True)
    assert "docs.txt" not in runs.diff(run_id)


def test_an_existing_worktree_path_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec=SPEC).run_id
    runs.checkpoint(run_id)
    taken = tmp_path / "taken"
    taken.mkdir()
    with pytest.raises(InvalidArgument, match=r"worktree path .*taken already exists; give a new path"):
        runs.resume(run_id, "cp-1", worktree=str(taken))
    assert len(runs.list_runs()) == 1  # no fork was created
    with pytest.raises(InvalidArgument, match="worktree needs checkpoint_id"):
        runs.resume(run_id, worktree=str(tmp_path / "new"))


def test_a_worktree_needs_a_checkpoint_that_kept_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    runs = make_runs(tmp_path, plain)
    run_id = runs.start_run(spec=SPEC).run_id
    runs.checkpoint(run_id)
    with pytest.raises(WorkspaceError, match="keeps no files"):
        runs.resume(run_id, "cp-1", worktree=str(tmp_path / "wt"))


# --- modes and edges ------------------------------------------------------------------------------


def test_workspace_git_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    runs = make_runs(tmp_path, plain)
    with pytest.raises(NotAGitRepository, match=r"workspace: git needs a git work tree, but .*plain") as err:
        runs.start_run(spec={**SPEC, "workspace": "git"})
    assert "git init" in str(err.value)
    assert "workspace: auto or none" in str(err.value)
    assert runs.list_runs() == []
    # auto outside a repository: a run without files
    view = runs.start_run(spec=SPEC)
    assert view.workspace is None
    assert "workspace" not in event_data(runs.trace(view.run_id)[0])


def test_workspace_none_records_nothing_even_in_a_repository(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec={**SPEC, "workspace": "none"})
    (repo / "README.md").write_text("edited\n")
    answer = runs.step(view.run_id, "one#1", {})
    runs.checkpoint(view.run_id)
    assert view.workspace is None
    assert answer.workspace is None
    assert all("workspace" not in event_data(e) for e in runs.trace(view.run_id))
    assert runs.resume(view.run_id).status == "running"
    assert git(repo, "for-each-ref", "refs/loopengt") == ""
    with pytest.raises(WorkspaceError, match="records no files"):
        runs.diff(view.run_id)


def test_a_repository_without_commits_and_a_merge_in_progress(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "main")
    (fresh / "a.txt").write_text("first\n")
    runs = make_runs(tmp_path, fresh)
    view = runs.start_run(spec=SPEC)
    assert view.workspace is not None
    assert view.workspace.head is None
    info = runs.checkpoint(view.run_id)
    assert info.commit
    assert git(fresh, "rev-list", "--count", info.commit).strip() == "1"

    # a conflicted merge: the files are recorded as they are on disk; the user's index keeps the conflict
    for key, value in (("user.name", "T"), ("user.email", "t@e"), ("commit.gpgsign", "false")):
        git(fresh, "config", key, value)
    git(fresh, "add", "-A")
    git(fresh, "commit", "-q", "-m", "one")
    git(fresh, "checkout", "-q", "-b", "other")
    (fresh / "a.txt").write_text("theirs\n")
    git(fresh, "commit", "-q", "-am", "theirs")
    git(fresh, "checkout", "-q", "main")
    (fresh / "a.txt").write_text("ours\n")
    git(fresh, "commit", "-q", "-am", "ours")
    subprocess.run(["git", "merge", "-q", "other"], cwd=fresh, env=GIT_ENV, capture_output=True, check=False)
    assert git(fresh, "status", "--porcelain") == "UU a.txt\n"
    state = workspace.snapshot(fresh)
    assert "<<<<<<<" in git(fresh, "cat-file", "-p", f"{state.tree}:a.txt")
    assert git(fresh, "status", "--porcelain") == "UU a.txt\n"


def test_a_missing_work_tree_is_reported_not_crashed(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec=SPEC).run_id
    runs.checkpoint(run_id)
    worktree = tmp_path / "gone"
    fork = runs.resume(run_id, "cp-1", worktree=str(worktree))
    git(repo, "worktree", "remove", "--force", str(worktree))
    view = runs.get_run(fork.run_id)
    assert view.workspace is not None
    assert view.workspace.error is not None
    assert "does not exist" in view.next_action
    with pytest.raises(WorkspaceError, match="does not exist"):
        runs.step(fork.run_id, "one#1", {})


def test_a_missing_git_program_is_a_clear_error_for_git_and_ignored_by_auto(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    runs = make_runs(tmp_path, repo)
    with pytest.raises(workspace.GitMissing, match=r"the `git` program is not on PATH: install git, or set"):
        runs.start_run(spec={**SPEC, "workspace": "git"})
    assert runs.start_run(spec=SPEC).workspace is None


# --- headless and MCP -----------------------------------------------------------------------------

AGENT = """
import json, pathlib, sys
task = json.load(sys.stdin)
pathlib.Path(f"{task['step']}.txt").write_text(f"{task['task_id']} in " + str(pathlib.Path.cwd()) + "\\n")
print(json.dumps({"kind": "docs"} if task["step"] == "triage" else {"done": True}))
"""


def test_headless_run_of_a_fork_works_in_its_worktree(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec=ROUTED).run_id
    runs.checkpoint(run_id)
    worktree = tmp_path / "headless-fork"
    fork = runs.resume(run_id, "cp-1", worktree=str(worktree))
    (tmp_path / "agent.py").write_text(AGENT)
    done = subprocess.run(
        [
            str(Path(PY).parent / "loopengt"),
            "run",
            "--resume",
            fork.run_id,
            "--store",
            str(store),
            "--agent",
            f"{PY} {tmp_path / 'agent.py'}",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (worktree / "triage.txt").read_text() == f"triage#1 in {worktree}\n"
    assert (worktree / "docs.txt").exists()
    assert not (repo / "triage.txt").exists()
    assert not (repo / "docs.txt").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_resume_takes_accept_drift_and_worktree(repo: Path, tmp_path: Path) -> None:
    async with stdio_client(tmp_path / "store", repo, "legacy") as client:
        view = ok(await client.call_tool("start_run", {"spec": SPEC}))
        run_id = view["run_id"]
        assert view["workspace"]["root"] == str(repo)
        (repo / "README.md").write_text("changed outside\n")
        drifted = ok(await client.call_tool("get_run", {"run_id": run_id}))
        assert drifted["workspace"]["drift"] is True
        assert drifted["workspace"]["changed"] == ["README.md"]
        assert "README.md" in drifted["next_action"]
        refused = await client.call_tool("resume", {"run_id": run_id})
        assert_tool_error(refused, "README.md", "accept_drift=true")
        accepted = ok(await client.call_tool("resume", {"run_id": run_id, "accept_drift": True}))
        assert accepted["workspace"]["drift"] is False
        point = ok(await client.call_tool("checkpoint", {"run_id": run_id}))
        assert point["commit"]
        # a client's worktree goes into the project's worktree folder, and the run's files leave it out
        worktree = repo.resolve() / ".loopengt" / "worktrees" / "mcp-fork"
        fork = ok(
            await client.call_tool(
                "resume", {"run_id": run_id, "checkpoint_id": point["checkpoint_id"], "worktree": "mcp-fork"}
            )
        )
        assert fork["workspace"]["root"] == str(worktree)
        assert (worktree / "README.md").read_text() == "changed outside\n"
        assert ok(await client.call_tool("get_run", {"run_id": run_id}))["workspace"]["drift"] is False
        again = await client.call_tool(
            "resume", {"run_id": run_id, "checkpoint_id": point["checkpoint_id"], "worktree": str(worktree)}
        )
        assert_tool_error(again, "already exists")


def test_a_run_in_a_subdirectory_records_the_whole_work_tree(repo: Path, tmp_path: Path) -> None:
    sub = repo / "src"
    runs = make_runs(tmp_path, sub, store=repo / ".loopengt")  # the store: in the work tree, not in sub
    run_id = runs.start_run(spec=ROUTED).run_id
    runs.checkpoint(run_id)
    (repo / "README.md").write_text("edited outside the run's directory\n")
    drifted = runs.get_run(run_id).workspace
    assert drifted is not None
    assert drifted.changed == ["README.md"]  # and nothing of the store
    runs.step(run_id, "triage#1", {"kind": "bug"})
    recorded = events_of(runs, run_id, "output_submitted")[-1]["workspace"]
    assert tree_files(repo, recorded["tree"], tmp_path / "whole") == disk_files(repo)

    worktree = tmp_path / "sub-fork"
    fork = runs.resume(run_id, "cp-1", worktree=str(worktree))
    assert fork.workspace is not None
    assert fork.workspace.root == str(worktree / "src")
    done = runs.step(fork.run_id, "triage#1", {"kind": "docs"})
    assert done.status == "completed"
    assert (worktree / "src" / "docs.txt").exists()  # the command ran in the fork's src/


# --- the private index kept between snapshots ----------------------------------------------------------


def fresh_tree(repo: Path, tmp_path: Path) -> str:
    """The tree plain git builds from a throwaway copy of the user's index: what a snapshot must equal."""
    scratch = tmp_path / "fresh.index"
    scratch.write_bytes((repo / ".git" / "index").read_bytes())
    env = {**GIT_ENV, "GIT_INDEX_FILE": str(scratch)}
    git(repo, "add", "-A", env=env)
    tree = git(repo, "write-tree", env=env).strip()
    scratch.unlink()
    return tree


def test_snapshots_through_the_kept_index_equal_a_fresh_one_after_each_kind_of_edit(
    repo: Path, tmp_path: Path
) -> None:
    before = user_state(repo)
    edits = [
        lambda: (repo / "README.md").write_text("# changed\n"),
        lambda: (repo / "new.txt").write_text("new untracked file\n"),
        (repo / "src" / "pkg" / "mod.py").unlink,
        (repo / "new.txt").unlink,
        lambda: (repo / "more.log").write_text("ignored\n"),
        lambda: (repo / "src" / "pkg" / "mod.py").write_text("back, different\n"),
        # same size and (likely) same mtime second as the previous content: git's racy-clean check
        lambda: (repo / "src" / "pkg" / "mod.py").write_text("back, differenT\n"),
    ]
    assert workspace.snapshot(repo).tree == fresh_tree(repo, tmp_path)
    for edit in edits:
        edit()
        assert workspace.snapshot(repo).tree == fresh_tree(repo, tmp_path)
    kept = list((repo / ".git" / "loopengt").iterdir())
    assert len(kept) == 1  # one kept index, no scratch left behind
    assert kept[0].name.startswith("index-")
    assert user_state(repo) == before


def test_a_file_the_user_starts_ignoring_or_commits_is_seen_as_the_user_sees_it(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "scratch.txt").write_text("recorded while untracked\n")
    first = workspace.snapshot(repo).tree
    assert "scratch.txt" in git(repo, "ls-tree", "--name-only", first)
    (repo / ".gitignore").write_text("*.log\nbuild/\nscratch.txt\n")  # now ignored: left out again
    second = workspace.snapshot(repo).tree
    assert "scratch.txt" not in git(repo, "ls-tree", "--name-only", second)
    assert second == fresh_tree(repo, tmp_path)
    git(repo, "add", "-f", "scratch.txt")  # tracked on purpose by the user despite the ignore rule
    assert "scratch.txt" in git(repo, "ls-tree", "--name-only", workspace.snapshot(repo).tree)
    assert workspace.snapshot(repo).tree == fresh_tree(repo, tmp_path)


def test_concurrent_snapshots_agree_and_never_fail_on_an_index_lock(repo: Path, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    (repo / "README.md").write_text("# edited before the race\n")
    with ThreadPoolExecutor(8) as pool:
        trees = set(pool.map(lambda _: workspace.snapshot(repo).tree, range(24)))
    assert trees == {fresh_tree(repo, tmp_path)}


def test_a_killed_snapshots_scratch_directory_is_cleared_an_hour_later(repo: Path) -> None:
    workspace.snapshot(repo)
    private = repo / ".git" / "loopengt"
    old, recent = private / "tmp-killed", private / "tmp-running"
    for path in (old, recent):
        path.mkdir()
        (path / "index").write_bytes(b"partial")
    hour_ago = time.time() - 2 * workspace.STALE_SCRATCH_SECONDS
    os.utime(old, (hour_ago, hour_ago))
    (repo / "README.md").write_text("# changed\n")
    workspace.snapshot(repo)
    assert not old.exists()
    assert recent.exists()


def names(repo: Path, tree: str) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", tree).split()


def test_a_snapshot_recovers_when_git_gc_pruned_what_the_kept_index_names(repo: Path) -> None:
    old = time.time() - 100
    os.utime(repo / "notes.txt", (old, old))  # untracked, unchanged: the kept index never rewrites it
    first = workspace.snapshot(repo)
    blob = git(repo, "rev-parse", f"{first.tree}:notes.txt").strip()
    git(repo, "gc", "-q", "--prune=now")  # nothing reachable names the snapshot's blobs
    assert subprocess.run(["git", "cat-file", "-e", blob], cwd=repo, check=False).returncode != 0
    again = workspace.snapshot(repo)
    assert again.tree == first.tree
    git(repo, "cat-file", "-e", blob)  # written again


def test_snapshots_with_different_exclusions_do_not_share_a_kept_index(repo: Path) -> None:
    (repo / "store").mkdir()
    (repo / "store" / "events.jsonl").write_text("1\n")
    assert "store/events.jsonl" in names(
        repo, workspace.snapshot(repo).tree
    )  # e.g. a PostgreSQL-store process
    excluded = workspace.snapshot(repo, exclude=[repo / "store"])  # a file-store process leaves its store out
    assert not any(n.startswith("store/") for n in names(repo, excluded.tree))


def test_a_file_a_nested_gitignore_starts_ignoring_leaves_the_tree_at_once(repo: Path) -> None:
    (repo / "src" / "pkg" / ".env").write_text("SECRET=1\n")
    assert "src/pkg/.env" in names(repo, workspace.snapshot(repo).tree)
    (repo / "src" / "pkg" / ".gitignore").write_text(".env\n")
    ignored = workspace.snapshot(repo)
    assert "src/pkg/.env" not in names(repo, ignored.tree)
    assert "src/pkg/.gitignore" in names(repo, ignored.tree)
    git(repo, "add", "src/pkg/.gitignore")  # the user's index changes: a reseed finds nothing new
    assert workspace.changed_paths(repo, ignored.tree, workspace.snapshot(repo).tree) == []


def test_a_repository_made_anew_under_a_cached_root_is_seen_as_it_is_now(tmp_path: Path) -> None:
    top = tmp_path / "top"
    sub = top / "sub"
    sub.mkdir(parents=True)
    git(top, "init", "-q")
    (sub / "a.txt").write_text("a")
    git(top, "add", ".")
    git(top, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "c")
    workspace.snapshot(sub)  # the layout of `sub` (top's repository) is now cached in this process
    shutil.rmtree(top / ".git")
    git(sub, "init", "-q")
    (sub / ".gitignore").write_text("*.cfg\n")
    (sub / "app.cfg").write_text("force-added despite the ignore rule")
    git(sub, "add", "-f", ".")
    git(sub, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "c")
    now = workspace.snapshot(sub)
    assert names(sub, now.tree) == [".gitignore", "a.txt", "app.cfg"]
    assert now.head == git(sub, "rev-parse", "HEAD").strip()
