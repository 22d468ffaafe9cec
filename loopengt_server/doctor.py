"""`loopengt doctor`: is this machine and this directory ready to run loops? One line per check, with a fix.

Checks only read: the file store check creates and removes one temp file, the PostgreSQL check connects
and reads the schema version without migrating anything, the workspace check records the files into a
throwaway index and object directory. Client configurations are looked for where
each editor reads them (the client records; Codex: `$CODEX_HOME/config.toml`, else `~/.codex`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tomllib
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loopengt_core.store import describe_location, is_database, is_directory, probe_database

if TYPE_CHECKING:
    from loopengt_server.clients.records import ClientRecord

Level = Literal["OK", "WARN", "FAIL"]
MIN_PYTHON = (3, 11)
_CONNECT_TIMEOUT = 5


@dataclass(frozen=True)
class Check:
    level: Level
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The check as one aligned line, with the fix when it did not pass."""
        fix = f" -> fix: {self.fix}" if self.fix and self.level != "OK" else ""
        return f"{self.level:<5} {self.name:<22} {self.detail}{fix}"


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
    from loopengt_server.prompts import PromptsMissing, load_prompt_files, prompts_dir

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
    from loopengt_core import gatetypes

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


def check_postgres(dsn: str, name: str = "store") -> Check:
    """Connect and read the schema version; never migrates (the server does that on start)."""
    from loopengt_core.errors import LoopengtError

    try:
        found = probe_database(dsn, connect_timeout_seconds=_CONNECT_TIMEOUT)
    except LoopengtError as exc:
        return Check(
            "FAIL",
            name,
            exc.message,
            "start the server, or check host, port, user, password and database in the URL",
        )
    where, current, known = found.where, found.schema_version, found.known_version
    if current is None:
        return Check(
            "OK",
            name,
            f"{where}: {found.server_version}, reachable; no loopengt tables yet (created by the first start)",
        )
    if current > known:
        return Check(
            "FAIL",
            name,
            f"{where}: schema version {current} is newer than this loopengt knows ({known})",
            "upgrade loopengt to the version the other servers run",
        )
    if current < known:
        return Check(
            "WARN",
            name,
            f"{where}: schema version {current}, this loopengt migrates it to {known} on start",
            "nothing to do unless older loopengt servers still share this database: upgrade them together",
        )
    return Check("OK", name, f"{where}: {found.server_version}, schema version {current}")


def check_file_store(location: str) -> Check:
    """Create and remove a temp file in the store (or the folder that will hold it)."""
    root = Path(location)
    target = root
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        return Check(
            "FAIL", "store", f"{target} is not a directory", f"use --store with a directory, not {target}"
        )
    probe = target / f".tmp-doctor-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        return Check(
            "FAIL",
            "store",
            f"{target} is not writable ({exc.strerror or exc})",
            "fix the folder's permissions or pass --store DIR elsewhere",
        )
    if target != root:
        return Check(
            "OK", "store", f"{root.resolve()} does not exist yet; created on first use ({target} is writable)"
        )
    runs = root / "runs"
    count = sum(1 for p in runs.iterdir() if not p.name.startswith(".")) if runs.is_dir() else 0
    return Check("OK", "store", f"{root.resolve()} is writable ({count} run{'' if count == 1 else 's'})")


def check_store(location: str) -> Check:
    """Whether the store can be opened and read: a PostgreSQL database, a store plugin's location or a folder."""
    if is_database(location):
        return check_postgres(location)
    if not is_directory(location):
        return check_plugin_store(location)
    return check_file_store(location)


def check_plugin_store(location: str) -> Check:
    """Open a store plugin's location and list its runs (what a server does first)."""
    from loopengt_core.errors import LoopengtError
    from loopengt_core.store import open_store

    where = describe_location(location)
    try:
        store = open_store(location)
        try:
            count = len(store.list_runs())
        finally:
            store.close()
    except LoopengtError as exc:
        return Check("FAIL", "store", f"{where}: {exc.message}", "fix the location or the plugin it names")
    return Check("OK", "store", f"{where} ({type(store).__name__}, {count} run{'' if count == 1 else 's'})")


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


