"""Big runs and many runs stay cheap (issue 22, cases 5, 8 and 9).

These tests assert how cost grows (work done per call, bytes and events read, files held open, parses),
never wall-clock seconds; bench/big_runs.py prints the timings at full size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from loopengt_core import patterns
from loopengt_core.runs import Runs
from loopengt_core.spec import LoopSpec
from loopengt_core.store.files import FileStore


def chain_spec(n: int, pattern: str = "sequential") -> dict[str, Any]:
    """n agent steps, each depending on the one before (declared in reverse, so ordering has work to do)."""
    steps = [
        {"name": f"s{i}", "agent": "w", "dependencies": [f"s{i - 1}"] if i else []} for i in range(n)
    ]
    return {
        "name": "chain",
        "pattern": pattern,
        "workspace": "none",
        "agents": [{"name": "w"}],
        "steps": list(reversed(steps)),
        "policy": {"max_turns": n + 10},
    }


# --- case 8: step ordering ---------------------------------------------------------------------


def _best_of(runs: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def test_step_order_grows_linearly_with_the_spec() -> None:
    """Ordering 4x the steps costs about 4x (n log n), not 64x as the old set-rebuilding loop did."""
    small = LoopSpec.model_validate(chain_spec(400))
    large = LoopSpec.model_validate(chain_spec(1600))
    assert patterns._order(large) == [f"s{i}" for i in range(1600)]
    ratio = _best_of(5, lambda: patterns._order(large)) / _best_of(5, lambda: patterns._order(small))
    assert ratio < 12, f"ordering 4x the steps cost {ratio:.1f}x"


def test_step_order_is_computed_once_per_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sequential run asks for the order on every transition; it is computed once for the spec."""
    calls: list[int] = []
    real = patterns._order
    monkeypatch.setattr(patterns, "_order", lambda spec: calls.append(1) or real(spec))
    runs = Runs(FileStore(tmp_path / "store"), cwd=tmp_path)
    view = runs.start_run(spec=chain_spec(30))
    for _ in range(20):
        view = runs.step(view.run_id, view.tasks[0].task_id, {"ok": True})
    assert view.turn == 20
    assert len(calls) == 1


# --- case 5: templates ------------------------------------------------------------------------


def test_templates_are_read_and_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 list_templates calls (a burst of clients) parse each template's YAML at most once in all."""
    import yaml

    from loopengt_core import catalog

    catalog._files.cache_clear()
    catalog._infos.cache_clear()
    parses: list[int] = []
    real = yaml.safe_load
    monkeypatch.setattr(yaml, "safe_load", lambda text: parses.append(1) or real(text))
    first = catalog.list_templates()
    for _ in range(199):
        assert catalog.list_templates() == first
        catalog.template_text(first[0].name)
    assert len(parses) == len(first) > 0
