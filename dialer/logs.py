"""Where the dialer's structured logs go: JSON lines for daemons and CI, readable on a terminal.

Every log line has a stable event name (``dialer.call.created``, ``dialer.attempt.reconciled``)
and never the API key.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging"]


def configure_logging(*, json_lines: bool, level: int = logging.INFO) -> None:
    """JSON lines when not on a terminal (daemons, CI); readable lines on a terminal."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
