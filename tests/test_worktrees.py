"""Parallel branches in isolated git worktrees (`isolation: worktree`), merged at the join, on real
repositories driven through the service: each branch works and runs its gates in its own worktree, the
join's task works in their merge (conflicts included), and the user's checkout, index, HEAD and stash
stay byte-identical. Everything is read back with plain git.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loopengt_core.engine.validation import SpecError, load_spec
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.events import event_data
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

PY = sys.executable
GIT_ENV = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
BRANCHES = ("a", "b", "c")


def git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode("utf-8", "replace")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for key, value in (
        ("user.name", "Test User"),
        ("user.email", "t@example.com"),
        ("commit.gpgsign", "false"),
    ):
        git(root, "config", key, value)
    for name in BRANCHES:
        (root / f"{name}.txt").write_text(f"{name}\n")
    (root / "shared.txt").write_text("one\ntwo\nthree\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    # a user's state a run must leave alone: a stash, a staged change, an unstaged one, an untracked file
    (root / "a.txt").write_text("stashed\n")
    git(root, "stash", "push", "-q", "-m", "user stash")
    (root / "shared.txt").write_text("one\ntwo\nthree\nstaged\n")
    git(root, "add", "shared.txt")
    (root / "notes.md").write_text("untracked\n")
    return root


def user_state(repo: Path) -> dict[str, str]:
    """HEAD, the stash, the index file's hash and `git status --porcelain`: what a run must not change."""
    status = git(repo, "status", "--porcelain")  # first: it may refresh the index's stat cache
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "stash": git(repo, "stash", "list"),
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "status": status,
    }


def check(name: str, code: str) -> dict[str, Any]:
    return {"name": name, "command": [PY, "-c", code], "on_failure": "retry"}


def only_mine(name: str) -> str:
    """A gate of branch `name`: its own file edited, the other branches' files as they were."""
    return (
        "import pathlib, sys\n"
        f"mine = {name!r}\n"
        f"text = {{n: pathlib.Path(n + '.txt').read_text() for n in {list(BRANCHES)!r}}}\n"
        "ok = all(text[n] == (f'{n} edited\\n' if n == mine else f'{n}\\n') for n in text)\n"
        "sys.exit(0 if ok else 1)\n"
    )


ALL_THREE = (
    "import pathlib, sys\n"
    f"sys.exit(0 if all(pathlib.Path(n + '.txt').read_text() == f'{{n}} edited\\n' for n in {list(BRANCHES)!r}) else 1)\n"
)
NO_MARKERS = (
    "import pathlib, sys\nsys.exit(1 if '<<<<<<<' in pathlib.Path('shared.txt').read_text() else 0)\n"
)


def fan_out_spec() -> dict[str, Any]:
    return {
        "name": "isolated",
        "pattern": "parallel_fan_out",
        "isolation": "worktree",
        "agents": [{"name": "coder"}],
        "steps": [
            *({"name": n, "agent": "coder", "verification_gates": [f"only-{n}"]} for n in BRANCHES),
            {"name": "join", "agent": "coder", "dependencies": list(BRANCHES), "verification_gates": ["all"]},
        ],
        "policy": {
            "max_concurrency": 4,
            "verification_gates": [
                *(check(f"only-{n}", only_mine(n)) for n in BRANCHES),
                check("all", ALL_THREE),
            ],
        },
    }


def conflict_spec() -> dict[str, Any]:
    return {
        "name": "conflicting",
        "pattern": "parallel_fan_out",
        "agents": [{"name": "coder"}],
        "steps": [
            {"name": "left", "agent": "coder", "isolation": "worktree"},
            {"name": "right", "agent": "coder", "isolation": "worktree"},
            {
                "name": "join",
                "agent": "coder",
                "dependencies": ["left", "right"],
                "verification_gates": ["clean"],
            },
        ],
        "policy": {"verification_gates": [check("clean", NO_MARKERS)]},
    }


def make_runs(tmp_path: Path, repo: Path) -> Runs:
    return Runs(FileStore(tmp_path / "store"), cwd=repo)


