"""Regression baselines: a run's metrics saved as JSON, and a later run compared with them.

`loopengt eval RUN --save-baseline NAME` writes `loopengt-baselines/NAME.json` (a folder meant to be
committed, unlike the store); `loopengt eval RUN --baseline NAME` compares and exits 1 when a metric
regressed past its tolerance. What is compared, and when it regresses (the defaults, `TOLERANCES`):

- `run_status`: the baseline run completed and this one did not (no tolerance);
- `total_turns` and each step's `attempts`: more than baseline x (1 + 0.25);
- each gate's pass rate: lower than the baseline's by more than 0.10 (rates run 0 to 1);
- `total_duration_seconds`: more than baseline x (1 + 0.50) and more than 1 s above it (time is noisy);
- `tokens` and `cost_usd`: more than baseline x (1 + 0.25), when both runs reported them.

A step or gate in only one of the runs (the spec changed) is shown, never counted as a regression.
The comparison is pure (metrics in, rows out); only `save` and `load` touch files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from loopengt_core.model.errors import InvalidArgument, LoopengtError, NotFound
from loopengt_core.service.metrics import RunMetrics

FORMAT: Literal["loopengt-baseline"] = "loopengt-baseline"
VERSION = 1
DEFAULT_FOLDER = "loopengt-baselines"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# kind -> tolerance: relative growth allowed, except `gates` (an absolute drop of the pass rate)
TOLERANCES: dict[str, float] = {"turns": 0.25, "attempts": 0.25, "gates": 0.10, "time": 0.50, "spend": 0.25}
TIME_SLACK_SECONDS = 1.0

Verdict = Literal["ok", "regressed", "improved", "new", "missing", "unknown"]


class BaselineMetrics(BaseModel):
    """The metrics a baseline keeps: the ones a regression shows in."""

    run_status: str = Field(description="The run's status when the baseline was taken.")
    total_turns: int = Field(description="Accepted submissions.")
    total_duration_seconds: float = Field(description="From the run's first event to its end.")
    attempts: dict[str, int] = Field(description="Step -> attempts over the run.")
    gate_pass_rates: dict[str, float | None] = Field(description="Gate -> passed / (passed + failed).")
    tokens: int | None = Field(None, description="Tokens reported over the run; None when none were.")
    cost_usd: float | None = Field(None, description="Cost reported over the run; None when none was.")

    @classmethod
    def of(cls, metrics: RunMetrics) -> BaselineMetrics:
        """The metrics a baseline keeps, taken from a run's metrics (tokens and cost only where reported)."""
        spend = metrics.spend
        return cls(
            run_status=metrics.run_status,
            total_turns=metrics.total_turns,
            total_duration_seconds=metrics.total_duration_seconds,
            attempts={a.step: a.attempts for a in metrics.attempts},
            gate_pass_rates={g.gate: g.pass_rate for g in metrics.gates},
            tokens=spend.tokens if spend.reported else None,
            cost_usd=spend.cost_usd if spend.costed else None,
        )


class Baseline(BaseModel):
    """One saved baseline file."""

    format: Literal["loopengt-baseline"] = Field(
        FORMAT,
        description="Names the file: always `loopengt-baseline`.",
    )
    version: int = Field(VERSION, description="The file format's version.")
    name: str = Field(description="The baseline's name (its file is named after it).")
    run_id: str = Field(description="The run it was taken from.")
    loop: str = Field(description="The name of the loop spec the run followed.")
    metrics: BaselineMetrics = Field(description="The metrics a later run is compared with.")


@dataclass(frozen=True)
class Row:
    """One line of the comparison table."""

    metric: str
    baseline: str
    current: str
    limit: str
    verdict: Verdict


def tolerances(given: list[str]) -> dict[str, float]:
    """`--tolerance` values over the defaults: `0.3` (every kind) or `KIND=VALUE` (turns, attempts,
    gates, time, spend). Raises InvalidArgument naming the bad value and what is allowed."""
    out = dict(TOLERANCES)
    for item in given:
        kind, sep, raw = item.rpartition("=") if "=" in item else ("", "", item)
        if sep and kind not in TOLERANCES:
            raise InvalidArgument(
                f"--tolerance {item!r}: unknown metric {kind!r} (use {', '.join(TOLERANCES)})"
            )
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0:  # also refuses nan
            raise InvalidArgument(
                f"--tolerance {item!r}: give a number of at least 0, e.g. 0.25 or turns=0.5"
            )
        for name in [kind] if sep else list(out):
            out[name] = value
    return out


