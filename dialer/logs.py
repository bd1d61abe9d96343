"""Where the dialer's structured logs go: JSON lines for daemons and CI, readable on a terminal.

Every log line has a stable event name (``dialer.call.created``, ``dialer.attempt.reconciled``)
and never the API key. uvicorn, which serves the daemon's HTTP listeners, logs through the
standard library: its lines are routed into the same structured stream (``dialer.http.server``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging"]

#: the standard-library loggers of uvicorn ("uvicorn.error", "uvicorn.access" below it)
UVICORN = "uvicorn"


class _IntoStructlog(logging.Handler):
    """A standard-library handler that hands each record to structlog, under one event name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
            if record.exc_info and record.exc_info[1] is not None:
                fields["error"] = repr(record.exc_info[1])
            structlog.get_logger(record.name).log(record.levelno, "dialer.http.server", **fields)
        except Exception:
            # as every logging handler does: a line that cannot be written must not break
            # the server that logged it (a request would hang on the exception)
            self.handleError(record)


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
    uvicorn = logging.getLogger(UVICORN)
    uvicorn.handlers = [_IntoStructlog()]
    uvicorn.setLevel(level)
    uvicorn.propagate = False  # not a second time through the root logger's handlers
    for child in ("error", "access"):
        # a level a uvicorn.Config set on these (the simulator's) would override ours
        logging.getLogger(f"{UVICORN}.{child}").setLevel(logging.NOTSET)