def write_spec(tmp_path: Path, spec: dict[str, Any]) -> str:
    import yaml

    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_three_branches_work_apart_and_the_join_has_all_three(repo: Path, tmp_path: Path) -> None:
    before = user_state(repo)
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, fan_out_spec()))
    run_id = view.run_id
    tasks = {t.step: t for t in view.tasks}
    assert set(tasks) == set(BRANCHES)
    workdirs = {n: Path(tasks[n].workdir or "") for n in BRANCHES}
    folder = (repo / ".loopengt" / "worktrees" / run_id).resolve()
    listed = git(repo, "worktree", "list", "--porcelain")
    for name, workdir in workdirs.items():
        assert workdir.parent == folder
        assert workdir.is_dir()
        assert f"worktree {workdir}\n" in listed
        assert git(workdir, "symbolic-ref", "HEAD").strip() == f"refs/heads/loopengt/{run_id}/{name}"
        # made from the run's recorded files (the user's staged and untracked changes included), not HEAD
        assert (workdir / "shared.txt").read_text() == "one\ntwo\nthree\nstaged\n"
        assert (workdir / "notes.md").read_text() == "untracked\n"
    assert len(set(workdirs.values())) == 3

    for name in BRANCHES:  # each agent edits its own file in its own worktree; its gate sees only that
        (workdirs[name] / f"{name}.txt").write_text(f"{name} edited\n")
    answers = [runs.step(run_id, f"{name}#1", {"done": name}) for name in BRANCHES]
    assert all(a.accepted for a in answers), [a.gate_results for a in answers]
    assert [r.passed for a in answers for r in a.gate_results] == [True, True, True]
    for name in BRANCHES:  # the user's checkout never saw a branch's edit
        assert (repo / f"{name}.txt").read_text() == f"{name}\n"

    view = runs.get_run(run_id)
    (join,) = view.tasks
    assert join.step == "join"
    assert join.workdir is not None
    merged_dir = Path(join.workdir)
    assert merged_dir.parent == folder
    assert [b["step"] for b in join.input["merge"]["branches"]] == list(BRANCHES)
    assert "conflicts" not in join.input["merge"]
    for name in BRANCHES:
        assert (merged_dir / f"{name}.txt").read_text() == f"{name} edited\n"
    assert len(git(repo, "worktree", "list").splitlines()) == 5  # the user's, three branches, the join

    answer = runs.step(run_id, join.task_id, {"merged": True})
    assert answer.status == "completed", answer

    merges = [event_data(e) for e in runs.trace(run_id) if e.type == "branches_merged"]
    assert len(merges) == 1
    assert [m["step"] for m in merges[0]["merged"]] == list(BRANCHES)
    line = merges[0]["branch"]
    assert line == f"loopengt/{run_id}/join"
    # completed with the default `worktrees: delete`: worktrees and the branches' branches gone, the
    # joined result kept on its branch
    assert git(repo, "worktree", "list").count("\n") == 1
    assert (
        git(repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/loopengt/{run_id}/")
        == line + "\n"
    )
    for name in BRANCHES:
        assert git(repo, "show", f"{line}:{name}.txt") == f"{name} edited\n"
    shown = runs.diff(run_id)
    assert line in shown
    assert "+a edited" in shown
    assert "+c edited" in shown
    assert user_state(repo) == before


AFTER_JOIN = (
    "import pathlib, sys\n"
    f"ok = all(pathlib.Path(n + '.txt').read_text() == f'{{n}} edited\\n' for n in {list(BRANCHES)!r})\n"
    "sys.exit(0 if ok and pathlib.Path('after.txt').read_text() == 'after\\n' else 1)\n"
)


def test_steps_after_the_join_work_in_the_merged_line(repo: Path, tmp_path: Path) -> None:
    """After a join the run's line of work goes on in the join's worktree: a later agent step works
    there and its command gate sees every branch's files; a later command step runs there too; all of
    it ends up on the join's branch, and the user's checkout never sees any of it."""
    spec = fan_out_spec()
    spec["steps"] += [
        {"name": "after", "agent": "coder", "dependencies": ["join"], "verification_gates": ["after"]},
        {"name": "stamp", "run": [PY, "-c", "open('stamp.txt', 'w').write('stamped\\n')"]},
    ]
    spec["steps"][-1]["dependencies"] = ["after"]
    spec["policy"]["verification_gates"].append(check("after", AFTER_JOIN))
    before = user_state(repo)
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, spec))
    run_id = view.run_id
    for task in view.tasks:
        (Path(task.workdir or "") / f"{task.step}.txt").write_text(f"{task.step} edited\n")
        assert runs.step(run_id, task.task_id, {}).accepted
    (join,) = runs.get_run(run_id).tasks
    assert runs.step(run_id, join.task_id, {}).accepted

    (after,) = runs.get_run(run_id).tasks
    assert after.step == "after"
    assert after.workdir == join.workdir  # the line: the join's worktree, holding the merge
    line_dir = Path(after.workdir or "")
    for name in BRANCHES:
        assert (line_dir / f"{name}.txt").read_text() == f"{name} edited\n"
    refused = runs.step(run_id, after.task_id, {})  # its gate runs in the line: after.txt is missing
    assert [r.passed for r in refused.gate_results] == [False]
    (retry,) = runs.get_run(run_id).tasks
    assert retry.workdir == join.workdir
    (line_dir / "after.txt").write_text("after\n")
    answer = runs.step(run_id, retry.task_id, {})
    assert [r.passed for r in answer.gate_results] == [True]
    assert runs.get_run(run_id).status == "completed"

    line = f"loopengt/{run_id}/join"
    assert git(repo, "show", f"{line}:after.txt") == "after\n"
    assert git(repo, "show", f"{line}:stamp.txt") == "stamped\n"  # the command step ran in the line
    for name in BRANCHES:
        assert git(repo, "show", f"{line}:{name}.txt") == f"{name} edited\n"
    assert not (repo / "stamp.txt").exists()
    assert not (repo / "after.txt").exists()
    assert user_state(repo) == before