def check_corrupt_runs(location: str) -> Check | None:
    """Load every run of a file store (snapshot, prefix CRC and tail: cheap) and name the damaged ones.

    Only for a file store that exists: opening a PostgreSQL store would migrate its schema, and
    `loopengt check` reads those.
    """
    from loopengt_core.check import damaged_runs
    from loopengt_core.errors import LoopengtError
    from loopengt_core.store import open_store

    if not is_directory(location) or not (Path(location) / "runs").is_dir():
        return None
    try:
        store = open_store(location)
    except LoopengtError as exc:
        return Check("FAIL", "runs", f"cannot open the store: {exc.message}", "fix the setting it names")
    try:
        corrupt = damaged_runs(store)
    except LoopengtError as exc:
        return Check("FAIL", "runs", f"cannot list the runs: {exc.message}", "fix the store's permissions")
    finally:
        store.close()
    if not corrupt:
        return Check("OK", "runs", "no damaged run logs")
    shown = ", ".join(corrupt[:10]) + (f" and {len(corrupt) - 10} more" if len(corrupt) > 10 else "")
    return Check(
        "FAIL",
        "runs",
        f"{len(corrupt)} corrupt run{'' if len(corrupt) == 1 else 's'} (read-only): {shown}",
        f"`loopengt check` names the damaged lines; restore them from a backup, or keep the events "
        f"before the damage with `loopengt check --repair {corrupt[0]}`",
    )


def check_workspace(project: Path, store: str) -> Check:
    """Whether a run started in `project` (`workspace: auto`) can record its files in git."""
    from loopengt_core import workspace

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


def _mentions(entry: Any) -> bool:
    return "loopengt" in json.dumps(entry, default=str)


def _store_urls(entry: Any) -> list[str]:
    """postgresql:// stores named in a server entry's args (`--store URL` or `--store=URL`)."""
    args = entry.get("args") if isinstance(entry, dict) else None
    if not isinstance(args, list):
        return []
    urls = []
    for i, arg in enumerate(args):
        value = None
        if arg == "--store" and i + 1 < len(args):
            value = args[i + 1]
        elif isinstance(arg, str) and arg.startswith("--store="):
            value = arg.split("=", 1)[1]
        if isinstance(value, str) and is_database(value):
            urls.append(value)
    return urls


def _redacted(arg: str) -> str:
    """An argument as shown: a PostgreSQL URL without its password."""
    head, sep, url = arg.partition("=") if arg.startswith("--store=") else ("", "", arg)
    return head + sep + describe_location(url)


def _command_check(client: str, shown: str, name: str, entry: dict[str, Any]) -> Check:
    command = entry.get("command")
    if entry.get("url") or entry.get("type") in ("http", "sse", "streamable-http"):
        return Check("OK", client, f"{shown}: server {name!r} over HTTP at {entry.get('url')}")
    if not isinstance(command, str):
        return Check(
            "WARN", client, f"{shown}: server {name!r} has no command", f"loopengt init --client {client}"
        )
    resolved = shutil.which(command) or (command if Path(command).is_file() else None)
    args = " ".join(_redacted(str(a)) for a in entry.get("args") or [])
    if resolved is None:
        return Check(
            "WARN",
            client,
            f"{shown}: server {name!r} runs {command!r}, which is not on PATH here",
            f"start the editor with the venv active, or set command to {Path(sys.prefix) / 'bin' / 'loopengt'}",
        )
    return Check("OK", client, f"{shown}: server {name!r} runs `{command} {args}`".rstrip())


