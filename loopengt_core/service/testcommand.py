"""The project's test command, for `loopengt init --template fix_tests`: found from the files in its folder.

Looked for in this order: Python (pytest, run by the project's virtualenv when it has one), package.json
with a test script (npm, pnpm, yarn or bun by the lockfile), go.mod, Cargo.toml, a Makefile with a
`test` target, then Deno, Gradle, Maven and Mix. Nothing found: `python3 -m pytest -q`, and the message
says it is a guess. The fix_tests template holds that default; `with_test_command` writes another in.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT = ["python3", "-m", "pytest", "-q"]
GATE = "tests_pass"
GIVEN = "given with --test-command"
_GATE_LINE = f"command: {json.dumps(DEFAULT)}"
_PROMPT_TEXT = f"`{shlex.join(DEFAULT)}`"
_PYTHON_MARKERS = ("pytest.ini", "conftest.py", "pyproject.toml", "setup.cfg", "tox.ini", "setup.py")
_NPM_PLACEHOLDER = "no test specified"  # `npm init`'s test script, which only fails
_MAKE_TEST = re.compile(r"^test\s*:(?!=)", re.M)

Which = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Detected:
    argv: list[str]
    why: str = ""
    found: bool = True  # False: no test suite was recognised, `argv` is the default

    def line(self) -> str:
        """One line for a person: what was chosen, why, and how to choose another."""
        command = f"`{shlex.join(self.argv)}`"
        if self.why == GIVEN:
            return f"test command: {command} ({GIVEN})"
        if not self.found:
            return (
                f"test command: {command}, a guess: {self.why}. Pass --test-command '...' (or edit the "
                f"{GATE} gate in the spec) if the project tests another way"
            )
        return f"test command: {command} ({self.why}); another one: --test-command '...'"


def _python(folder: Path, marker: str, which: Which) -> Detected:
    for venv in (".venv", "venv"):
        if (folder / venv / "bin" / "python").exists():
            has = (folder / venv / "bin" / "pytest").exists()
            note = (
                "" if has else f"; pytest is not installed there yet: {venv}/bin/python -m pip install pytest"
            )
            return Detected(
                [f"{venv}/bin/python", "-m", "pytest", "-q"], f"found {marker} and the project's {venv}{note}"
            )
    if which("pytest"):
        return Detected(["pytest", "-q"], f"found {marker}; pytest is on PATH")
    if which("python3"):
        return Detected(DEFAULT, f"found {marker}; python3 is on PATH, pytest is not")
    return Detected(DEFAULT, f"found {marker}; note: neither pytest nor python3 is on PATH here")


def _package_json(folder: Path) -> Detected | None:
    try:
        data = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    scripts = data.get("scripts") if isinstance(data, dict) else None
    test = scripts.get("test") if isinstance(scripts, dict) else None
    if not isinstance(test, str) or not test.strip() or _NPM_PLACEHOLDER in test:
        return None
    locks = {"pnpm-lock.yaml": "pnpm", "yarn.lock": "yarn", "bun.lockb": "bun", "bun.lock": "bun"}
    for lock, tool in locks.items():
        if (folder / lock).exists():
            return Detected(
                [tool, "run", "test"] if tool == "bun" else [tool, "test"], f"package.json and {lock}"
            )
    declared = str(data.get("packageManager") or "").split("@")[0]
    if declared in ("pnpm", "yarn"):
        return Detected([declared, "test"], f"package.json (packageManager {declared})")
    return Detected(["npm", "test"], "package.json has a test script")


def _makefile(folder: Path) -> str | None:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        path = folder / name
        try:
            if path.is_file() and _MAKE_TEST.search(path.read_text(encoding="utf-8", errors="replace")):
                return name
        except OSError:
            continue
    return None


def _python_tests(folder: Path) -> str | None:
    for name in ("tests", "test"):
        path = folder / name
        if path.is_dir() and (any(path.glob("test_*.py")) or any(path.glob("*_test.py"))):
            return f"{name}/ with Python tests"
    return None


def detect_test_command(folder: Path, which: Which = shutil.which) -> Detected:
    """The test command of the project in `folder` and why it was chosen (see the module's order)."""
    marker = next((m for m in _PYTHON_MARKERS if (folder / m).is_file()), None) or _python_tests(folder)
    if marker is not None:
        return _note_missing(_python(folder, marker, which), which)
    chosen = _package_json(folder)
    if chosen is None:
        simple = [
            ("go.mod", ["go", "test", "./..."]),
            ("Cargo.toml", ["cargo", "test"]),
        ]
        chosen = next(
            (Detected(argv, f"found {name}") for name, argv in simple if (folder / name).is_file()), None
        )
    if chosen is None and (make := _makefile(folder)) is not None:
        chosen = Detected(["make", "test"], f"{make} has a test target")
    if chosen is None:
        others = [
            ("deno.json", ["deno", "test"]),
            ("deno.jsonc", ["deno", "test"]),
            ("gradlew", ["./gradlew", "test"]),
            ("build.gradle", ["gradle", "test"]),
            ("build.gradle.kts", ["gradle", "test"]),
            ("pom.xml", ["mvn", "-q", "test"]),
            ("mix.exs", ["mix", "test"]),
        ]
        chosen = next(
            (Detected(argv, f"found {name}") for name, argv in others if (folder / name).is_file()), None
        )
    if chosen is None:
        return Detected(
            DEFAULT,
            f"no test suite recognised in {folder} (no pyproject.toml, package.json test script, go.mod, "
            "Cargo.toml or Makefile test target)",
            found=False,
        )
    return _note_missing(chosen, which)


def _note_missing(chosen: Detected, which: Which) -> Detected:
    program = chosen.argv[0]
    if "/" in program or which(program):
        return chosen
    return Detected(
        chosen.argv,
        f"{chosen.why}; note: `{program}` is not on PATH here, install it before a run (loopengt doctor checks)",
        chosen.found,
    )


def with_test_command(template: str, argv: list[str]) -> str:
    """The fix_tests template's text with `argv` as its test command (gate and prompt), comments kept."""
    if not argv:
        raise ValueError("the test command is empty")
    if template.count(_GATE_LINE) != 1 or template.count(_PROMPT_TEXT) != 1:
        raise ValueError(f"the template does not hold the default test command {_GATE_LINE!r} once")
    shown = shlex.join(argv).replace("{", "{{").replace("}", "}}")  # prompt braces are placeholders
    return template.replace(_GATE_LINE, f"command: {json.dumps(argv)}").replace(_PROMPT_TEXT, f"`{shown}`")
