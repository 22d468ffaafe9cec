"""Git-aware runs in the repositories users have, each a real temporary repository driven through the
service with `workspace: auto`: the store inside the work tree (ignored or not) or outside it, a run
in a subfolder, no commits yet, a detached HEAD, a submodule, names with spaces and non-ASCII letters,
a .gitignore that ignores most of the tree; the README's example loop through the real CLI; and what a
run says, and what still moves it on, when the files truly cannot be recorded (at start, and mid-run).

Every recorded tree is read back with plain git (`ls-tree`), not with loopengt's own code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.model.events import event_data
from loopengt_core.service import workspace
from loopengt_core.service.runs import Runs
from loopengt_core.service.workspace import WorkspaceDrift, WorkspaceError
from loopengt_core.store.files import FileStore

PY = sys.executable
REPO_ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
EDIT = "edited file.txt"  # the agent's edit, in the run's folder (a name with a space)

# an agent step whose command gate checks the agent's edit, then a command step that writes a file,
# then another agent step
SPEC: dict[str, Any] = {
    "name": "repo-kinds",
    "agents": [{"name": "coder"}],
    "steps": [
        {"name": "edit", "agent": "coder", "verification_gates": ["edited"]},
        {"name": "build", "run": [PY, "-c", "open('built.txt', 'w').write('built by the loop\\n')"]},
        {"name": "review", "agent": "coder"},
    ],
    "policy": {
        "verification_gates": [
            {
                "name": "edited",
                "command": [PY, "-c", f"import os, sys; sys.exit(0 if os.path.exists({EDIT!r}) else 1)"],
                "on_failure": "retry",
            }
        ]
    },
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode("utf-8", "replace")


def new_repo(path: Path, files: dict[str, str] | None = None, *, commit: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for key, value in (
        ("user.name", "Test User"),
        ("user.email", "t@example.com"),
        ("commit.gpgsign", "false"),
    ):
        git(path, "config", key, value)
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    if commit:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
    return path


def names(repo: Path, tree: str) -> set[str]:
    """Every path a tree holds (files, links and submodule commits), as git lists it."""
    out = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", tree],
        cwd=repo,
        env=GIT_ENV,
        capture_output=True,
        check=True,
    ).stdout
    return {os.fsdecode(p) for p in out.split(b"\0") if p}


def recorded_trees(runs: Runs, run_id: str) -> list[str]:
    """The tree of every event that recorded the run's files, in order."""
    return [event_data(e)["workspace"]["tree"] for e in runs.trace(run_id) if "workspace" in event_data(e)]


def make_runs(cwd: Path, store: Path) -> Runs:
    return Runs(FileStore(store), cwd=cwd, allow_inline_commands=True)


def exercise(runs: Runs, outside: Path) -> tuple[str, list[str]]:
    """Drive SPEC in `runs.cwd`: start, the agent's edit checked by a command gate, the command step,
    a checkpoint, drift from `outside` (a file the loop does not write), the last step. Returns the run
    id and every tree it recorded (the last one: after the drift was submitted with the last step)."""
    cwd = runs.cwd
    view = runs.start_run(spec=SPEC)
    assert view.workspace is not None, "a run in a git work tree records its files"
    assert view.workspace.root == str(cwd)
    run_id = view.run_id
    (cwd / EDIT).write_text("the agent's edit\n")
    answer = runs.step(run_id, "edit#1", {"done": True})
    assert [(g.name, g.passed) for g in answer.gate_results] == [("edited", True)]
    assert answer.status == "running"
    assert [t.task_id for t in answer.tasks] == ["review#1"]
    assert (
        cwd / "built.txt"
    ).read_text() == "built by the loop\n"  # the command step ran in the run's folder
    assert answer.workspace is not None
    assert answer.workspace.drift is False

    info = runs.checkpoint(run_id, "after build")
    assert info.commit is not None
    before, kept = recorded_trees(runs, run_id)[-2:]  # the command step's tree, the checkpoint's
    assert git(cwd, "rev-parse", f"{info.commit}^{{tree}}").strip() == kept == before

    outside.write_text(f"changed outside the loop during {run_id}\n")
    top = Path(git(cwd, "rev-parse", "--show-toplevel").strip())
    drifted = runs.get_run(run_id).workspace
    assert drifted is not None
    assert drifted.drift is True
    assert drifted.changed == [outside.relative_to(top).as_posix()]
    with pytest.raises(WorkspaceDrift):
        runs.resume(run_id)
    done = runs.step(run_id, "review#1", {"ok": True})
    assert done.status == "completed"
    return run_id, recorded_trees(runs, run_id)


