"""Token and money budgets: what a submission reports it used, what a run has spent, and its limits.

The server never calls a model, so spend is what agents report with `step(usage=...)`. A submission
without usage is counted as unknown (never as zero), so a spend figure always says how much of it is
known. Spend is folded from the log (`state.apply`), so budgets survive a restart.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopengt_core.model.errors import InvalidArgument

BudgetMode = Literal["audit", "enforce"]
M = TypeVar("M", bound=BaseModel)


class Usage(BaseModel):
    """What one submission's work used, as the agent's client reported it. Omitted fields are unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int | None = Field(None, ge=0, le=10**12, description="Input (prompt) tokens.")
    output_tokens: int | None = Field(None, ge=0, le=10**12, description="Output (completion) tokens.")
    cache_read_tokens: int | None = Field(None, ge=0, le=10**12, description="Tokens read from a cache.")
    cache_write_tokens: int | None = Field(None, ge=0, le=10**12, description="Tokens written to a cache.")
    cost_usd: float | None = Field(None, ge=0, le=10**9, description="What it cost, in US dollars.")
    model: str | None = Field(None, max_length=200, description="The model that did the work.")

    def tokens(self) -> int | None:
        """All tokens reported (input, output, cache read and write); None when none were."""
        counts = [self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens]
        known = [c for c in counts if c is not None]
        return sum(known) if known else None


class Spend(BaseModel):
    """Usage summed over the submissions that reported it (`reported`: with tokens, `costed`: with a cost).

    Submissions without usage are not counted here: `SpendView.unknown` says how many there were.
    """

    input_tokens: int = Field(0, description="Input (prompt) tokens reported.")
    output_tokens: int = Field(0, description="Output (completion) tokens reported.")
    cache_read_tokens: int = Field(0, description="Tokens read from a cache.")
    cache_write_tokens: int = Field(0, description="Tokens written to a cache.")
    tokens: int = Field(0, description="All tokens: input, output, cache read and cache write.")
    cost_usd: float = Field(0.0, description="What it cost, in US dollars (over the `costed` submissions).")
    reported: int = Field(
        0,
        description="Submitted tasks whose tokens are known (reported with step, or read from a transcript).",
    )
    costed: int = Field(0, description="Submitted tasks whose cost is known.")

    def add(self, usage: Usage | None, *, count: bool = True) -> None:
        """Add a task's usage; `count`: it is the first usage known for that task (reported, costed)."""
        self._shift(usage, 1)
        if count:
            self.count(usage)

    def remove(self, usage: Usage | None) -> None:
        """Take back usage added without `count` (a transcript's, replaced by what the agent reported)."""
        self._shift(usage, -1)

    def count(self, usage: Usage | None) -> None:
        """One more task whose tokens (and cost) are known."""
        if usage is not None and usage.tokens() is not None:
            self.reported += 1
        if usage is not None and usage.cost_usd is not None:
            self.costed += 1

    def _shift(self, usage: Usage | None, sign: int) -> None:
        if usage is None:
            return
        tokens = usage.tokens()
        if tokens is not None:
            self.input_tokens += sign * (usage.input_tokens or 0)
            self.output_tokens += sign * (usage.output_tokens or 0)
            self.cache_read_tokens += sign * (usage.cache_read_tokens or 0)
            self.cache_write_tokens += sign * (usage.cache_write_tokens or 0)
            self.tokens += sign * tokens
        if usage.cost_usd is not None:
            self.cost_usd = round(self.cost_usd + sign * usage.cost_usd, 6)


def summed(first: Usage | None, second: Usage) -> Usage:
    """Two usages of one task added field by field; a field unknown in both stays unknown."""
    if first is None:
        return second
    values: dict[str, Any] = {}
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd"):
        a, b = getattr(first, name), getattr(second, name)
        if a is not None or b is not None:
            values[name] = round(a + b, 6) if name == "cost_usd" and a and b else (a or 0) + (b or 0)
    model = second.model or first.model
    if model:
        values["model"] = model
    return Usage.model_validate(values)  # unknown fields left unset: absent from a record


