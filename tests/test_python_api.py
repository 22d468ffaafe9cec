"""`import loopengt`: the README's example runs as written, and the API is the engine's, not a copy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import loopengt
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

README = Path(__file__).parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the README's Python API section has no python example"
    return found.group(1)


def test_the_readme_example_runs_and_prints_what_its_comments_say(tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(readme_example(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Ask politely."
    assert lines[1] == "completed {'text': 'hello, please'}"
    assert lines[2].startswith("True ['hello-")
    assert len(lines) == 3, "nothing but the example's prints on stdout (no log lines)"
    # the run is in the store the CLI reads
    (run_id,) = [r for r in FileStore(tmp_path / ".loopengt").list_runs() if "fork" not in r]
    assert Runs(FileStore(tmp_path / ".loopengt")).get_run(run_id).status == "completed"


def test_validate_takes_a_path_text_or_a_dict_and_never_raises(tmp_path: Path) -> None:
    good = "name: x\nagents: [{name: a}]\nsteps: [{name: s, agent: a}]\n"
    (tmp_path / "loop.yaml").write_text(good, encoding="utf-8")
    assert loopengt.validate(tmp_path / "loop.yaml").valid
    assert (
        loopengt.validate(str(tmp_path / "loop.yaml")).summary
        == "valid: loop 'x' (sequential, 1 step, 1 agent, 0 gates)"
    )
    assert loopengt.validate(
        {"name": "x", "agents": [{"name": "a"}], "steps": [{"name": "s", "agent": "a"}]}
    ).valid
    bad = loopengt.validate(good.replace("agent: a}", "agent: b}"))
    assert not bad.valid
    assert [str(p) for p in bad.problems] == ["steps[0].agent: unknown agent 'b' (agents: a)"]
    missing = loopengt.validate(str(tmp_path / "nope.yaml"))
    assert not missing.valid
    assert "nope.yaml" in str(missing.problems[0])


def test_errors_are_loopengt_errors_that_say_what_to_do(tmp_path: Path) -> None:
    with loopengt.open(tmp_path / "store", cwd=tmp_path) as runs:
        with pytest.raises(loopengt.LoopengtError, match="give exactly one of spec_path, template or spec"):
            runs.start()
        view = runs.start(template="planner_executor")
        with pytest.raises(loopengt.LoopengtError, match="open tasks: plan#1"):
            runs.step(view.run_id, "nope#1", {})
        inline = 'name: c\nsteps: [{name: s, run: ["true"]}]\n'
        with pytest.raises(loopengt.LoopengtError, match="may not contain command steps"):
            runs.start(spec=inline)
        assert runs.cancel(view.run_id, "done here").status == "cancelled"
        assert [r.status for r in runs.list()] == ["cancelled"]
    with loopengt.open(tmp_path / "store", cwd=tmp_path, allow_inline_commands=True) as runs:
        assert runs.start(spec=inline).status == "completed"