def _load_config(toml: bool, path: Path) -> tuple[dict[str, Any] | None, str]:
    """(parsed config, '') or (None, why it does not parse)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    try:
        data = tomllib.loads(text) if toml else json.loads(text or "{}")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        return None, f"does not parse ({exc})"
    if not isinstance(data, dict):
        return None, "does not hold an object"
    return data, ""


def _hooks_check(rec: ClientRecord, project: Path) -> Check | None:
    """Both hooks registered (OK), only one (WARN), or none of ours: nothing to say (hooks are optional)."""
    from loopengt_server.clients.merge import registered_hooks

    found = registered_hooks(rec, project)
    if not found or rec.hooks is None:
        return None
    shown = rec.hooks.place.shown
    missing = [r.command for r in rec.hooks.registrations if r not in found]
    if missing:
        return Check(
            "WARN",
            rec.name,
            f"{shown}: `{', '.join(missing)}` not registered",
            f"loopengt init --client {rec.name} --stop-hook",
        )
    return Check("OK", rec.name, f"{shown}: hooks {', '.join(r.event for r in found)} registered")


def check_clients(project: Path) -> tuple[list[Check], list[tuple[str, str]]]:
    """One line per client config found here, and the postgresql:// stores those configs name."""
    checks: list[Check] = []
    stores: list[tuple[str, str]] = []
    from loopengt_server.clients.records import all_records

    for rec in all_records():
        client, key = rec.name, rec.mcp.key
        path = rec.mcp.place.path(project)
        shown = rec.mcp.place.relative if rec.mcp.place.home is None else str(path)
        if not path.is_file():
            continue
        data, problem = _load_config(rec.mcp.format == "toml", path)
        if data is None:
            # VS Code reads JSON with comments, which json refuses: only a warning there.
            level: Level = "WARN" if client == "vscode" else "FAIL"
            checks.append(
                Check(level, client, f"{shown} {problem}", "fix the syntax: the editor skips a broken file")
            )
            continue
        servers = data.get(key)
        ours = (
            {n: e for n, e in servers.items() if isinstance(e, dict) and (n == "loopengt" or _mentions(e))}
            if isinstance(servers, dict)
            else {}
        )
        if not ours:
            checks.append(
                Check("WARN", client, f"{shown} has no loopengt server", f"loopengt init --client {client}")
            )
            continue
        for name, entry in ours.items():
            checks.append(_command_check(client, shown, name, entry))
            stores.extend((f"{client} store", url) for url in _store_urls(entry))
        hooks = _hooks_check(rec, project)
        if hooks is not None:
            checks.append(hooks)
    if not any(c.level == "OK" for c in checks):
        checks.append(
            Check(
                "WARN",
                "clients",
                f"no editor in {project} is configured to start loopengt",
                "loopengt init --client NAME (claude-code, cursor, vscode, codex, antigravity)",
            )
        )
    return checks, stores


def check_programs(spec: Path | None, agent: str | None = None, *, cwd: Path | None = None) -> list[Check]:
    """The programs a run starts (each gate's and command step's, the --agent command) that are missing here.

    A gate whose program is missing pauses its run for a person; found here, it is fixed before the run.
    """
    import shlex

    from loopengt_core.errors import LoopengtError
    from loopengt_core.validation import load_spec_file

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


def run_checks(store: str, *, project: Path | None = None) -> list[Check]:
    """Every check, in the order they are shown."""
    checks = [check_python(), check_loopengt(), check_mcp(), check_prompts(), *check_gate_plugins()]
    checks.append(check_store(store))
    corrupt = check_corrupt_runs(store)
    if corrupt is not None:
        checks.append(corrupt)
    checks.append(check_workspace(project or Path.cwd(), store))
    checks += check_plugins()
    client_checks, stores = check_clients(project or Path.cwd())
    checks += client_checks
    seen = {store}
    for name, url in stores:
        if url not in seen:
            seen.add(url)
            checks.append(check_postgres(url, name))
    return checks
