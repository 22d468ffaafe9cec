"""The CLI's wording: plurals, and the service's messages said to a person at a terminal.

loopengt_core writes its messages (errors, `next_action`) for the agent on the other end of MCP, naming
tools (`get_run(run_id='r')`). The CLI shows the same messages to a person: `for_person` rewrites each
tool call the core's messages use into the command that does it (`loopengt show r`). The tests hold
every such message to it, so a new tool-call wording in the core shows up as a failing test.
"""

from __future__ import annotations

import re

_RUN = r"'(?P<run>[^']+)'"

# (pattern, replacement), applied in order; each names the message it rewrites
_PERSON: list[tuple[re.Pattern[str], str]] = [
    # TransitionKernel.known
    (re.compile(r"list_runs shows the runs there are"), "`loopengt runs` lists the runs there are"),
    # view.next_action: one open task / several
    (
        re.compile(
            r"Do task '(?P<task>[^']+)' as its instructions say, then submit the result with "
            rf"step\(run_id={_RUN}, task_id='[^']+', output=\.\.\.\)\."
        ),
        r"Task '\g<task>' waits for an agent: `loopengt run --resume \g<run> --agent CMD` gives it to CMD "
        "(or an editor connected to loopengt does it).",
    ),
    (
        re.compile(
            r"Do the (?P<n>\d+) open tasks \((?P<tasks>[^)]*)\), in any order or in parallel; submit each with "
            rf"step\(run_id={_RUN}, task_id=\.\.\., output=\.\.\.\)\."
        ),
        r"\g<n> tasks (\g<tasks>) wait for an agent: `loopengt run --resume \g<run> --agent CMD` gives them "
        "to CMD (or an editor connected to loopengt does them).",
    ),
    # view.next_action: waiting for a person (the person is the one reading this)
    (re.compile(r"Wait: gate"), "Gate"),
    (re.compile(r"\. You cannot approve it; call get_run later\."), "."),
    # view.next_action: commands running, nothing open, failed
    (
        re.compile(rf"call get_run\(run_id={_RUN}\) for the result\."),
        r"`loopengt show \g<run>` shows the result.",
    ),
    (
        re.compile(rf"call resume\(run_id={_RUN}\) to continue the run\."),
        r"`loopengt resume \g<run>` continues the run.",
    ),
    (
        re.compile(rf"with resume\(run_id={_RUN}, checkpoint_id=\.\.\.\)"),
        r"with `loopengt resume \g<run> --checkpoint CHECKPOINT_ID` (`loopengt show \g<run> --trace` lists them)",
    ),
    # view.with_drift
    (
        re.compile(rf"then resume\(run_id={_RUN}, accept_drift=true\) records them"),
        r"then `loopengt resume \g<run> --accept-drift` records them",
    ),
    # Forks._continue (WorkspaceDrift)
    (
        re.compile(r"resume with accept_drift=true \((`loopengt resume [^`]+ --accept-drift`)\)"),
        r"run \1",
    ),
    # view.next_action: paused for a person (setup)
    (re.compile(rf" \(or resume\(run_id={_RUN}\)\)"), ""),
    (re.compile(r" An agent: tell the person; until then there is nothing for you to do\."), ""),
    # runs.resume
    (
        re.compile(
            r"worktree needs checkpoint_id: the worktree holds a checkpoint's files "
            r"\(take one with checkpoint, then resume\(run_id, checkpoint_id, worktree=PATH\)\)"
        ),
        "--worktree needs --checkpoint: the worktree holds a checkpoint's files (take one with "
        "`loopengt checkpoint RUN_ID`, then `loopengt resume RUN_ID --checkpoint ID --worktree PATH`)",
    ),
]

# what is left of a tool call after the rewrites: a test asserts none of it reaches the terminal
TOOL_CALL = re.compile(
    r"\b(?:start_run|step|get_run|list_runs|cancel_run|resume|checkpoint|validate_spec|list_templates)\("
    r"|\blist_runs\b|\bget_run\b|accept_drift=|checkpoint_id="
)


def for_person(text: str) -> str:
    """`text` (a core message for an agent) with tool calls replaced by the CLI commands that do them."""
    for pattern, replacement in _PERSON:
        text = pattern.sub(replacement, text)
    return text


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 turn`, `2 turns`, `0 turns` (`words` for irregular plurals)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"
