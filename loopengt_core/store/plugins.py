"""Store backends from other packages: the `loopengt.stores` entry point group.

A plugin package declares, in its pyproject.toml,

    [project.entry-points."loopengt.stores"]
    mystore = "mypackage.store:open_mystore"

and `--store mystore://...` then opens `open_mystore("mystore://...", snapshot_every=100)`, which returns
a `Store` (the protocol in `loopengt_core.store`; it must pass `tests/test_store_contract.py`, see the
README). The entry point's name is the URL scheme: lower-case letters, digits, `+`, `-`, `.`, starting with
a letter; `postgresql` and `postgres` stay the built-in backend's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from loopengt_core.model.errors import InvalidArgument, LoopengtError
from loopengt_core.model.plugins import STORES, Plugin, PluginProblem, load_group
from loopengt_core.store.errors import StoreIOError

if TYPE_CHECKING:
    from loopengt_core.store import Store

SCHEME = re.compile(r"([a-z][a-z0-9+.-]*)://")
BUILT_IN = frozenset({"postgresql", "postgres"})


def scheme_of(location: str) -> str | None:
    """The URL scheme of a `--store` location (`mystore` of `mystore://x`); None for a directory."""
    found = SCHEME.match(location)
    return found.group(1) if found else None


def _check(name: str, obj: Any) -> str | None:
    if not SCHEME.fullmatch(f"{name}://"):
        return "the entry point's name must be a URL scheme (a-z, 0-9, '+', '-', '.', starting with a letter)"
    if name in BUILT_IN:
        return f"{name}:// is the built-in PostgreSQL store's scheme"
    if not callable(obj):
        return f"it gives a {type(obj).__name__}, not a factory (location, *, snapshot_every) -> Store"
    return None


def store_plugins() -> tuple[tuple[Plugin, ...], tuple[PluginProblem, ...]]:
    """The installed store plugins, and the ones that cannot be used (for `loopengt doctor`)."""
    return load_group(STORES, _check)


def open_plugin_store(location: str, scheme: str, *, snapshot_every: int) -> Store:
    """Open `location` with the plugin named `scheme`.

    Raises:
        InvalidArgument: no usable plugin has that scheme (the message names the installed ones, or why
            the one with that name is broken).
        StoreIOError: the plugin's factory failed or did not return a Store.
    """
    from loopengt_core.store import Store

    plugins, problems = store_plugins()
    plugin = next((p for p in plugins if p.name == scheme), None)
    if plugin is None:
        broken = next((p for p in problems if p.name == scheme), None)
        if broken is not None:
            raise InvalidArgument(f"--store {scheme}://...: the store plugin is broken: {broken.describe()}")
        known = ", ".join(sorted({"postgresql", *(f"{p.name}" for p in plugins)}))
        raise InvalidArgument(
            f"--store {scheme}://...: no store backend for the scheme {scheme!r}; use a directory or one of "
            f"{known}:// (store plugins come from packages with a `{STORES}` entry point)"
        )
    try:
        store = plugin.obj(location, snapshot_every=snapshot_every)
    except LoopengtError:
        raise  # the plugin's own clear error (a bad location, an unreachable server)
    except Exception as exc:  # the plugin's failure is reported as the store's
        raise StoreIOError(
            f"the store plugin {scheme!r} ({plugin.package}) could not open the store: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(store, Store):
        raise StoreIOError(
            f"the store plugin {scheme!r} ({plugin.package}) returned a {type(store).__name__}, "
            "which does not implement the Store protocol"
        )
    return store
