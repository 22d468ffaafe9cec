"""Built-in loop templates: the YAML files in `loopengt_core/templates/`.

They are package data and never change while a process runs, so they are read and parsed once and
kept: a server answers `list_templates` from memory, without file or YAML work on its event loop.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import yaml

from loopengt_core.model.errors import NotFound

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    pattern: str
    description: str


@functools.cache
def _files() -> dict[str, str]:
    folder = resources.files("loopengt_core") / "templates"
    return {
        f.name.removesuffix(".yaml"): f.read_text("utf-8")
        for f in folder.iterdir()
        if f.name.endswith(".yaml")
    }


def template_names() -> list[str]:
    """The names of the built-in loop templates, sorted."""
    return sorted(_files())


def template_text(name: str) -> str:
    """The YAML of a built-in template. Raises NotFound naming the templates there are."""
    files = _files()
    if not NAME.fullmatch(name) or name not in files:
        raise NotFound(f"unknown template {name!r}; templates: {', '.join(sorted(files))}")
    return files[name]


def list_templates() -> list[TemplateInfo]:
    """The built-in loop templates with what each is for (`loopengt templates`)."""
    return list(_infos())


@functools.cache
def _infos() -> tuple[TemplateInfo, ...]:
    out = []
    for name, text in sorted(_files().items()):
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # the C build when there
        description = str(data.get("description") or data.get("goal") or "").strip()
        out.append(TemplateInfo(name, str(data.get("pattern", "sequential")), " ".join(description.split())))
    return tuple(out)