def _growth(metric: str, base: float, now: float, tolerance: float, slack: float = 0.0) -> Row:
    limit = max(base * (1 + tolerance), base + slack)
    verdict: Verdict = "regressed" if now > limit else "improved" if now < base else "ok"
    return Row(metric, _num(base), _num(now), f"<= {_num(limit)}", verdict)


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def compare(baseline: BaselineMetrics, current: BaselineMetrics, tolerance: dict[str, float]) -> list[Row]:
    """A row per metric: the baseline's value, this run's, the limit, and the verdict."""
    completed = baseline.run_status == "completed"
    status: Verdict = (
        "regressed" if completed and current.run_status != "completed" else
        "improved" if current.run_status == "completed" and not completed else "ok"
    )  # fmt: skip
    rows = [
        Row("run_status", baseline.run_status, current.run_status, "completed" if completed else "-", status)
    ]
    rows.append(_growth("total_turns", baseline.total_turns, current.total_turns, tolerance["turns"]))
    for step in dict.fromkeys([*baseline.attempts, *current.attempts]):
        before, now = baseline.attempts.get(step), current.attempts.get(step)
        if before is None or now is None:
            rows.append(_one_sided(f"attempts[{step}]", before, now))
        else:
            rows.append(_growth(f"attempts[{step}]", before, now, tolerance["attempts"]))
    for gate in dict.fromkeys([*baseline.gate_pass_rates, *current.gate_pass_rates]):
        rows.append(_rate(gate, baseline.gate_pass_rates, current.gate_pass_rates, tolerance["gates"]))
    rows.append(
        _growth(
            "total_duration_seconds",
            baseline.total_duration_seconds,
            current.total_duration_seconds,
            tolerance["time"],
            TIME_SLACK_SECONDS,
        )
    )
    for name, before_spend, now_spend in (
        ("tokens", baseline.tokens, current.tokens),
        ("cost_usd", baseline.cost_usd, current.cost_usd),
    ):
        if before_spend is None or now_spend is None:
            shown = [("-" if v is None else _num(v)) for v in (before_spend, now_spend)]
            rows.append(Row(name, shown[0], shown[1], "-", "unknown"))
        else:
            rows.append(_growth(name, before_spend, now_spend, tolerance["spend"]))
    return rows


def _one_sided(metric: str, before: int | None, now: int | None) -> Row:
    verdict: Verdict = "missing" if now is None else "new"
    return Row(metric, "-" if before is None else str(before), "-" if now is None else str(now), "-", verdict)


def _rate(gate: str, before: dict[str, float | None], now: dict[str, float | None], drop: float) -> Row:
    metric = f"pass_rate[{gate}]"
    if gate not in before or gate not in now:
        verdict: Verdict = "missing" if gate not in now else "new"
        return Row(metric, _pct(before.get(gate)), _pct(now.get(gate)), "-", verdict)
    base, current = before[gate], now[gate]
    if base is None or current is None:
        return Row(metric, _pct(base), _pct(current), "-", "unknown")
    limit = max(0.0, base - drop)
    verdict = "regressed" if current < limit - 1e-9 else "improved" if current > base else "ok"
    return Row(metric, _pct(base), _pct(current), f">= {_pct(limit)}", verdict)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def regressed(rows: list[Row]) -> list[Row]:
    """The rows whose metric got worse than the baseline allows (what fails `eval --baseline`)."""
    return [r for r in rows if r.verdict == "regressed"]


# --- files -----------------------------------------------------------------------------------------


def path_of(name: str, folder: str | Path | None = None) -> Path:
    """Where baseline `name` lives: `<folder>/<name>.json` (default folder: loopengt-baselines), or `name`
    itself when it is a path ending in .json."""
    if name.endswith(".json"):
        return Path(name)
    if not NAME.fullmatch(name):
        raise InvalidArgument(
            f"baseline name {name!r}: use letters, digits, '.', '_' or '-' (up to 64), or a path ending in .json"
        )
    return Path(folder or DEFAULT_FOLDER) / f"{name}.json"


def save(baseline: Baseline, path: Path) -> None:
    """Write the baseline (sorted, indented: it is meant to be read in a diff), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(baseline.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, path)
    except OSError as exc:
        scratch.unlink(missing_ok=True)
        raise LoopengtError(f"cannot write baseline {path}: {exc.strerror or exc}") from None


def load(path: Path) -> Baseline:
    """Read a baseline file. Raises NotFound (no such file) or InvalidArgument (not a baseline)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(
            f"no baseline at {path}; save one with: loopengt eval RUN_ID --save-baseline {path.stem}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read baseline {path}: {exc}") from None
    try:
        data: Any = json.loads(text)
        return Baseline.model_validate(data)
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else "not JSON"
        raise InvalidArgument(f"{path} is not a loopengt baseline ({detail})") from None
