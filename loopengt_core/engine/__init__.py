"""The pure engine: given a run's state, an input and the time, decide the events that follow.

`loopengt_core.engine.core.Engine` holds what a spec decides (steps, agents, gates, limits) and the
entry points, one `loopengt_core.engine.transaction.Transaction` per decision. The decisions are plain
functions taking the engine, by collaborator: a submitted output's evaluation
(`loopengt_core.engine.evaluation`), judge gates (`loopengt_core.engine.judging`), issuing tasks
(`loopengt_core.engine.issuing`), commands (`loopengt_core.engine.commands`), the run as a whole
(`loopengt_core.engine.lifecycle`), what a task tells its agent (`loopengt_core.engine.briefing`), the
budget and time limit (`loopengt_core.engine.budgeting`), and what others read out of a state
(`loopengt_core.engine.reading`). This package exports what importers use.
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