def test_two_branches_on_the_same_lines_give_the_join_the_conflict(repo: Path, tmp_path: Path) -> None:
    before = user_state(repo)
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, conflict_spec()))
    run_id = view.run_id
    for task in view.tasks:
        (Path(task.workdir or "") / "shared.txt").write_text(f"one\n{task.step} two\nthree\nstaged\n")
        assert runs.step(run_id, task.task_id, {}).accepted

    (join,) = runs.get_run(run_id).tasks
    conflicts = join.input["merge"]["conflicts"]
    assert [c["path"] for c in conflicts] == ["shared.txt"]
    (hunk,) = conflicts[0]["hunks"]
    assert hunk.startswith("<<<<<<<")
    assert "left two" in hunk
    assert "right two" in hunk
    merged = Path(join.workdir or "") / "shared.txt"
    assert "<<<<<<<" in merged.read_text()

    refused = runs.step(run_id, join.task_id, {"resolved": False})  # the gate runs on the merged tree
    assert [r.passed for r in refused.gate_results] == [False]
    assert refused.status == "running"
    (retry,) = runs.get_run(run_id).tasks
    assert retry.workdir == join.workdir
    assert retry.input["merge"]["conflicts"] == conflicts
    merged.write_text("one\nleft and right two\nthree\nstaged\n")
    assert runs.step(run_id, retry.task_id, {"resolved": True}).status == "completed"
    line = f"loopengt/{run_id}/join"
    assert git(repo, "show", f"{line}:shared.txt") == "one\nleft and right two\nthree\nstaged\n"
    assert user_state(repo) == before


def resolve_spec() -> dict[str, Any]:
    """conflict_spec with a `resolve` step: it gets the join's conflicts before the join's task."""
    spec = conflict_spec()
    spec["steps"][-1]["resolve"] = "fix"
    spec["steps"].append({"name": "fix", "agent": "coder", "verification_gates": ["clean"]})
    return spec


