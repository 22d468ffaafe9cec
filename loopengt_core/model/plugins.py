"""Entry-point plugins: other packages extend loopengt through `importlib.metadata` entry point groups.

    loopengt.stores   name: a URL scheme (`mystore`); object: a factory `(location, *, snapshot_every) -> Store`
    loopengt.clients  name: the client's name; object: a `ClientRecord` (or a callable returning one)

A plugin is loaded only when something asks for its group. One that cannot be imported, or gives an
object of the wrong kind, becomes a `PluginProblem`: `loopengt doctor` lists those, and the server keeps
running without it; the error reaches a caller only when it asks for exactly that plugin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

STORES = "loopengt.stores"
CLIENTS = "loopengt.clients"


@dataclass(frozen=True)
class Plugin:
    """One loaded entry point: its name in the group, what it points at, the package that provides it."""

    group: str
    name: str
    target: str  # "module:attribute", as the package declared it
    package: str  # distribution name and version, "mystore 1.0"; "?" when the metadata has none
    obj: Any


@dataclass(frozen=True)
class PluginProblem:
    """An entry point that could not be used, and why (shown by `loopengt doctor`)."""

    group: str
    name: str
    target: str
    package: str
    reason: str

    def describe(self) -> str:
        """One line for a person: which plugin, from which package, and why it cannot load."""
        return f"{self.group} plugin {self.name!r} ({self.target}, from {self.package}): {self.reason}"


Check = Callable[[str, Any], str | None]
"""Says what is wrong with a loaded object (None when it is fine); a group's own rules."""


def _package(entry: metadata.EntryPoint) -> str:
    dist = entry.dist
    if dist is None:
        return "?"
    return f"{dist.metadata['Name'] or dist.name} {dist.version}"


@functools.cache
def _load(group: str, check: Check) -> tuple[tuple[Plugin, ...], tuple[PluginProblem, ...]]:
    plugins: dict[str, Plugin] = {}
    problems: list[PluginProblem] = []
    for entry in metadata.entry_points(group=group):
        package = _package(entry)
        if entry.name in plugins:
            problems.append(
                PluginProblem(
                    group,
                    entry.name,
                    entry.value,
                    package,
                    f"the name is taken by {plugins[entry.name].package} ({plugins[entry.name].target})",
                )
            )
            continue
        try:
            obj = entry.load()
        except Exception as exc:  # noqa: BLE001 - any error in a plugin's import is the plugin's problem
            problems.append(
                PluginProblem(group, entry.name, entry.value, package, f"{type(exc).__name__}: {exc}")
            )
            continue
        wrong = check(entry.name, obj)
        if wrong is not None:
            problems.append(PluginProblem(group, entry.name, entry.value, package, wrong))
            continue
        plugins[entry.name] = Plugin(group, entry.name, entry.value, package, obj)
    return tuple(plugins.values()), tuple(problems)


def load_group(group: str, check: Check) -> tuple[tuple[Plugin, ...], tuple[PluginProblem, ...]]:
    """The usable plugins of `group` and the problems of the others; read once per process.

    `check` is the group's rule for the loaded object; pass the same function each time (it is part of
    the cache key).
    """
    return _load(group, check)


def forget() -> None:
    """Read the entry points again on the next call (after installing or removing a package)."""
    _load.cache_clear()
