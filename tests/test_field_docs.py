"""The public API documents itself: every pydantic model field has a description (so the RunView's and the
spec's JSON Schemas explain each field), and every public class, function and method has a docstring.

Every module of `loopengt_core` and `loopengt_server` is imported and walked. A model field counts where it
is declared (an inherited field is checked once, on the class that declares it). A method documented on a
base class or protocol it overrides counts as documented (`inspect.getdoc` inherits it). Dunder and private
names, and pydantic validators and serializers, are left out.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

import loopengt_core
import loopengt_server

PACKAGES = (loopengt_core, loopengt_server)
ROOT = Path(__file__).resolve().parents[1]


def modules() -> Iterator[ModuleType]:
    for package in PACKAGES:
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            if not info.name.endswith(".__main__"):  # importing it runs the CLI
                yield importlib.import_module(info.name)


def own_classes(module: ModuleType) -> Iterator[type[Any]]:
    """Classes defined in `module` (not imported into it), public ones only."""
    for name, value in vars(module).items():
        if inspect.isclass(value) and value.__module__ == module.__name__ and not name.startswith("_"):
            yield value


def own_functions(module: ModuleType) -> Iterator[tuple[str, Any]]:
    for name, value in vars(module).items():
        if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_"):
            yield name, value


def pydantic_hooks(cls: type[Any]) -> set[str]:
    """Names of a model's validators and serializers: pydantic calls them, nobody else does."""
    decorators = getattr(cls, "__pydantic_decorators__", None)
    if decorators is None:
        return set()
    groups = ("validators", "field_validators", "root_validators", "field_serializers", "model_serializers")
    names = {name for group in groups for name in getattr(decorators, group)}
    return names | set(decorators.model_validators)


def own_methods(cls: type[Any]) -> Iterator[tuple[str, Any]]:
    """Public methods and properties `cls` defines itself (not its pydantic hooks, nor a dataclass field
    whose default is a lambda)."""
    hooks = pydantic_hooks(cls)
    for name, value in vars(cls).items():
        if name.startswith("_") or name in hooks:
            continue
        if isinstance(value, (staticmethod, classmethod)):
            yield name, value.__func__
        elif isinstance(value, property):
            yield name, value
        elif inspect.isfunction(value) and value.__name__ != "<lambda>":  # a lambda is a field's default
            yield name, value


def undescribed_fields() -> list[str]:
    missing = []
    for module in modules():
        for cls in own_classes(module):
            if not issubclass(cls, BaseModel):
                continue
            declared = vars(cls).get("__annotations__", {})
            for name, field in cls.model_fields.items():
                if name in declared and not field.description:
                    missing.append(f"{module.__name__}.{cls.__qualname__}.{name}")
    return missing


def undocumented_definitions() -> list[str]:
    missing = []
    for module in modules():
        for name, function in own_functions(module):
            if not inspect.getdoc(function):
                missing.append(f"{module.__name__}.{name}")
        for cls in own_classes(module):
            if not cls.__doc__ or (issubclass(cls, BaseModel) and cls.__doc__ == BaseModel.__doc__):
                missing.append(f"{module.__name__}.{cls.__qualname__}")
            for name, method in own_methods(cls):
                doc = method.__doc__ if isinstance(method, property) else inspect.getdoc(method)
                if not doc and not inherited_doc(cls, name):
                    missing.append(f"{module.__name__}.{cls.__qualname__}.{name}")
    return missing


def inherited_doc(cls: type[Any], name: str) -> bool:
    """Whether a base class (a protocol it implements, say) documents `name`."""
    for base in cls.__mro__[1:]:
        member = vars(base).get(name)
        if member is not None and getattr(member, "__doc__", None):
            return True
    return False


def test_every_model_field_has_a_description() -> None:
    missing = undescribed_fields()
    assert missing == [], f"{len(missing)} model fields without a description:\n" + "\n".join(missing)


def test_every_public_class_function_and_method_has_a_docstring() -> None:
    missing = undocumented_definitions()
    assert missing == [], f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)


def test_every_module_says_what_it_is_for() -> None:
    missing = [module.__name__ for module in modules() if not module.__doc__]
    assert missing == [], "modules without a docstring: " + ", ".join(missing)


def test_the_run_view_schema_describes_every_property() -> None:
    from loopengt_core.engine.view import RunView, StepAnswer

    for model in (RunView, StepAnswer):
        schema = model.model_json_schema()
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{model.__name__}.{name} has no description in its JSON Schema"


REFERENCE = re.compile(
    r"\b((?:loopengt_core|loopengt_server)(?:\.\w+)+)|`([A-Z]\w*\.[a-z_]\w*)(?:\([^`]*\))?`|`([\w/]+\.py)`"
)


def resolves(owner: Any, name: str) -> bool:
    """Whether `owner` (a module or class) has `name`: an attribute, a model field, an annotation, or an
    instance attribute its methods assign."""
    if hasattr(owner, name):
        return True
    if not inspect.isclass(owner):
        return False
    if name in getattr(owner, "model_fields", {}) or any(
        name in vars(base).get("__annotations__", {}) for base in owner.__mro__
    ):
        return True
    try:
        source = inspect.getsource(owner)
    except (OSError, TypeError):  # made at run time: no source to read
        return False
    return re.search(rf"self\.{name}\b", source) is not None


def dotted(name: str, by_name: dict[str, ModuleType]) -> str | None:
    """What is wrong with a `loopengt_core.x.y` reference, or None."""
    parts = name.split(".")
    cut = len(parts)
    while cut and ".".join(parts[:cut]) not in by_name:
        cut -= 1
    if not cut:
        return f"{name}: no such module"
    owner: Any = by_name[".".join(parts[:cut])]
    for part in parts[cut:]:
        if not resolves(owner, part):
            return f"{name}: no {part}"
        owner = getattr(owner, part, None)
    return None


def stale_references() -> list[str]:
    by_name = {m.__name__: m for m in modules()}
    classes: dict[str, list[type[Any]]] = {}
    for module in by_name.values():
        for cls in own_classes(module):
            classes.setdefault(cls.__name__, []).append(cls)
    files = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if ".venv" not in p.parts}
    found = []
    for module in by_name.values():
        for node in ast.walk(ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            where = f"{module.__name__}:{getattr(node, 'lineno', 1)}"
            for match in REFERENCE.finditer(ast.get_docstring(node) or ""):
                package_ref, class_ref, file_ref = match.groups()
                problem = None
                if package_ref:
                    problem = dotted(package_ref.rstrip("."), by_name)
                elif class_ref:
                    owner, attr = class_ref.split(".", 1)
                    if owner in classes and not any(resolves(c, attr) for c in classes[owner]):
                        problem = f"{class_ref}: {owner} has no {attr}"
                elif not any(f == file_ref or f.endswith("/" + file_ref) for f in files):
                    problem = f"{file_ref}: no such file"
                if problem:
                    found.append(f"{where}: {problem}")
    return found


def test_docstrings_name_modules_classes_and_files_that_exist() -> None:
    """A docstring naming `loopengt_core.x.y`, `SomeClass.attr` (a class of ours) or `some/file.py` names
    something that is there: a move or rename that leaves a docstring behind fails here."""
    found = stale_references()
    assert found == [], "docstrings naming what no longer exists:\n" + "\n".join(found)
