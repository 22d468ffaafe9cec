"""Gate types: the registry of pure gates, built-in and from plugins (the `loopengt.gates` entry points).

A pure gate type is one object: its spec key, the type of its configuration and a `check` that judges an
output. Validation, the engine and the trace treat every registered type alike, so a new pure gate type
is one module plus one `register` call (or one entry point in an installed package).

Command, approval and judge gates are not gate types: they are not pure. A command gate waits on a process
the service runs (under a lease, with a timeout), an approval gate waits on a person and a judge gate on
another agent role; the engine asks for them with CommandRequested, ApprovalRequested and a judge's
TaskIssued (`judge.py`), and they stay fields of `spec.Gate`.

A plugin that cannot be loaded (an import error, an object of the wrong shape, a key already taken) is
logged to stderr and kept in `plugin_problems()` for `loopengt doctor`; it never stops the server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog
from pydantic import TypeAdapter

if TYPE_CHECKING:  # spec.py imports this module, and the events (imported by state) import spec.py
    from loopengt_core.model.state import GateResult

ENTRY_POINT_GROUP = "loopengt.gates"
BUILTIN_KEYS = ("condition", "loop_spec")

log = structlog.get_logger("loopengt.gates")


@dataclass(frozen=True)
class GateContext:
    """What a gate may look at besides the output: its name, the spec's feedback text for it, and the
    scope condition expressions see ({output, context, steps, attempt})."""

    gate: str
    feedback: str | None
    scope: dict[str, Any]


@runtime_checkable
class GateType(Protocol):
    """A pure gate type: the same output, configuration and scope always get the same verdict, so a
    replayed run never runs it again (its result is in the log as GatePassed or GateFailed).

    - `key`: the key that selects it in a policy gate (`min_length: {field: text, chars: 40}`).
    - `config`: the type of the value under that key (a pydantic model, or any type pydantic checks);
      a bad value is reported by validation with its location, like any other spec mistake.
    - `check(config, output, context)`: the verdict; on failure its feedback goes to the agent.
    - `problems(config)`: mistakes the type cannot express (an expression that does not compile),
      as messages located at the gate's key; return an empty list when there are none.

    Not for command or approval gates: they wait on a process or a person (see the module docstring).
    """

    key: str
    config: Any

    def check(self, config: Any, output: Any, context: GateContext) -> GateResult:
        """Check one output; the result carries the feedback for the next attempt when it fails."""

    def problems(self, config: Any) -> Iterable[str]:
        """What is wrong with a gate's configuration, found without running it (for `loopengt validate`)."""


@dataclass(frozen=True)
class PluginProblem:
    """A `loopengt.gates` entry point that could not be used, and why."""

    entry_point: str
    package: str | None
    reason: str

    def __str__(self) -> str:
        source = f" (package {self.package})" if self.package else ""
        return f"gate plugin '{self.entry_point}'{source}: {self.reason}"


@dataclass
class _Registry:
    types: dict[str, GateType] = field(default_factory=dict)
    adapters: dict[str, TypeAdapter[Any]] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)  # plugin key -> the package that provides it
    problems: list[PluginProblem] = field(default_factory=list)
    builtins_loaded: bool = False
    plugins_loaded: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)


_registry = _Registry()


def _shape_problem(candidate: Any) -> str | None:
    """Why `candidate` is not a GateType (None when it is one)."""
    key = getattr(candidate, "key", None)
    if not isinstance(key, str) or not key.isidentifier():
        return f"its `key` must be an identifier (got {key!r})"
    if not hasattr(candidate, "config"):
        return "it has no `config` (the type of the gate's configuration)"
    for method in ("check", "problems"):
        if not callable(getattr(candidate, method, None)):
            return f"it has no `{method}` method"
    try:
        TypeAdapter(candidate.config)
    except Exception as exc:  # noqa: BLE001 - pydantic raises several kinds for a type it cannot check
        return f"its `config` is not a type pydantic can check: {exc}"
    return None


def register(gate_type: GateType, *, package: str | None = None) -> None:
    """Add a pure gate type. Raises ValueError when its shape is wrong or its key is taken."""
    _builtins()
    problem = _shape_problem(gate_type)
    if problem is not None:
        raise ValueError(f"not a gate type: {problem}")
    with _registry.lock:
        if gate_type.key in _gate_fields() or gate_type.key in _registry.types:
            raise ValueError(f"gate type '{gate_type.key}' is already defined")
        _registry.types[gate_type.key] = gate_type
        _registry.adapters[gate_type.key] = TypeAdapter(gate_type.config)
        if package is not None:
            _registry.packages[gate_type.key] = package


def unregister(key: str) -> None:
    """Remove a gate type added with `register` (tests; built-ins stay)."""
    with _registry.lock:
        if key in BUILTIN_KEYS:
            raise ValueError(f"gate type '{key}' is built in")
        _registry.types.pop(key, None)
        _registry.adapters.pop(key, None)
        _registry.packages.pop(key, None)


