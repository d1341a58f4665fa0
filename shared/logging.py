"""structlog set-up: JSON lines when not on a terminal, an event name plus key/values."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "INFO") -> structlog.stdlib.BoundLogger:
    """Configure structlog (and route stdlib logging, e.g. aiokafka's, through the same output)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer = (
        structlog.dev.ConsoleRenderer()
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # The stream is looked up at each write, and loggers are not cached: a logger made before
        # sys.stderr was replaced (a test's capture, a daemon's redirect) must not keep writing to
        # the old stream, or keep processors that a later configure (or capture_logs) replaced.
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]  # write/flush suffice
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")
    return structlog.get_logger()


class _Stderr:
    """sys.stderr as it is at each write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
