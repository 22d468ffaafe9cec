"""Is this project ready: its git workspace, and the programs its spec's gates and steps (and the agent) run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from loopengt_core.store import is_directory
from loopengt_server.doctor.check import Check


def check_workspace(project: Path, store: str) -> Check:
    """Whether a run started in `project` (`workspace: auto`) can record its files in git."""
    from loopengt_core.service import workspace

    if shutil.which("git") is None:
        return Check(
            "WARN",
            "workspace",
            "git is not on PATH: runs record no files (`workspace: git` fails)",
            "install git",
        )
    problem = workspace.probe(project, exclude=(Path(store).absolute(),) if is_directory(store) else ())
    if problem is not None:
        return Check(
            "FAIL",
            "workspace",
            f"a run started here cannot record its files: {problem.replace(workspace.OR_NONE, '')}",
            "the above, or set `workspace: none` in the loop spec (its runs then record no files)",
        )
    if not workspace.is_work_tree(project)[0]:
        return Check("OK", "workspace", f"{project} is not in a git work tree: runs here record no files")
    return Check("OK", "workspace", f"runs started in {project} record their files in git")


def check_programs(spec: Path | None, agent: str | None = None, *, cwd: Path | None = None) -> list[Check]:
    """The programs a run starts (each gate's and command step's, the --agent command) that are missing here.

    A gate whose program is missing pauses its run for a person; found here, it is fixed before the run.
    """
    import shlex

    from loopengt_core.model.errors import LoopengtError
    from loopengt_core.service.specfiles import load_spec_file

    where = cwd or Path.cwd()
    wanted: list[tuple[str, str, str]] = []  # (what runs it, program, what to change instead)
    if spec is not None:
        try:
            loaded, _ = load_spec_file(where / spec)
        except LoopengtError as exc:
            return [Check("FAIL", "spec", str(exc), f"loopengt validate {spec}")]
        wanted += [
            (f"gate '{g.name}'", g.command[0], f"the gate's command in {spec}")
            for g in loaded.policy.verification_gates
            if g.command
        ]
        wanted += [(f"step '{s.name}'", s.run[0], f"the step's run in {spec}") for s in loaded.steps if s.run]
    if agent:
        argv = shlex.split(agent)
        if argv:
            wanted.append(("the agent", argv[0], "--agent"))
    checks: list[Check] = []
    found: list[str] = []
    for what, program, instead in wanted:
        path = where / program
        if "/" not in program:
            problem, fix = "is not on PATH", f"install {program} or put its folder on PATH"
        elif not path.is_file():
            problem, fix = f"does not exist in {where}", f"create {program}"
        else:
            problem, fix = "is not executable", f"chmod +x {program}"
        if shutil.which(program) if "/" not in program else os.access(path, os.X_OK) and path.is_file():
            found.append(program)
            continue
        if program == "python" and shutil.which("python3"):
            problem += " (python3 is)"
        checks.append(
            Check(
                "FAIL", "programs", f"{what} runs `{program}`, which {problem}", f"{fix}, or change {instead}"
            )
        )
    if found:
        checks.insert(0, Check("OK", "programs", "found: " + ", ".join(dict.fromkeys(found))))
    return checks
