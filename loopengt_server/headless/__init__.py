"""`loopengt run --agent CMD`: drive a run from the terminal, giving each agent task to a command.

The command gets the task (as in the RunView, plus `run_id` and `goal`) as JSON on stdin; its stdout
is the output (parsed as JSON when it is JSON, else the stripped text); a non-zero exit is a failed
attempt with stderr as the error. Everything else (gates, commands, retries) is the service's job.

What the person sees (`Progress`): on a terminal, one live line (step, attempt, what runs, elapsed
time) with the last lines of the agent's stderr under it, redrawn in place; elsewhere (a pipe, a log
file) plain lines only, no control characters. Gates and command steps run inside `Runs.step`; a
`Watcher` thread reads the run's events meanwhile (from its own store handle, read-only) to say which
one runs and how it ended, and `Runs(on_command=Progress.command_started)` lets the live line show the
running command's last output lines. `--quiet`: only the summary line at the end, and errors.

The parts: `agents.py` (the --agent options as commands), `calling.py` (one agent call), `progress.py` (what
the person sees), `watcher.py` (the events thread), `driving.py` (the loop to the run's end). This package
exports what the CLI uses.
"""

from loopengt_server.headless.agents import AgentCommand, Agents, agent_argv, agents_from
from loopengt_server.headless.calling import AgentCannotStart, call_agent, parse_output, read_usage
from loopengt_server.headless.driving import drive, show_end, summary_line
from loopengt_server.headless.progress import Progress
from loopengt_server.headless.watcher import Watcher

__all__ = [
    "AgentCannotStart",
    "AgentCommand",
    "Agents",
    "Progress",
    "Watcher",
    "agent_argv",
    "agents_from",
    "call_agent",
    "drive",
    "parse_output",
    "read_usage",
    "show_end",
    "summary_line",
]
