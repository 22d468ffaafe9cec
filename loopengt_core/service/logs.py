"""Logging setup: structlog to stderr (or a file), never stdout, which belongs to the MCP protocol."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import structlog


def configure(level: str | None = None, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (stderr by default) at `level` (LOOPENGT_LOG_LEVEL)."""
    name = (level or os.environ.get("LOOPENGT_LOG_LEVEL") or "WARNING").upper()
    numeric = logging.getLevelNamesMapping().get(name, logging.WARNING)
    out = stream or sys.stderr
    logging.basicConfig(level=numeric, stream=out, format="%(levelname)s %(name)s: %(message)s", force=True)
    _structlog(numeric, out)


def quiet_by_default() -> None:
    """For `import loopengt` in someone else's program: unless it configured structlog itself, loopengt's
    log lines go to stderr at LOOPENGT_LOG_LEVEL (default WARNING), never to its stdout. The program's
    stdlib logging is left alone."""
    if not structlog.is_configured():
        name = (os.environ.get("LOOPENGT_LOG_LEVEL") or "WARNING").upper()
        _structlog(logging.getLevelNamesMapping().get(name, logging.WARNING), sys.stderr)


def _structlog(numeric: int, out: TextIO) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