def assert_trees(repo: Path, trees: list[str], *, never: tuple[str, ...], last_holds: set[str]) -> None:
    """No recorded tree holds a path under any of `never`; the last one holds every path of `last_holds`."""
    assert len(trees) >= 5  # start, submission, gate, command step, checkpoint, last submission
    for tree in trees:
        held = names(repo, tree)
        leaked = sorted(p for p in held for n in never if p == n or p.startswith(n.rstrip("/") + "/"))
        assert not leaked, f"tree {tree} holds {leaked}"
    assert last_holds <= names(repo, trees[-1])


# --- the repositories users have -------------------------------------------------------------------


def test_store_inside_the_work_tree_and_gitignored(tmp_path: Path) -> None:
    """The README's setting: `.loopengt/` in .gitignore (git's add exits 1 on an ignored exclusion)."""
    repo = new_repo(tmp_path / "repo", {".gitignore": ".loopengt/\n*.log\n", "app.py": "x = 1\n"})
    (repo / "debug.log").write_text("ignored\n")
    (repo / ".loopengt").mkdir()  # the store exists before the run starts, as on a second run
    runs = make_runs(repo, repo / ".loopengt")
    run_id, trees = exercise(runs, repo / "app.py")
    assert (repo / ".loopengt" / "runs" / run_id).is_dir()
    assert_trees(
        repo, trees, never=(".loopengt", "debug.log"), last_holds={".gitignore", "app.py", EDIT, "built.txt"}
    )
    # a second run in the same store (which now holds the first run) starts and records alike
    again, trees = exercise(runs, repo / "app.py")
    assert again != run_id
    assert_trees(repo, trees, never=(".loopengt", "debug.log"), last_holds={EDIT, "built.txt"})


@pytest.mark.parametrize(
    ("ignores", "store"),
    [("build/\n", "build/.loopengt"), (".loopengt/*\n", ".loopengt"), ("/*\n!/app.py\n!/.gitignore\n", "st")],
)
def test_store_ignored_by_other_patterns(tmp_path: Path, ignores: str, store: str) -> None:
    """Inside an ignored folder (git names the folder, not the store), its contents ignored but not the
    folder itself, and everything ignored but a few files."""
    repo = new_repo(tmp_path / "repo", {".gitignore": ignores, "app.py": "x = 1\n"})
    runs = make_runs(repo, repo / store)
    _, trees = exercise(runs, repo / "app.py")
    assert_trees(repo, trees, never=(store,), last_holds={".gitignore", "app.py"})


def test_store_inside_the_work_tree_not_ignored(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {".gitignore": "*.log\n", "app.py": "x = 1\n"})
    runs = make_runs(repo, repo / ".loopengt")
    _, trees = exercise(runs, repo / "app.py")
    assert_trees(repo, trees, never=(".loopengt",), last_holds={".gitignore", "app.py", EDIT, "built.txt"})
    assert "?? .loopengt/" in git(repo, "status", "--porcelain")  # the user's view of it is unchanged


