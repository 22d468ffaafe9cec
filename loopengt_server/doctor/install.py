"""Is the install sound: Python, loopengt itself, the MCP SDK, the prompts, and the gate, store and client plugins."""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

from loopengt_server.doctor.check import Check

MIN_PYTHON = (3, 11)


def check_python() -> Check:
    """FAIL unless Python is at least 3.11."""
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("OK", "python", f"{version} ({sys.executable})")
    return Check(
        "FAIL", "python", f"{version}: loopengt needs 3.11 or newer", "install Python 3.11+ and reinstall"
    )


def check_loopengt() -> Check:
    """loopengt's version, and whether the `loopengt` program editors start is on PATH."""
    try:
        version = metadata.version("loopengt")
    except metadata.PackageNotFoundError:
        version = "(not installed as a package)"
    found = shutil.which("loopengt")
    if found:
        return Check("OK", "loopengt", f"{version}, on PATH at {found}")
    here = Path(sys.prefix) / "bin" / "loopengt"
    return Check(
        "WARN",
        "loopengt",
        f"{version}, but `loopengt` is not on PATH, and editors start `loopengt serve` by name",
        f"activate the venv before starting the editor, or use the full path {here} in the client config",
    )


def check_prompts() -> Check:
    """The prompts are package data: a wheel built without them serves no prompts and installs no
    slash commands."""
    from loopengt_server.mcp.prompts import PromptsMissing, load_prompt_files, prompts_dir

    try:
        names = [p.name for p in load_prompt_files()]
    except PromptsMissing:
        return Check(
            "FAIL",
            "prompts",
            f"no prompt files in {prompts_dir()}: the MCP server serves no prompts and "
            "`init --client` installs no slash commands",
            "reinstall loopengt (pip install --force-reinstall loopengt, or pipx reinstall loopengt)",
        )
    except (OSError, ValueError) as exc:
        return Check("FAIL", "prompts", f"a prompt file cannot be read: {exc}", "reinstall loopengt")
    return Check("OK", "prompts", ", ".join(names))


def check_gate_plugins() -> list[Check]:
    """Gate types from installed packages (`loopengt.gates` entry points); one WARN per broken plugin,
    whose gates are unavailable while the server runs on without them."""
    from loopengt_core.model import gatetypes

    problems = gatetypes.plugin_problems()
    provided = gatetypes.plugin_packages()
    shown = ", ".join(f"{key} ({package})" for key, package in sorted(provided.items()))
    checks = [Check("OK", "gate plugins", shown or "none installed")] if provided or not problems else []
    return checks + [
        Check(
            "WARN",
            "gate plugins",
            f"{problem}; specs using its gates do not validate",
            f"reinstall or fix the package{f' {problem.package}' if problem.package else ''}, "
            "or uninstall it",
        )
        for problem in problems
    ]


def _requirement(name: str) -> str | None:
    """loopengt's declared requirement on `name` (e.g. 'mcp<3,>=2.3'), if the metadata has one."""
    try:
        requires = metadata.requires("loopengt") or []
    except metadata.PackageNotFoundError:
        return None
    for line in requires:
        spec = line.split(";")[0].strip()
        head = spec.split("[")[0]
        for op in ("<", ">", "=", "!", "~", " "):
            head = head.split(op)[0]
        if head.strip().lower() == name and "extra ==" not in line:
            return spec
    return None


def check_mcp() -> Check:
    """Whether the MCP SDK is installed in the version loopengt requires."""
    try:
        version = metadata.version("mcp")
    except metadata.PackageNotFoundError:
        return Check(
            "FAIL", "mcp", "the MCP SDK is not installed", 'pip install "mcp>=2.3,<3" (or reinstall loopengt)'
        )
    wanted = _requirement("mcp")
    if wanted is None:
        return Check("OK", "mcp", version)
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return Check("OK", "mcp", f"{version} (loopengt wants {wanted})")
    if Requirement(wanted).specifier.contains(version, prereleases=True):
        return Check("OK", "mcp", f"{version} (loopengt wants {wanted})")
    return Check("WARN", "mcp", f"{version}, but loopengt wants {wanted}", f'pip install "{wanted}"')


def check_plugins() -> list[Check]:
    """The installed plugins (store backends, editor clients) and every broken one, which the server skips."""
    from loopengt_core.store.plugins import store_plugins
    from loopengt_server.clients.records import client_plugins

    checks: list[Check] = []
    for what, (found, problems) in (("stores", store_plugins()), ("clients", client_plugins())):
        checks += [
            Check("FAIL", f"plugin {what}", p.describe(), f"fix or uninstall {p.package.split()[0]}")
            for p in problems
        ]
        if found:
            shown = ", ".join(f"{p.name} ({p.package})" for p in found)
            checks.append(Check("OK", f"plugin {what}", shown))
    return checks
