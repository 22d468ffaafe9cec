"""Regression baselines: `loopengt eval RUN --save-baseline NAME` / `--baseline NAME` over real runs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from mcp_helpers import run_cli

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.service.baseline import BaselineMetrics, compare, regressed, tolerances
from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

SPEC = textwrap.dedent(
    """\
    name: counted
    goal: Say ok
    agents: [{name: a}]
    steps:
      - name: answer
        agent: a
        output_schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}
        verification_gates: [is_ok]
    policy:
      max_turns: 10
      retry: {max_retries: 3, backoff: none, initial_delay_seconds: 0}
      stuck: false  # the same failure each time: this loop is meant to fail, not pause as stuck
      verification_gates:
        - {name: is_ok, condition: "output.ok == `true`"}
    """
)
# Fails its first FAILS attempts; reports TOKENS tokens per task through $LOOPENGT_USAGE_FILE.
AGENT = textwrap.dedent(
    """\
    import json, os, sys
    task = json.load(sys.stdin)
    with open(os.environ["LOOPENGT_USAGE_FILE"], "w") as usage:
        json.dump({"input_tokens": int(os.environ.get("TOKENS", "100")), "output_tokens": 0}, usage)
    print(json.dumps({"ok": task["attempt"] > int(os.environ.get("FAILS", "0"))}))
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "loop.yaml").write_text(SPEC, encoding="utf-8")
    (tmp_path / "agent.py").write_text(AGENT, encoding="utf-8")
    return tmp_path


def run(project: Path, run_id: str, *, fails: int = 0, tokens: int = 100) -> None:
    script = f"FAILS={fails} TOKENS={tokens} python3 agent.py"
    done = run_cli("run", "loop.yaml", "--agent", f"sh -c '{script}'", "--run-id", run_id, "-q", cwd=project)
    assert done.returncode == (0 if fails <= 3 else 1), done.stdout + done.stderr


def test_a_saved_baseline_passes_the_same_run_and_fails_a_worse_one_with_a_table(project: Path) -> None:
    run(project, "good")
    saved = run_cli("eval", "good", "--save-baseline", "main", cwd=project)
    assert saved.returncode == 0, saved.stderr
    assert "saved baseline main of run good to loopengt-baselines/main.json" in saved.stdout
    kept = json.loads((project / "loopengt-baselines" / "main.json").read_text(encoding="utf-8"))
    assert kept["format"] == "loopengt-baseline"
    assert kept["metrics"]["attempts"] == {"answer": 1}
    assert kept["metrics"]["gate_pass_rates"]["is_ok"] == 1.0
    assert kept["metrics"]["tokens"] == 100

    same = run_cli("eval", "good", "--baseline", "main", cwd=project)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no regression" in same.stdout

    run(project, "worse", fails=2, tokens=100)
    worse = run_cli("eval", "worse", "--baseline", "main", cwd=project)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    lines = {line.split()[0]: line.split() for line in worse.stdout.splitlines() if line.strip()}
    assert lines["total_turns"][1:] == ["1", "3", "<=", "1.25", "regressed"]
    assert lines["attempts[answer]"][-1] == "regressed"
    assert lines["pass_rate[is_ok]"][1:] == ["100%", "33%", ">=", "90%", "regressed"]
    assert lines["tokens"][1:3] == ["100", "300"]
    assert "4 regressed: total_turns, attempts[answer], pass_rate[is_ok], tokens" in worse.stdout

    allowed = run_cli(
        "eval",
        "worse",
        "--baseline",
        "main",
        "--tolerance",
        "3",
        "--tolerance",
        "gates=0.7",
        "--json",
        cwd=project,
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    answer = json.loads(allowed.stdout)
    assert answer["regressed"] is False
    assert answer["tolerance"]["gates"] == 0.7
    assert answer["tolerance"]["turns"] == 3.0


def test_a_failed_run_regresses_against_a_completed_baseline(project: Path) -> None:
    run(project, "good")
    folder = project / "ci" / "baselines"
    assert (
        run_cli("eval", "good", "--save-baseline", "main", "--baselines", str(folder), cwd=project).returncode
        == 0
    )
    run(project, "broken", fails=9)
    broken = run_cli(
        "eval", "broken", "--baseline", "main", "--baselines", str(folder), "--json", cwd=project
    )
    assert broken.returncode == 1
    rows = {r["metric"]: r for r in json.loads(broken.stdout)["rows"]}
    assert rows["run_status"]["current"] == "failed"
    assert rows["run_status"]["verdict"] == "regressed"


def test_nothing_to_compare_exits_2_with_one_line(project: Path) -> None:
    run(project, "good")
    missing = run_cli("eval", "good", "--baseline", "nope", cwd=project)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "loopengt: no baseline at loopengt-baselines/nope.json; save one with: "
        "loopengt eval RUN_ID --save-baseline nope"
    )
    bad = run_cli("eval", "good", "--baseline", "main", "--tolerance", "speed=1", cwd=project)
    assert bad.returncode == 2
    assert "unknown metric 'speed' (use turns, attempts, gates, time, spend)" in bad.stderr
    assert run_cli("eval", "good", "--save-baseline", "../x", cwd=project).returncode == 2


def _metrics(**changes: object) -> BaselineMetrics:
    base = {
        "run_status": "completed",
        "total_turns": 4,
        "total_duration_seconds": 10.0,
        "attempts": {"a": 2},
        "gate_pass_rates": {"g": 0.5},
        "tokens": None,
        "cost_usd": 0.10,
    }
    return BaselineMetrics.model_validate({**base, **changes})


def test_time_has_a_one_second_slack_and_spend_counts_only_when_known() -> None:
    rows = compare(_metrics(total_duration_seconds=0.2), _metrics(total_duration_seconds=1.1), tolerances([]))
    assert regressed(rows) == []
    rows = compare(_metrics(), _metrics(total_duration_seconds=15.5, tokens=10, cost_usd=0.2), tolerances([]))
    by_metric = {r.metric: r.verdict for r in rows}
    assert by_metric["total_duration_seconds"] == "regressed"
    assert by_metric["tokens"] == "unknown"
    assert by_metric["cost_usd"] == "regressed"


def test_steps_and_gates_of_a_changed_spec_are_shown_not_counted() -> None:
    rows = compare(_metrics(), _metrics(attempts={"b": 9}, gate_pass_rates={"h": 0.0}), tolerances([]))
    verdicts = {r.metric: r.verdict for r in rows}
    assert verdicts["attempts[a]"] == "missing"
    assert verdicts["attempts[b]"] == "new"
    assert verdicts["pass_rate[h]"] == "new"
    assert regressed(rows) == []


@pytest.mark.parametrize("given", ["-1", "nan", "x", "turns=", "speed=1"])
def test_bad_tolerances_are_refused_naming_what_is_allowed(given: str) -> None:
    with pytest.raises(InvalidArgument, match="--tolerance"):
        tolerances([given])


def test_a_run_still_going_is_not_compared_nor_saved(project: Path) -> None:
    runs = Runs(FileStore(project / ".loopengt"), cwd=project)
    runs.start_run(spec_path="loop.yaml", run_id="going")
    for args in (("--save-baseline", "main"), ("--baseline", "main")):
        refused = run_cli("eval", "going", *args, cwd=project)
        assert refused.returncode == 2
        assert refused.stderr.strip() == "loopengt: run going is running: baselines compare runs that ended"
    assert not (project / "loopengt-baselines").exists()