def test_a_resolve_step_gets_the_conflict_and_then_the_join_goes_on(repo: Path, tmp_path: Path) -> None:
    before = user_state(repo)
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, resolve_spec()))
    run_id = view.run_id
    assert {t.step for t in view.tasks} == {"left", "right"}  # the resolve step never starts on its own
    for task in view.tasks:
        (Path(task.workdir or "") / "shared.txt").write_text(f"one\n{task.step} two\nthree\nstaged\n")
        assert runs.step(run_id, task.task_id, {}).accepted

    after = runs.get_run(run_id)
    (fix,) = after.tasks  # the join's task waits for the resolve step's
    assert fix.step == "fix"
    assert fix.input["join"] == "join"
    conflicts = fix.input["merge"]["conflicts"]
    assert [c["path"] for c in conflicts] == ["shared.txt"]
    assert "left two" in conflicts[0]["hunks"][0]
    assert "right two" in conflicts[0]["hunks"][0]
    merged = Path(fix.workdir or "") / "shared.txt"
    assert merged.parent.name == "join"  # it works in the join's merged worktree
    assert "<<<<<<<" in merged.read_text()
    assert "resolve the conflict markers" in after.next_action

    refused = runs.step(run_id, fix.task_id, {"resolved": False})  # its gate runs on the merged tree
    assert [r.passed for r in refused.gate_results] == [False]
    (retry,) = runs.get_run(run_id).tasks
    assert retry.step == "fix"
    merged.write_text("one\nleft and right two\nthree\nstaged\n")
    assert runs.step(run_id, retry.task_id, {"resolved": True}).accepted

    view = runs.get_run(run_id)
    (join,) = view.tasks
    assert join.step == "join"
    assert join.workdir == fix.workdir
    assert join.input["merge"]["resolved_by"] == {"step": "fix", "output": {"resolved": True}}
    assert "resolve the conflict markers" not in view.next_action
    assert runs.step(run_id, join.task_id, {"joined": True}).status == "completed"
    types = [e.type for e in runs.trace(run_id)]
    assert types.count("join_deferred") == 1
    assert types.index("branches_merged") < types.index("join_deferred")
    line = f"loopengt/{run_id}/join"
    assert git(repo, "show", f"{line}:shared.txt") == "one\nleft and right two\nthree\nstaged\n"
    assert user_state(repo) == before


def test_without_conflicts_the_resolve_step_never_runs(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, resolve_spec()))
    for task in view.tasks:
        (Path(task.workdir or "") / f"{task.step}.txt").write_text("mine\n")
        runs.step(view.run_id, task.task_id, {})
    (join,) = runs.get_run(view.run_id).tasks
    assert join.step == "join"
    assert runs.step(view.run_id, join.task_id, {}).status == "completed"
    assert [event_data(e)["step"] for e in runs.trace(view.run_id) if e.type == "task_issued"] == [
        "left",
        "right",
        "join",
    ]


def test_a_resolve_step_that_fails_fails_the_run_and_keeps_the_merge(repo: Path, tmp_path: Path) -> None:
    spec = resolve_spec()
    spec["steps"][-1]["allow_retry"] = False
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, spec))
    for task in view.tasks:
        (Path(task.workdir or "") / "shared.txt").write_text(f"{task.step}\n")
        runs.step(view.run_id, task.task_id, {})
    (fix,) = runs.get_run(view.run_id).tasks
    answer = runs.step(view.run_id, fix.task_id, None, outcome="failure", error="cannot tell")
    assert answer.status == "failed"  # not left waiting for a join that can no longer start
    assert "step 'fix'" in (runs.get_run(view.run_id).error or "")
    assert "<<<<<<<" in (Path(fix.workdir or "") / "shared.txt").read_text()  # kept for inspection


