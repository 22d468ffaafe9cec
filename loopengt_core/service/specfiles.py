"""Spec files read from disk: the one place spec loading touches the file system (the parsing and
validation in `loopengt_core.engine.validation` are pure and take text)."""

from __future__ import annotations

from pathlib import Path

from loopengt_core.engine.validation import Problem, SpecError, load_spec
from loopengt_core.model.errors import LoopengtError
from loopengt_core.model.limits import MAX_SPEC_BYTES
from loopengt_core.model.spec import LoopSpec
from loopengt_core.service.paths import UnreadableFile, read_regular


def read_spec_file(path: str | Path, *, root: Path | None = None) -> str:
    """The text of a spec file (a regular file within LOOPENGT_MAX_SPEC_BYTES); else a one-line SpecError.

    `root`: the project root `path` was confined to (see `paths.read_regular`).
    """
    p = Path(path)
    try:
        return read_regular(p, MAX_SPEC_BYTES, "the spec file", root=root).decode("utf-8")
    except UnreadableFile as exc:
        message = exc.message.removeprefix(f"{p}: ")
        raise SpecError([Problem(str(p), message)], source=str(p)) from None
    except UnicodeDecodeError:
        raise SpecError([Problem(str(p), "not a loop spec (not UTF-8 text)")], source=str(p)) from None
    except LoopengtError as exc:  # too large
        raise SpecError([Problem(str(p), exc.message)], source=str(p)) from None


def load_spec_file(path: str | Path) -> tuple[LoopSpec, str]:
    """The spec at `path` and its text (runs keep the text frozen)."""
    text = read_spec_file(path)
    return load_spec(text, source=str(path)), text