class SpendView(Spend):
    """Spend as callers see it: with how many submissions there were and how many reported nothing."""

    submissions: int = Field(0, description="Submissions (success or failure) so far.")
    unknown: int = Field(0, description="Submissions that reported no tokens: their spend is unknown, not 0.")
    cost_unknown: int = Field(0, description="Submissions that reported no cost: cost_usd is a lower bound.")

    @classmethod
    def of(cls, spend: Spend, submissions: int) -> SpendView:
        """The view of `spend` over `submissions` submissions: those without usage are counted as unknown,
        never as 0."""
        return cls(
            **spend.model_dump(),
            submissions=submissions,
            unknown=max(0, submissions - spend.reported),
            cost_unknown=max(0, submissions - spend.costed),
        )


def usage_text(usage: Usage) -> str:
    """One submission's (or transcript read's) usage for a person: `3,000 tokens, $0.01, model m`."""
    tokens = usage.tokens()
    parts = [f"{tokens:,} tokens" if tokens is not None else "tokens unknown"]
    parts.append(f"${usage.cost_usd:g}" if usage.cost_usd is not None else "cost unknown")
    return ", ".join(parts + ([f"model {usage.model}"] if usage.model else []))


def spend_text(spend: Spend, submissions: int | None = None) -> str:
    """Spend for a person: `12,000 tokens, $0.04` and how many submissions reported nothing."""
    tokens = f"{spend.tokens:,} tokens" if spend.reported or spend.tokens else "tokens unknown"
    cost = f"${spend.cost_usd:g}" if spend.costed else "cost unknown"
    text = f"{tokens}, {cost}"
    if submissions is not None and submissions > spend.reported:
        text += f" ({submissions - spend.reported} of {submissions} submissions reported no usage)"
    return text


class BudgetLimits(BaseModel):
    """Limits on spend; each is optional. Also what `resume(budget=...)` raises."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = Field(None, ge=1, description="All tokens reported (input, output, cache).")
    max_cost_usd: float | None = Field(None, gt=0, description="Reported cost in US dollars.")
    max_wall_seconds: float | None = Field(None, gt=0, description="Time since the run started.")


class Budget(BudgetLimits):
    """`policy.budget`: audit records and warns; enforce pauses the run (reason `budget`) at a limit."""

    mode: BudgetMode = Field("audit", description="audit: record and warn; enforce: pause at a limit.")
    steps: dict[str, BudgetLimits] = Field(
        default_factory=dict, description="Per step: limits on the spend of that step's tasks."
    )


def parse_usage(value: Any) -> Usage | None:
    """A client's `usage` argument, checked: a clear error naming the field, never a traceback."""
    return _parsed(Usage, value, "usage")


def parse_limits(value: Any, what: str = "budget") -> BudgetLimits | None:
    """A person's raised limits (`resume(budget=...)`), checked like `usage`."""
    return _parsed(BudgetLimits, value, what)


def _parsed(model: type[M], value: Any, what: str) -> M | None:
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidArgument(f"{what}: {_first(exc, model)}") from None


def _first(exc: ValidationError, model: type[BaseModel]) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    allowed = ", ".join([*model.model_fields] if "extra" in error["type"] else [])
    return (f"{where}: " if where else "") + error["msg"] + (f" (allowed: {allowed})" if allowed else "")


def over(limits: BudgetLimits, spend: Spend, elapsed_seconds: float | None = None) -> str | None:
    """Which limit `spend` has reached, in words; None while under every limit."""
    if limits.max_tokens is not None and spend.tokens >= limits.max_tokens:
        return f"max_tokens {limits.max_tokens} reached ({spend.tokens} tokens reported)"
    if limits.max_cost_usd is not None and spend.cost_usd >= limits.max_cost_usd:
        return f"max_cost_usd {limits.max_cost_usd:g} reached (${spend.cost_usd:g} reported)"
    if (
        limits.max_wall_seconds is not None
        and elapsed_seconds is not None
        and elapsed_seconds >= limits.max_wall_seconds
    ):
        return f"max_wall_seconds {limits.max_wall_seconds:g} reached ({elapsed_seconds:.0f} s)"
    return None


def raised(limits: BudgetLimits, given: BudgetLimits | None) -> BudgetLimits:
    """`limits` with the fields `given` sets replacing theirs."""
    if given is None:
        return limits
    return limits.model_copy(update=given.model_dump(exclude_none=True))