def test_resolve_names_a_step_that_runs_only_on_conflicts() -> None:
    spec = resolve_spec()
    spec["steps"][2]["resolve"] = "nope"
    with pytest.raises(SpecError, match=r"steps\[2\]\.resolve: unknown step 'nope' \(steps: left, right"):
        load_spec(spec)
    spec = resolve_spec()
    spec["steps"][3]["dependencies"] = ["left"]
    with pytest.raises(SpecError, match="runs only when the merge has some"):
        load_spec(spec)
    spec = resolve_spec()
    spec["steps"][3]["on_failure"] = "left"  # its end goes back to the join, never elsewhere
    with pytest.raises(
        SpecError, match=r"steps\[2\]\.resolve: step 'fix' .* cannot have next, routes or on_failure"
    ):
        load_spec(spec)
    spec = resolve_spec()
    spec["steps"][0]["isolation"] = spec["steps"][1]["isolation"] = "none"
    with pytest.raises(SpecError, match="merges no worktree branches"):
        load_spec(spec)


def test_a_failed_run_keeps_its_worktrees_and_prune_removes_them(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec_path=write_spec(tmp_path, conflict_spec())).run_id
    assert len(git(repo, "worktree", "list").splitlines()) == 3
    runs.cancel_run(run_id, "stop")
    assert len(git(repo, "worktree", "list").splitlines()) == 3  # kept for inspection
    removed = runs.prune_worktrees(run_id)
    assert len(removed) >= 2
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert git(repo, "for-each-ref", f"refs/heads/loopengt/{run_id}/") == ""
    assert runs.prune_worktrees(run_id) == []  # idempotent


def test_isolation_is_refused_without_git(tmp_path: Path) -> None:
    spec = conflict_spec()
    with pytest.raises(SpecError, match="workspace: none"):
        load_spec({**spec, "workspace": "none"})
    with pytest.raises(SpecError, match="no step depends on it"):
        load_spec({**spec, "steps": [{"name": "alone", "agent": "coder", "isolation": "worktree"}]})
    plain = tmp_path / "plain"
    plain.mkdir()
    runs = Runs(FileStore(tmp_path / "store"), cwd=plain)
    with pytest.raises(LoopengtError, match="isolation: worktree"):
        runs.start_run(spec_path=write_spec(tmp_path, spec))
    assert runs.list_runs() == []


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "loopengt_server", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def test_a_worktree_a_crash_left_unrecorded_is_made_again(repo: Path, tmp_path: Path) -> None:
    """A crash after `git worktree add` and before its event leaves a worktree no event names (no task
    was handed out in it): the run's next transition replaces it with a fresh one from the base."""
    run_id = "crashed-run"
    stale = repo / ".loopengt" / "worktrees" / run_id / "left"
    stale.parent.mkdir(parents=True)
    git(repo, "worktree", "add", "-q", "-b", f"loopengt/{run_id}/left", str(stale), "HEAD")
    (stale / "junk.txt").write_text("half-made\n")
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, conflict_spec()), run_id=run_id)
    left = next(t for t in view.tasks if t.step == "left")
    assert left.workdir == str(stale.resolve())
    assert not (stale / "junk.txt").exists()
    assert (stale / "shared.txt").read_text() == "one\ntwo\nthree\nstaged\n"  # the recorded files, not HEAD
    assert [e.type for e in runs.trace(run_id)].count("worktree_added") == 2


