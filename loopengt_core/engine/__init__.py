"""The pure engine: given a run's state, an input and the time, decide the events that follow.

`loopengt_core.engine.core.Engine` makes the decisions, one `loopengt_core.engine.transaction.Transaction`
at a time; what a task tells its agent is in `loopengt_core.engine.briefing`, the budget and the time
limit in `loopengt_core.engine.budgeting`, and what others read out of a state in
`loopengt_core.engine.reading`. This package exports what importers use.
"""

from loopengt_core.engine.core import Engine
from loopengt_core.engine.reading import next_deadline, open_tasks_text
from loopengt_core.engine.transaction import (
    COMMAND_OUTPUT_CHARS,
    DEFAULT_COMMAND_TIMEOUT_SECONDS,
    OUTCOMES,
    Outcome,
    backoff_delay,
)

__all__ = [
    "COMMAND_OUTPUT_CHARS",
    "DEFAULT_COMMAND_TIMEOUT_SECONDS",
    "OUTCOMES",
    "Engine",
    "Outcome",
    "backoff_delay",
    "next_deadline",
    "open_tasks_text",
]