def test_store_outside_the_work_tree(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    runs = make_runs(repo, tmp_path / "elsewhere" / "store")
    _, trees = exercise(runs, repo / "app.py")
    assert_trees(repo, trees, never=("elsewhere",), last_holds={"app.py", EDIT, "built.txt"})


def test_a_run_started_in_a_subfolder_with_its_store_there(tmp_path: Path) -> None:
    """`loopengt run` in pkg/sub: the default store is pkg/sub/.loopengt, ignored by the top .gitignore;
    the whole work tree is recorded, and a change outside the subfolder is drift."""
    repo = new_repo(
        tmp_path / "repo", {".gitignore": ".loopengt/\n", "README.md": "# top\n", "pkg/sub/mod.py": "y = 2\n"}
    )
    sub = repo / "pkg" / "sub"
    runs = make_runs(sub, sub / ".loopengt")
    _, trees = exercise(runs, repo / "README.md")
    assert_trees(
        repo,
        trees,
        never=("pkg/sub/.loopengt", ".loopengt"),
        last_holds={"README.md", "pkg/sub/mod.py", f"pkg/sub/{EDIT}", "pkg/sub/built.txt"},
    )


def test_a_repository_with_no_commits(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {".gitignore": ".loopengt/\n", "app.py": "x = 1\n"}, commit=False)
    runs = make_runs(repo, repo / ".loopengt")
    run_id, trees = exercise(runs, repo / "app.py")
    assert event_data(runs.trace(run_id)[0])["workspace"]["head"] is None
    commit = runs.list_checkpoints(run_id)[0].commit
    assert commit is not None
    assert git(repo, "rev-list", "--count", commit).strip() == "1"  # a root commit: there is no HEAD
    assert git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False) == ""  # still no commits
    assert_trees(repo, trees, never=(".loopengt",), last_holds={".gitignore", "app.py", EDIT, "built.txt"})


def test_a_detached_head(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {".gitignore": ".loopengt/\n", "app.py": "x = 1\n"})
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "app.py").write_text("x = 2\n")
    git(repo, "commit", "-q", "-am", "second")
    git(repo, "checkout", "-q", "--detach", first)
    heads = git(repo, "for-each-ref", "refs/heads")
    runs = make_runs(repo, repo / ".loopengt")
    run_id, trees = exercise(runs, repo / "app.py")
    assert event_data(runs.trace(run_id)[0])["workspace"]["head"] == first
    commit = runs.list_checkpoints(run_id)[0].commit
    assert git(repo, "rev-parse", f"{commit}^").strip() == first  # the checkpoint's parent: the detached HEAD
    assert git(repo, "rev-parse", "HEAD").strip() == first  # still detached there, no branch moved
    assert git(repo, "symbolic-ref", "-q", "HEAD", check=False) == ""
    assert git(repo, "for-each-ref", "refs/heads") == heads
    assert_trees(repo, trees, never=(".loopengt",), last_holds={"app.py", EDIT, "built.txt"})