def test_prune_cli_removes_the_worktrees_of_ended_runs_and_what_a_crash_left(
    repo: Path, tmp_path: Path
) -> None:
    runs = make_runs(tmp_path, repo)
    run_id = runs.start_run(spec_path=write_spec(tmp_path, conflict_spec())).run_id
    orphan = repo / ".loopengt" / "worktrees" / run_id / "join"  # a merge a crash cut short
    git(repo, "worktree", "add", "-q", "-b", f"loopengt/{run_id}/join", str(orphan), "HEAD")
    store = str(tmp_path / "store")
    running = cli("prune", "--worktrees", "--store", store, cwd=repo)
    assert "removed 0 worktrees and branches" in running.stdout  # a running run's are never touched
    runs.fail_run(run_id, "given up")
    assert len(git(repo, "worktree", "list").splitlines()) == 4  # a failed run keeps them
    done = cli("prune", "--worktrees", "--store", store, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "removed 6 worktrees and branches" in done.stdout
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert git(repo, "for-each-ref", "refs/heads/loopengt") == ""
    assert not (repo / ".loopengt" / "worktrees" / run_id).exists()
    again = cli("prune", "--worktrees", "--store", store, cwd=repo)
    assert "removed 0 worktrees and branches" in again.stdout


AGENT = """\
import json, os, sys, time
task = json.load(sys.stdin)
log = os.environ["AGENT_LOG"]
start = time.time()
if task["step"] in ("a", "b", "c"):
    time.sleep(1.0)
    with open(task["step"] + ".txt", "w") as f:
        f.write(task["step"] + " edited\\n")
with open(log, "a") as f:
    f.write(json.dumps({"step": task["step"], "cwd": os.getcwd(), "workdir": task.get("workdir"),
                        "start": start, "end": time.time()}) + "\\n")
print(json.dumps({"done": task["step"]}))
"""


def test_headless_jobs_runs_the_branch_agents_at_once_each_in_its_worktree(
    repo: Path, tmp_path: Path
) -> None:
    import json

    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    log = tmp_path / "agent.log"
    spec = write_spec(tmp_path, fan_out_spec())
    before = user_state(repo)
    store = str(tmp_path / "store")
    done = subprocess.run(
        [
            PY,
            "-m",
            "loopengt_server",
            "run",
            spec,
            "--agent",
            f"{PY} {agent}",
            "--jobs",
            "3",
            "--store",
            store,
        ],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
        env={**os.environ, "AGENT_LOG": str(log)},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = {c["step"]: c for c in map(json.loads, log.read_text().splitlines())}
    assert set(calls) == {*BRANCHES, "join"}
    for name in (*BRANCHES, "join"):
        assert calls[name]["cwd"] == calls[name]["workdir"]
        assert "/.loopengt/worktrees/" in calls[name]["cwd"]
    # the three branch agents overlapped: each started before any other ended
    assert max(calls[n]["start"] for n in BRANCHES) < min(calls[n]["end"] for n in BRANCHES)
    assert "agent (a): done" in done.stdout
    assert user_state(repo) == before


RESOLVING_AGENT = """\
import json, os, sys
task = json.load(sys.stdin)
with open(os.environ["AGENT_LOG"], "a") as f:
    f.write(json.dumps({"step": task["step"], "cwd": os.getcwd(), "input": task["input"]}) + "\\n")
if task["step"] in ("left", "right"):
    open("shared.txt", "w").write(task["step"] + "\\n")
elif task["step"] == "fix":
    open("shared.txt", "w").write("left and right\\n")
print(json.dumps({"done": task["step"]}))
"""


def test_headless_a_resolve_step_resolves_and_the_run_completes(repo: Path, tmp_path: Path) -> None:
    import json

    agent = tmp_path / "agent.py"
    agent.write_text(RESOLVING_AGENT)
    log = tmp_path / "agent.log"
    before = user_state(repo)
    spec = write_spec(tmp_path, resolve_spec())
    store = str(tmp_path / "store")
    done = subprocess.run(
        [
            PY,
            "-m",
            "loopengt_server",
            "run",
            spec,
            "--agent",
            f"{PY} {agent}",
            "--jobs",
            "2",
            "--store",
            store,
        ],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
        env={**os.environ, "AGENT_LOG": str(log)},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(c["step"] for c in calls[:2]) == ["left", "right"]
    assert [c["step"] for c in calls[2:]] == ["fix", "join"]
    fix, join = calls[2:]
    assert fix["cwd"] == join["cwd"]
    assert fix["cwd"].endswith("/join")
    assert "/.loopengt/worktrees/" in fix["cwd"]
    assert [c["path"] for c in fix["input"]["merge"]["conflicts"]] == ["shared.txt"]
    assert join["input"]["merge"]["resolved_by"]["step"] == "fix"
    run_id = Path(fix["cwd"]).parent.name
    assert git(repo, "show", f"loopengt/{run_id}/join:shared.txt") == "left and right\n"
    assert user_state(repo) == before


def test_worktrees_keep_leaves_them_after_completion(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, {**conflict_spec(), "worktrees": "keep"}))
    for task in view.tasks:
        (Path(task.workdir or "") / f"{task.step}.txt").write_text("mine\n")
        runs.step(view.run_id, task.task_id, {})
    (join,) = runs.get_run(view.run_id).tasks
    assert "conflicts" not in join.input["merge"]
    assert runs.step(view.run_id, join.task_id, {}).status == "completed"
    assert len(git(repo, "worktree", "list").splitlines()) == 4
    assert len(runs.prune_worktrees(view.run_id)) == 5  # three worktrees, two branches; the join's stays
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/loopengt") == (
        f"loopengt/{view.run_id}/join\n"
    )


def test_a_fork_does_not_work_in_its_parents_worktrees(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, conflict_spec()))
    point = runs.checkpoint(view.run_id, "branches open")
    fork = runs.resume(view.run_id, point.checkpoint_id)
    parents = {t.workdir for t in view.tasks}
    forked = {t.workdir for t in fork.tasks}
    assert len(forked) == 2
    assert not parents & forked
    assert all(f"/worktrees/{fork.run_id}/" in (w or "") for w in forked)