def _gate_fields() -> frozenset[str]:
    """The keys of a policy gate (its name, command, approval, ...): no plugin may take one."""
    from loopengt_core.model.spec import Gate  # spec.py asks this module about plugin keys while it validates

    return frozenset(Gate.model_fields)


def _builtins() -> None:
    if _registry.builtins_loaded:
        return
    with _registry.lock:
        if _registry.builtins_loaded:
            return
        # imported here: speccheck validates specs, and spec.py asks this module about plugin keys
        from loopengt_core.engine.gates import CONDITION
        from loopengt_core.engine.speccheck import LOOP_SPEC

        for builtin in (CONDITION, LOOP_SPEC):
            _registry.types[builtin.key] = builtin
            _registry.adapters[builtin.key] = TypeAdapter(builtin.config)
        _registry.builtins_loaded = True


def load_plugins(*, again: bool = False) -> list[PluginProblem]:
    """Register the gate types of installed packages (once; `again` re-reads the entry points).

    Returns the problems found; each is also logged. A broken plugin is skipped, never raised.
    """
    _builtins()
    with _registry.lock:
        if _registry.plugins_loaded and not again:
            return list(_registry.problems)
        if again:
            for key in list(_registry.packages):
                unregister(key)
            _registry.problems.clear()
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            problem = _load_entry_point(entry)
            if problem is not None:
                _registry.problems.append(problem)
                log.warning(
                    "gate plugin unavailable",
                    entry_point=problem.entry_point,
                    package=problem.package,
                    reason=problem.reason,
                )
        _registry.plugins_loaded = True
        return list(_registry.problems)


def _load_entry_point(entry: metadata.EntryPoint) -> PluginProblem | None:
    package = entry.dist.name if entry.dist is not None else None
    try:
        loaded = entry.load()
        gate_type = loaded() if isinstance(loaded, type) else loaded  # a class or an instance
    except Exception as exc:  # noqa: BLE001 - an error in a plugin's import is the plugin's, not the server's
        return PluginProblem(entry.name, package, f"cannot be imported: {type(exc).__name__}: {exc}")
    try:
        register(gate_type, package=package)
    except ValueError as exc:
        return PluginProblem(entry.name, package, str(exc))
    return None


def plugin_problems() -> list[PluginProblem]:
    """Every `loopengt.gates` entry point that could not be used (loads them first)."""
    return load_plugins()


def plugin_packages() -> dict[str, str]:
    """The gate types installed packages provide: key -> package (loads them first)."""
    load_plugins()
    return dict(_registry.packages)


def find(key: str) -> GateType | None:
    """The gate type with this spec key, built-in or from a plugin; None when no installed one has it."""
    _builtins()
    if key not in _registry.types and key not in _gate_fields():
        load_plugins()
    return _registry.types.get(key)


def adapter(key: str) -> TypeAdapter[Any]:
    """The validator of a registered type's configuration."""
    if find(key) is None:
        raise KeyError(key)
    return _registry.adapters[key]


def package_of(key: str) -> str | None:
    """The installed package that provides gate type `key` (None: built in, or registered in code)."""
    return _registry.packages.get(key)


def registered_keys() -> list[str]:
    """Every registered gate type's key, built-ins first."""
    load_plugins()
    return list(_registry.types)


def judge(gate_type: GateType, config: Any, output: Any, context: GateContext) -> GateResult:
    """`gate_type.check`, with a plugin's fault (an exception, a wrong answer) turned into a failed gate
    that says so: a broken plugin fails its own gates, never the service."""
    from loopengt_core.model.state import GateResult

    try:
        result = gate_type.check(config, output, context)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug is reported to the agent and the log
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if isinstance(result, GateResult) and result.name == context.gate:
            return result
        reason = f"it returned {type(result).__name__}, not a GateResult named '{context.gate}'"
    log.warning("gate type failed", gate=context.gate, gate_type=gate_type.key, reason=reason)
    return GateResult(
        name=context.gate,
        passed=False,
        feedback=f"gate '{context.gate}' (type '{gate_type.key}') could not judge the output: {reason}",
    )


def configured(gate: Any) -> Iterator[tuple[GateType, Any]]:
    """The pure gate types a spec gate uses, with their configurations (built-ins, then plugins)."""
    _builtins()
    for key in BUILTIN_KEYS:
        value = getattr(gate, key)
        if value is not None:
            yield _registry.types[key], value
    for key, value in gate.plugin_configs().items():
        gate_type = find(key)
        if gate_type is None:
            raise KeyError(f"gate '{gate.name}' uses gate type '{key}', which no installed plugin provides")
        yield gate_type, value
