"""The `--agent` options as commands: one default command and one per role, checked before a run exists."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.model.spec import LoopSpec


def agent_argv(agent: str, cwd: Path) -> list[str]:
    """`--agent` as an argv whose program exists; InvalidArgument saying how to fix it otherwise.

    Checked before a run is created, so that a typo never leaves a run nobody drives.
    """
    example = "--agent 'python3 examples/agent.py'"
    try:
        argv = shlex.split(agent)
    except ValueError as exc:
        raise InvalidArgument(
            f"--agent {agent!r} is not a command line ({exc}); quote it as in a shell, e.g. {example}"
        ) from None
    if not argv:
        raise InvalidArgument(f"--agent needs a command, e.g. {example}")
    program = argv[0]
    if "/" in program or (os.altsep and os.altsep in program):
        path = Path(program) if Path(program).is_absolute() else cwd / program
        if not path.is_file():
            raise InvalidArgument(
                f"agent command not found: {program} (no such file from {cwd}); fix the path in --agent"
            )
        if not os.access(path, os.X_OK):
            raise InvalidArgument(
                f"agent command {program} is not executable: `chmod +x {program}`, or run it through its "
                f"interpreter (--agent 'python3 {program}')"
            )
    elif shutil.which(program) is None:
        raise InvalidArgument(
            f"agent command not found: {program!r} is not on PATH; install it, give its path, or fix --agent "
            f"(e.g. {example})"
        )
    return argv


ROLE_PREFIX = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63})=(.*)$", re.DOTALL)


@dataclass(frozen=True)
class AgentCommand:
    """One agent command: its argv and the text it was given as (its identity, `headless:<text>`)."""

    text: str
    argv: list[str]

    @property
    def identity(self) -> str:
        """Who submits its outputs: each command line is its own caller (judge gates refuse the same one)."""
        return f"headless:{self.text}"


@dataclass(frozen=True)
class Agents:
    """The agent commands of a headless run: `--agent CMD` (every role) and `--agent ROLE=CMD` (one role)."""

    default: AgentCommand | None
    roles: dict[str, AgentCommand] = field(default_factory=dict)

    def for_role(self, role: str) -> AgentCommand:
        """The command that does `role`'s tasks: its own `--agent ROLE=CMD`, else the bare `--agent CMD`.

        Raises:
            InvalidArgument: no command serves the role.
        """
        found = self.roles.get(role, self.default)
        if found is None:
            given = ", ".join(self.roles)
            raise InvalidArgument(
                f"no agent command for role '{role}' (--agent given for: {given}); add --agent {role}=CMD, "
                "or a bare --agent CMD for every other role"
            )
        return found

    def check(self, spec: LoopSpec) -> None:
        """Before driving: every named role exists, and no judge gate's judge is its judged step's command."""
        names = [a.name for a in spec.agents]
        for role in self.roles:
            if role not in names:
                raise InvalidArgument(
                    f"--agent {role}=...: the spec has no agent '{role}' (agents: {', '.join(names) or 'none'})"
                )
        gates = {g.name: g for g in spec.policy.verification_gates}
        for step in spec.steps:
            for name in step.verification_gates:
                rule = gates[name].judge if name in gates else None
                if rule is None or step.agent is None:
                    continue
                worker, judge = self.for_role(step.agent), self.for_role(rule.agent)
                if worker.text == judge.text:
                    raise InvalidArgument(
                        f"judge gate '{name}' has role '{rule.agent}' judge step '{step.name}' (role "
                        f"'{step.agent}'), but both roles go to the same agent command ({worker.text!r}), "
                        f"which would judge its own output; give the judge its own: --agent {rule.agent}=CMD"
                    )


def agents_from(given: list[str], cwd: Path) -> Agents:
    """`--agent` options as Agents: `ROLE=CMD` for one role (repeatable), a bare `CMD` for the others.

    Raises InvalidArgument (saying how to fix it) for a command that cannot be found, a role given twice
    or two bare commands.
    """
    default: AgentCommand | None = None
    roles: dict[str, AgentCommand] = {}
    for text in given:
        match = ROLE_PREFIX.match(text)
        if match is not None:
            role, command = match.group(1), match.group(2).strip()
            if role in roles:
                raise InvalidArgument(f"--agent {role}=... is given twice; give each role one command")
            roles[role] = AgentCommand(command, agent_argv(command, cwd))
        elif default is not None:
            raise InvalidArgument(
                "--agent CMD (for every role) is given twice; name the role of the others: --agent ROLE=CMD"
            )
        else:
            default = AgentCommand(text, agent_argv(text, cwd))
    return Agents(default, roles)