def test_next_action_names_each_tasks_workdir_and_the_conflict(repo: Path, tmp_path: Path) -> None:
    runs = make_runs(tmp_path, repo)
    view = runs.start_run(spec_path=write_spec(tmp_path, conflict_spec()))
    for task in view.tasks:
        assert f"{task.task_id} in {task.workdir}" in view.next_action
        (Path(task.workdir or "") / "shared.txt").write_text(f"{task.step}\n")
        runs.step(view.run_id, task.task_id, {})
    after = runs.get_run(view.run_id)
    assert "resolve the conflict markers" in after.next_action


CRASHING_GIT = """#!/bin/sh
"{real}" "$@"
rc=$?
if [ -n "$CRASH_AT" ]; then
  case "$*" in
    *"$CRASH_AT"*)
      n=$(cat "$CRASH_COUNT" 2>/dev/null || echo 0)
      n=$((n + 1))
      echo "$n" > "$CRASH_COUNT"
      if [ "$n" -eq "$CRASH_NTH" ]; then kill -9 "$PPID"; fi
      ;;
  esac
fi
exit $rc
"""


# every git operation of a fan-out and its join at which the process is killed (kill -9 right after git
# returned); tests/durability/worktree_crash_suite.py kills at each of them, 20 times over
CRASH_POINTS = [
    ("worktree add", 1),  # a branch's worktree made, its event not yet written
    ("worktree add", 3),  # the last branch's
    ("update-ref", 2),  # the join committing the second branch's files
    ("merge-tree", 2),  # between two merges
    ("worktree add", 4),  # the join's worktree made, branches_merged not yet written
]


@pytest.mark.parametrize(("crash_at", "nth"), [CRASH_POINTS[-1]])
def test_kill_9_at_a_git_operation_then_resume_completes_and_leaves_no_orphans(
    repo: Path, tmp_path: Path, crash_at: str, nth: int
) -> None:
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(CRASHING_GIT.format(real=shutil.which("git")))
    wrapper.chmod(0o755)
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    spec = write_spec(tmp_path, fan_out_spec())
    store = str(tmp_path / "store")
    run_id = "crashy"
    base = [PY, "-m", "loopengt_server", "run", "--agent", f"{PY} {agent}", "--store", store]
    env = {**os.environ, "AGENT_LOG": str(tmp_path / "agent.log")}
    before = user_state(repo)

    crashed = subprocess.run(
        [*base, spec, "--run-id", run_id],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
        check=False,
        env={
            **env,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "CRASH_AT": crash_at,
            "CRASH_NTH": str(nth),
            "CRASH_COUNT": str(tmp_path / "count"),
        },
    )
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr

    resumed = subprocess.run(
        [*base, "--resume", run_id],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
        check=False,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    checked = cli("check", "--store", store, cwd=repo)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    line = f"loopengt/{run_id}/join"
    for name in BRANCHES:
        assert git(repo, "show", f"{line}:{name}.txt") == f"{name} edited\n"
    cli("prune", "--worktrees", "--store", store, cwd=repo)
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/loopengt") == line + "\n"
    assert user_state(repo) == before
