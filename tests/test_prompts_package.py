"""The prompts are package data: found with importlib.resources, reported by `doctor` when missing.

That a built wheel carries them is checked where it can be, on a real wheel: `.ci/wheel_smoke.sh`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loopengt_server.clients import install_slash_commands
from loopengt_server.doctor import check_prompts
from loopengt_server.mcp import prompts

NAMES = ["design_loop", "drive_run", "review_loop"]


def test_the_prompts_are_files_of_the_package() -> None:
    assert [p.name for p in prompts.load_prompt_files()] == NAMES
    folder = Path(str(prompts.prompts_dir()))
    assert folder == Path(prompts.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.md")) == NAMES
    assert check_prompts().level == "OK"


def test_an_install_without_prompts_is_a_clear_error_and_a_doctor_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "prompts"
    empty.mkdir()
    monkeypatch.setattr(prompts, "prompts_dir", lambda: empty)
    with pytest.raises(prompts.PromptsMissing, match="reinstall"):
        prompts.load_prompt_files()
    check = check_prompts()
    assert check.level == "FAIL"
    assert "reinstall" in check.fix
    assert "slash commands" in check.detail
    with pytest.raises(prompts.PromptsMissing):
        install_slash_commands("claude-code", tmp_path / "project")
    assert not (tmp_path / "project" / ".claude").exists()
