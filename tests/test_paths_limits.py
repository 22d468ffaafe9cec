"""The pieces behind the project root and the value limits, on their own (the MCP tests drive them
through the server: test_mcp_confinement.py, test_mcp_hostile.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopengt_core.model.errors import InvalidArgument, LoopengtError, TooLarge
from loopengt_core.model.limits import MAX_SPEC_BYTES, MAX_VALUE_BYTES, checked, measure
from loopengt_core.service.paths import OutsideRoot, UnreadableFile, confine, read_regular, worktree_path
from loopengt_server.mcp.stdio import answer_to, envelope

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


@given(value=JSON)
def test_the_size_estimate_never_exceeds_the_json_size(value: Any) -> None:
    _, estimate = measure(value, max_depth=10_000, stop_at=10**12)
    assert estimate <= len(json.dumps(value, ensure_ascii=False).encode())


def test_a_value_is_refused_past_its_limit_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPENGT_MAX_VALUE_BYTES", "100")
    assert checked({"a": "x" * 50}, "inputs")[1] < 100
    with pytest.raises(
        TooLarge, match=r"inputs is \d+ bytes; the limit is 100 bytes \(LOOPENGT_MAX_VALUE_BYTES\)"
    ):
        checked({"a": "x" * 200}, "inputs", MAX_VALUE_BYTES)
    monkeypatch.setenv("LOOPENGT_MAX_VALUE_BYTES", "lots")
    with pytest.raises(LoopengtError, match="LOOPENGT_MAX_VALUE_BYTES must be a whole number"):
        checked({}, "inputs")


def test_depth_is_measured_without_recursion() -> None:
    value: Any = 0
    for _ in range(100_000):
        value = [value]
    with pytest.raises(InvalidArgument, match="64 levels"):
        checked(value, "output")


def test_a_path_swapped_for_a_symlink_after_the_check_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("top secret")
    project = tmp_path / "project"
    project.mkdir()
    (project / "loop.yaml").write_text("name: x")
    resolved = confine("loop.yaml", project)
    (project / "loop.yaml").unlink()
    (project / "loop.yaml").symlink_to(secret)  # the race: after the check, before the open
    with pytest.raises(UnreadableFile, match="symbolic link") as caught:
        read_regular(resolved, MAX_SPEC_BYTES, root=project)
    assert "top secret" not in str(caught.value)


def test_a_folder_on_the_way_swapped_for_a_symlink_is_caught(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "loop.yaml").write_text("name: outside")
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "specs" / "loop.yaml").write_text("name: x")
    resolved = confine("specs/loop.yaml", project)
    (project / "specs" / "loop.yaml").unlink()
    (project / "specs").rmdir()
    (project / "specs").symlink_to(tmp_path / "outside")
    with pytest.raises(UnreadableFile, match="outside the project root"):
        read_regular(resolved, MAX_SPEC_BYTES, root=project)


@pytest.mark.parametrize("given_path", ["../x", "/etc", "a/../../x", ".loopengt/../.."])
def test_paths_outside_the_root_are_refused(tmp_path: Path, given_path: str) -> None:
    with pytest.raises(OutsideRoot, match="outside the project root"):
        confine(given_path, tmp_path)


@pytest.mark.parametrize("given_path", ["try", "a/b", str(Path("/x/.loopengt/worktrees/y"))])
def test_a_worktree_name_lands_in_the_worktree_folder(tmp_path: Path, given_path: str) -> None:
    folder = tmp_path.resolve() / ".loopengt" / "worktrees"
    if given_path.startswith("/"):
        with pytest.raises(OutsideRoot):
            worktree_path(given_path, tmp_path)
    else:
        assert folder in worktree_path(given_path, tmp_path).parents


def test_the_envelope_of_a_line_too_deep_to_parse() -> None:
    line = (
        '{"jsonrpc": "2.0", "params": {"x": '
        + "[" * 5000
        + "]" * 5000
        + '}, "id": "a\\"b", "method": "tools/call"}'
    )
    assert envelope(line) == ('a"b', "tools/call", 5002)
    answer = answer_to(line)
    assert answer is not None
    dumped = answer.model_dump(by_alias=True, exclude_none=True)
    assert dumped["id"] == 'a"b'
    assert dumped["result"]["isError"] is True
    assert "LOOPENGT_MAX_JSON_DEPTH" in dumped["result"]["content"][0]["text"]
    assert (
        answer_to('{"jsonrpc": "2.0", "method": "notifications/x", "params": ' + "[" * 300 + "]" * 300 + "}")
        is None
    )
    parse_error = answer_to("not json")
    assert parse_error is not None
    assert parse_error.model_dump()["error"]["code"] == -32700


def test_an_agent_output_too_deep_for_the_parser_is_a_clear_error() -> None:
    from loopengt_server.headless import parse_output

    assert parse_output('{"a": [1]}') == {"a": [1]}
    assert parse_output("plain text") == "plain text"
    with pytest.raises(InvalidArgument, match="LOOPENGT_MAX_JSON_DEPTH"):
        parse_output("[" * 50_000 + "]" * 50_000)


def test_problems_of_a_spec_file_read_for_a_client_never_quote_its_values() -> None:
    from loopengt_core.engine.validation import SpecError, load_spec

    text = "name: x\ngoal: g\nagents: [{name: a}]\nsteps: [{name: s, run: 'echo \"S3CRET'}]\npolicy: {max_turns: S3CRET}\n"
    with pytest.raises(SpecError) as quoted:
        load_spec(text, source="loop.yaml")
    assert "S3CRET" in str(quoted.value)  # the person's own file, at the terminal: quoted
    with pytest.raises(SpecError) as unquoted:
        load_spec(text, source="loop.yaml", quote=False)
    assert "S3CRET" not in str(unquoted.value)
    assert "steps[0].run" in str(unquoted.value)
    assert "policy.max_turns" in str(unquoted.value)