def test_a_repository_with_a_submodule_and_a_run_inside_the_submodule(tmp_path: Path) -> None:
    lib = new_repo(tmp_path / "lib-origin", {"lib.py": "z = 3\n"})
    main = new_repo(tmp_path / "main", {".gitignore": ".loopengt/\n", "app.py": "x = 1\n"})
    git(main, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(main, "commit", "-q", "-m", "add lib")
    lib_head = git(main / "lib", "rev-parse", "HEAD").strip()

    # in the superproject: the submodule is recorded as its commit (a gitlink), not as its files
    runs = make_runs(main, main / ".loopengt")
    _, trees = exercise(runs, main / "app.py")
    assert_trees(
        main, trees, never=(".loopengt", "lib/lib.py"), last_holds={".gitmodules", "lib", "app.py", EDIT}
    )
    assert git(main, "ls-tree", trees[-1], "lib").split()[:3] == ["160000", "commit", lib_head]

    # inside the submodule: its own work tree (its git dir lies in the superproject's .git/modules)
    inner = make_runs(main / "lib", tmp_path / "inner-store")
    _, trees = exercise(inner, main / "lib" / "lib.py")
    assert_trees(
        main / "lib", trees, never=("app.py", ".gitmodules"), last_holds={"lib.py", EDIT, "built.txt"}
    )


def test_names_with_spaces_and_non_ascii_letters(tmp_path: Path) -> None:
    """Also the store: an ignored folder whose name has a space and a non-ASCII letter."""
    repo = new_repo(
        tmp_path / "repo",
        {
            ".gitignore": "störe dir/\nignoriert ß.log\n",
            "dir with space/file ü.txt": "committed\n",
            "日本語.txt": "こんにちは\n",
        },
    )
    (repo / "naïve café.md").write_text("untracked, not ignored\n", encoding="utf-8")
    (repo / "ignoriert ß.log").write_text("ignored\n", encoding="utf-8")
    (repo / "quote\"and'apostrophe.txt").write_text("odd but legal\n")
    runs = make_runs(repo, repo / "störe dir")
    _, trees = exercise(runs, repo / "dir with space" / "file ü.txt")
    assert_trees(
        repo,
        trees,
        never=("störe dir", "ignoriert ß.log"),
        last_holds={
            "dir with space/file ü.txt",
            "日本語.txt",
            "naïve café.md",
            "quote\"and'apostrophe.txt",
            EDIT,
            "built.txt",
        },
    )


def test_a_gitignore_that_ignores_most_of_the_tree(tmp_path: Path) -> None:
    """Only .gitignore and src/ are the project; everything else (the store too) is ignored."""
    files = {".gitignore": "/*\n!/.gitignore\n!/src/\n", "src/main.py": "print('hi')\n"}
    files.update({f"data/part{i}.csv": f"{i},{i}\n" for i in range(30)})
    files.update({"build/out.bin": "built\n", "docs/index.md": "# docs\n", "top.txt": "ignored\n"})
    repo = new_repo(tmp_path / "repo", files)
    src = repo / "src"
    runs = make_runs(src, repo / ".loopengt")
    view = runs.start_run(spec=SPEC)
    assert view.workspace is not None
    (repo / "data" / "part0.csv").write_text("changed, but ignored\n")
    unchanged = runs.get_run(view.run_id).workspace
    assert unchanged is not None
    assert unchanged.drift is False  # an ignored file changed: no drift
    runs.cancel_run(view.run_id)

    _, trees = exercise(runs, src / "main.py")
    for tree in trees:
        assert all(p == ".gitignore" or p.startswith("src/") for p in names(repo, tree)), names(repo, tree)
    assert names(repo, trees[-1]) == {".gitignore", "src/main.py", f"src/{EDIT}", "src/built.txt"}


def test_the_example_loop_through_the_cli_in_a_repository_that_ignores_the_store(tmp_path: Path) -> None:
    """README command 1 as a user runs it: in a git repository whose .gitignore lists .loopengt/, with
    the default store (no --store)."""
    repo = new_repo(tmp_path / "project", {".gitignore": ".loopengt/\n", "README.md": "# mine\n"})
    shutil.copytree(REPO_ROOT / "examples", repo / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the example")
    bin_dir = tmp_path / "bin"  # `python` for the example's gate and command step, wherever PATH lacks one
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(PY)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), str(Path(PY).parent), os.environ.get("PATH", "")]),
        "HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    script = Path(PY).parent / "loopengt"
    loopengt = [str(script)] if script.exists() else [PY, "-m", "loopengt_server"]
    done = subprocess.run(
        [*loopengt, "run", "examples/loop.yaml", "--agent", f"{PY} examples/agent.py"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    runs = Runs(FileStore(repo / ".loopengt"), cwd=repo)
    [summary] = runs.list_runs()
    assert summary.status == "completed"
    trees = recorded_trees(runs, summary.run_id)
    assert len(trees) >= 4
    for tree in trees:
        assert not any(p.startswith(".loopengt/") for p in names(repo, tree))
    assert "greeting.txt" in names(repo, trees[-1])


# --- when the files truly cannot be recorded -----------------------------------------------------


def embed_repo_without_commits(repo: Path) -> None:
    """A folder that is a git repository of its own and has no commit: git cannot add it."""
    (repo / "vendor" / "thing").mkdir(parents=True)
    (repo / "vendor" / "thing" / "a.txt").write_text("a\n")
    git(repo / "vendor" / "thing", "init", "-q")


@pytest.mark.parametrize("mode", ["auto", "git"])
def test_a_workspace_that_cannot_be_recorded_starts_no_run_and_says_the_fix(
    tmp_path: Path, mode: str
) -> None:
    repo = new_repo(tmp_path / "repo", {".gitignore": ".loopengt/\n", "app.py": "x = 1\n"})
    embed_repo_without_commits(repo)
    runs = make_runs(repo, repo / ".loopengt")
    with pytest.raises(WorkspaceError) as err:
        runs.start_run(spec={**SPEC, "workspace": mode})
    message = str(err.value)
    assert message.startswith("No run was started: its files cannot be recorded:")
    assert "vendor/thing/" in message
    assert "commit in it, delete it or add it to .gitignore" in message
    assert "or set `workspace: none` in the spec" in message
    assert "The following paths are ignored" not in message  # git's notice about the store is no reason
    assert runs.list_runs() == []
    assert not (repo / ".loopengt" / "runs").exists() or not any((repo / ".loopengt" / "runs").iterdir())
    assert workspace.probe(repo, exclude=[repo / ".loopengt"]) is not None

    # the fix the message names works: the same start goes on
    (repo / ".gitignore").write_text(".loopengt/\nvendor/thing/\n")
    assert workspace.probe(repo, exclude=[repo / ".loopengt"]) is None
    assert runs.start_run(spec={**SPEC, "workspace": mode}).status == "running"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_named_at_start_and_mid_run(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {".gitignore": ".loopengt/\n", "app.py": "x = 1\n"})
    secret = repo / "secret.txt"
    secret.write_text("no one may read this\n")
    runs = make_runs(repo, repo / ".loopengt")
    try:
        secret.chmod(0)
        with pytest.raises(WorkspaceError, match="a file cannot be read: fix its permissions") as err:
            runs.start_run(spec=SPEC)
        assert "secret.txt" in str(err.value)
        assert runs.list_runs() == []
        secret.chmod(0o644)
        run_id = runs.start_run(spec=SPEC).run_id
        (repo / EDIT).write_text("the agent's edit\n")
        secret.write_text("changed, then locked\n")
        secret.chmod(0)
        with pytest.raises(WorkspaceError, match="The output for edit#1 was not taken"):
            runs.step(run_id, "edit#1", {})
    finally:
        secret.chmod(0o644)
    assert runs.step(run_id, "edit#1", {}).status == "running"


def test_a_repository_git_refuses_starts_no_run_and_names_safe_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("making a repository another user owns needs root")
    home = tmp_path / "home"  # no safe.directory from the user's or the system's git config
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    monkeypatch.delenv("SUDO_UID", raising=False)
    repo = new_repo(tmp_path / "theirs", {"app.py": "x = 1\n"})
    for folder, _, files in os.walk(repo):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            os.chown(name, 65534, 65534)
    env = {**GIT_ENV, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    refused = subprocess.run(
        ["git", "status"], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    if "dubious ownership" not in refused.stderr:
        pytest.skip(f"git does not refuse the repository here: {refused.stderr.strip()}")
    runs = make_runs(repo, tmp_path / "store")
    with pytest.raises(WorkspaceError, match="dubious ownership") as err:
        runs.start_run(spec=SPEC)  # workspace: auto, too: this is a repository, not a plain folder
    assert f"git config --global --add safe.directory {repo}" in str(err.value)
    assert runs.list_runs() == []
    problem = workspace.probe(repo)
    assert problem is not None
    assert "safe.directory" in problem


def test_git_missing_with_workspace_git_starts_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = new_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    runs = make_runs(repo, tmp_path / "store")
    with pytest.raises(workspace.GitMissing, match="install git"):
        runs.start_run(spec={**SPEC, "workspace": "git"})
    assert runs.list_runs() == []
    assert workspace.probe(repo, workspace="git") is not None
    assert workspace.probe(repo) is None  # auto: a run without recorded files


def test_a_snapshot_failing_mid_run_is_reported_with_the_fix_and_the_run_goes_on_once_fixed(
    tmp_path: Path,
) -> None:
    repo = new_repo(tmp_path / "repo", {".gitignore": ".loopengt/\n", "app.py": "x = 1\n"})
    runs = make_runs(repo, repo / ".loopengt")
    run_id = runs.start_run(spec=SPEC).run_id
    other = runs.start_run(spec=SPEC).run_id
    (repo / EDIT).write_text("the agent's edit\n")
    embed_repo_without_commits(repo)  # e.g. the agent ran `git init` in a folder it made

    with pytest.raises(WorkspaceError) as err:
        runs.step(run_id, "edit#1", {"done": True})
    message = str(err.value)
    assert message.startswith(f"run '{run_id}' cannot record its files:")
    assert "commit in it, delete it or add it to .gitignore" in message
    assert "The output for edit#1 was not taken: once that is fixed, submit it again" in message
    assert f"loopengt cancel {run_id}" in message
    assert "workspace: none" not in message  # no way out for a run that has started
    assert not [e for e in runs.trace(run_id) if e.type == "output_submitted"]

    # the run is not stuck: it says why, resume and checkpoint say the fix, cancel works
    view = runs.get_run(run_id)
    assert view.status == "running"
    assert [t.task_id for t in view.tasks] == ["edit#1"]
    assert view.workspace is not None
    assert view.workspace.error is not None
    assert "commit in it" in view.next_action
    with pytest.raises(WorkspaceError, match="resume it again"):
        runs.resume(run_id)
    with pytest.raises(WorkspaceError, match="No checkpoint was taken"):
        runs.checkpoint(run_id)
    assert runs.cancel_run(other, "the repository is broken").status == "cancelled"

    # once fixed, the same submission goes on and the run completes
    shutil.rmtree(repo / "vendor" / "thing" / ".git")
    answer = runs.step(run_id, "edit#1", {"done": True})
    assert answer.status == "running"
    assert answer.workspace is not None
    assert answer.workspace.error is None
    assert runs.step(run_id, "review#1", {"ok": True}).status == "completed"
    assert {EDIT, "vendor/thing/a.txt", "built.txt"} <= names(repo, recorded_trees(runs, run_id)[-1])


def test_a_command_that_breaks_the_repository_keeps_its_result_and_the_run_goes_on_once_fixed(
    tmp_path: Path,
) -> None:
    spec: dict[str, Any] = {
        "name": "breaks",
        "agents": [{"name": "coder"}],
        "steps": [
            {"name": "one", "agent": "coder"},
            {"name": "init", "run": ["git", "init", "-q", "vendored"]},
            {"name": "two", "agent": "coder"},
        ],
    }
    repo = new_repo(tmp_path / "repo", {".gitignore": ".loopengt/\n", "app.py": "x = 1\n"})
    runs = make_runs(repo, repo / ".loopengt")
    run_id = runs.start_run(spec=spec).run_id
    answer = runs.step(run_id, "one#1", {})
    assert [t.task_id for t in answer.tasks] == ["two#1"]  # the command's result was recorded
    finished = [event_data(e) for e in runs.trace(run_id) if e.type == "command_finished"]
    assert finished[-1]["exit_code"] == 0
    assert "workspace" not in finished[-1]  # recorded without the files it could not record
    assert answer.workspace is not None
    assert answer.workspace.error is not None
    with pytest.raises(WorkspaceError, match="The output for two#1 was not taken"):
        runs.step(run_id, "two#1", {})
    (repo / ".gitignore").write_text(".loopengt/\nvendored/\n")
    assert runs.step(run_id, "two#1", {}).status == "completed"


# --- doctor ----------------------------------------------------------------------------------------


def doctor(cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "CODEX_HOME": str(home / ".codex"),
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    return subprocess.run(
        [PY, "-m", "loopengt_server", "doctor"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def workspace_line(done: subprocess.CompletedProcess[str]) -> str:
    [line] = [x for x in done.stdout.splitlines() if x.split()[1:2] == ["workspace"]]
    return line


def test_doctor_checks_that_the_workspace_can_be_recorded(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {".gitignore": ".loopengt/\n", "app.py": "x = 1\n"})
    (repo / ".loopengt").mkdir()
    objects = sorted(p.name for p in (repo / ".git" / "objects").rglob("*"))
    fine = doctor(repo, tmp_path)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert workspace_line(fine).startswith("OK    workspace")
    assert sorted(p.name for p in (repo / ".git" / "objects").rglob("*")) == objects  # doctor wrote nothing

    embed_repo_without_commits(repo)
    broken = doctor(repo, tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    line = workspace_line(broken)
    assert line.startswith("FAIL  workspace")
    assert "commit in it, delete it or add it to .gitignore" in line
    assert "-> fix:" in line
    assert "workspace: none" in line

    plain = tmp_path / "plain"
    plain.mkdir()
    assert workspace_line(doctor(plain, tmp_path)).startswith("OK    workspace")
