"""`loopengt init --template fix_tests` writes the project's own test command into the spec and says why.

Each detection runs on a folder of real files; `which` is given, so what is installed on this machine
does not change the answer. The CLI tests run the installed `loopengt` in a temporary project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from loopengt_core.engine.validation import load_spec
from loopengt_core.service.catalog import template_text
from loopengt_core.service.specfiles import load_spec_file
from loopengt_core.service.testcommand import DEFAULT, detect_test_command, with_test_command

LOOPENGT = Path(sys.executable).with_name("loopengt")


def which_of(*installed: str) -> Callable[[str], str | None]:
    return lambda name: f"/usr/bin/{name}" if name in installed else None


def make(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


EVERYTHING = which_of("pytest", "python3", "npm", "pnpm", "yarn", "bun", "go", "cargo", "make", "deno", "mvn")


@pytest.mark.parametrize(
    ("files", "argv"),
    [
        ({"pyproject.toml": "[project]\nname='x'\n"}, ["pytest", "-q"]),
        ({"pytest.ini": "[pytest]\n"}, ["pytest", "-q"]),
        ({"setup.cfg": "[tool:pytest]\n"}, ["pytest", "-q"]),
        ({"tox.ini": "[tox]\n"}, ["pytest", "-q"]),
        ({"tests/test_x.py": "def test(): pass\n"}, ["pytest", "-q"]),
        ({"package.json": json.dumps({"scripts": {"test": "jest"}})}, ["npm", "test"]),
        (
            {"package.json": json.dumps({"scripts": {"test": "vitest"}}), "pnpm-lock.yaml": ""},
            ["pnpm", "test"],
        ),
        ({"package.json": json.dumps({"scripts": {"test": "jest"}}), "yarn.lock": ""}, ["yarn", "test"]),
        (
            {"package.json": json.dumps({"scripts": {"test": "jest"}}), "bun.lockb": ""},
            ["bun", "run", "test"],
        ),
        (
            {"package.json": json.dumps({"scripts": {"test": "jest"}, "packageManager": "pnpm@9.1.0"})},
            ["pnpm", "test"],
        ),
        ({"go.mod": "module x\n"}, ["go", "test", "./..."]),
        ({"Cargo.toml": "[package]\n"}, ["cargo", "test"]),
        ({"Makefile": "build:\n\tcc x.c\n\ntest: build\n\t./run-tests\n"}, ["make", "test"]),
        ({"pom.xml": "<project/>"}, ["mvn", "-q", "test"]),
        ({"deno.json": "{}"}, ["deno", "test"]),
    ],
)
def test_each_kind_of_project(tmp_path: Path, files: dict[str, str], argv: list[str]) -> None:
    found = detect_test_command(make(tmp_path, files), EVERYTHING)
    assert found.argv == argv
    assert found.found
    assert "not on PATH" not in found.why


def test_python_prefers_the_projects_virtualenv_then_pytest_then_python3(tmp_path: Path) -> None:
    make(tmp_path, {"pyproject.toml": ""})
    assert detect_test_command(tmp_path, which_of("python3")).argv == DEFAULT
    assert detect_test_command(tmp_path, which_of("python3", "pytest")).argv == ["pytest", "-q"]
    nothing = detect_test_command(tmp_path, which_of())
    assert nothing.argv == DEFAULT
    assert "neither pytest nor python3 is on PATH" in nothing.why
    make(tmp_path, {".venv/bin/python": ""})
    venv = detect_test_command(tmp_path, which_of("pytest"))
    assert venv.argv == [".venv/bin/python", "-m", "pytest", "-q"]
    assert "pytest is not installed there yet" in venv.why
    make(tmp_path, {".venv/bin/pytest": ""})
    assert "not installed" not in detect_test_command(tmp_path, which_of()).why


def test_what_is_not_a_test_suite(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}}),
            "Makefile": "TEST := 1\nbuild:\n\tcc x.c\n",
            "README.md": "# x\n",
        },
    )
    guess = detect_test_command(tmp_path, EVERYTHING)
    assert guess.argv == DEFAULT
    assert not guess.found
    assert "a guess" in guess.line()
    assert "--test-command" in guess.line()


def test_a_program_that_is_not_installed_is_named(tmp_path: Path) -> None:
    found = detect_test_command(make(tmp_path, {"go.mod": "module x\n"}), which_of("python3"))
    assert found.argv == ["go", "test", "./..."]
    assert "`go` is not on PATH here" in found.line()


def test_with_test_command_writes_the_gate_and_the_prompt() -> None:
    argv = ["sh", "-c", "make {check} && echo 'ok'"]
    spec = load_spec(with_test_command(template_text("fix_tests"), argv))
    assert spec.gate("tests_pass").command == argv
    prompt = spec.step("implement").prompt_template or ""
    assert "make {{check}}" in prompt  # braces escaped: not a placeholder
    assert "python3" not in prompt
    with pytest.raises(ValueError, match="default test command"):
        with_test_command(template_text("planner_executor"), argv)


def init(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOOPENGT), "init", "--template", "fix_tests", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_detects_the_command_and_says_what_it_chose(tmp_path: Path) -> None:
    make(tmp_path, {"go.mod": "module x\n"})
    done = init(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "test command: `go test ./...` (found go.mod" in done.stdout
    spec, _ = load_spec_file(tmp_path / "loop.yaml")
    assert spec.gate("tests_pass").command == ["go", "test", "./..."]
    assert "`go test ./...`" in (spec.step("implement").prompt_template or "")
    assert "# `loopengt init --template fix_tests` writes" in (tmp_path / "loop.yaml").read_text("utf-8")


def test_init_takes_a_test_command_and_refuses_it_for_other_templates(tmp_path: Path) -> None:
    done = init(tmp_path, "--test-command", "npm run test:unit -- --silent")
    assert done.returncode == 0, done.stderr
    assert "test command: `npm run test:unit -- --silent` (given with --test-command)" in done.stdout
    spec, _ = load_spec_file(tmp_path / "loop.yaml")
    assert spec.gate("tests_pass").command == ["npm", "run", "test:unit", "--", "--silent"]
    other = subprocess.run(
        [str(LOOPENGT), "init", "--template", "handoff_loop", "--test-command", "x", "-o", "other.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert other.returncode == 2
    assert "--test-command is for --template fix_tests" in other.stderr
    assert not (tmp_path / "other.yaml").exists()
