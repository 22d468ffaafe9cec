"""`approval: {via: [...]}`: which channels may answer an approval gate, checked under the run's lock, and
the channel recorded with the answer (issue 22, case 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopengt_core.engine.validation import validate_data
from loopengt_core.model.errors import Conflict
from loopengt_core.model.events import ApprovalGiven, event_data
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore


def spec(approval: Any) -> dict[str, Any]:
    return {
        "name": "signed",
        "goal": "A change a person signs off",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [{"name": "work", "agent": "a", "verification_gates": ["sign_off"]}],
        "policy": {"verification_gates": [{"name": "sign_off", "approval": approval}]},
    }


def waiting(tmp_path: Path, approval: Any) -> Runs:
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    runs.start_run(spec=spec(approval), run_id="r")
    assert runs.step("r", "work#1", {"done": True}).status == "waiting_approval"
    return runs


def test_a_channel_the_gate_does_not_take_is_refused_and_nothing_is_recorded(tmp_path: Path) -> None:
    runs = waiting(tmp_path, {"via": ["cli", "web"]})
    before = runs.store.last_seq("r")
    with pytest.raises(Conflict, match=r"takes answers only through cli, web .*not elicitation"):
        runs.approve("r", by="someone (through claude-code 2.1)", via="elicitation", client="claude-code 2.1")
    assert runs.store.last_seq("r") == before
    assert runs.get_run("r").status == "waiting_approval"
    assert runs.approval_request("r")["via"] == ["cli", "web"]  # type: ignore[index]
    assert runs.approve("r", by="ana", via="cli").status == "completed"
    [given] = [e for e in runs.trace("r") if isinstance(e, ApprovalGiven)]
    assert (given.by, given.via, given.client) == ("ana", "cli", None)
    assert "client" not in event_data(given)


def test_plain_approval_true_takes_every_channel_and_records_the_client(tmp_path: Path) -> None:
    runs = waiting(tmp_path, True)
    assert runs.approval_request("r")["via"] == ["cli", "elicitation", "web"]  # type: ignore[index]
    runs.approve("r", by="ana (through vscode 1.99)", via="elicitation", client="vscode 1.99")
    [given] = [e for e in runs.trace("r") if isinstance(e, ApprovalGiven)]
    assert (given.via, given.client) == ("elicitation", "vscode 1.99")


@pytest.mark.parametrize(
    ("approval", "message"),
    [
        ({"via": ["email"]}, "via"),
        ({"via": []}, "via"),
        ({"channels": ["cli"]}, "channels"),
    ],
)
def test_a_bad_approval_rule_is_a_located_validation_error(approval: Any, message: str) -> None:
    loaded, problems = validate_data(spec(approval))
    assert loaded is None
    assert any(p.location.startswith("policy.verification_gates[0].approval") for p in problems), problems
    assert any(message in p.location + p.message for p in problems), problems
