"""One place that configures structlog (and routes the stdlib `logging` through the same chain).

JSON lines to stdout in production (stdout is not a terminal), a readable console renderer on a
terminal. `merge_contextvars` comes first, so context bound with
`structlog.contextvars.bound_contextvars(partition=..., group_id=...)` lands on every line of a
unit of work. Log per batch, per state change, per error -- never per event at INFO.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from structlog.typing import Processor

__all__ = ["LOG_FORMATS", "configure_logging"]

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[str, ...] = ("auto", "json", "console")

_HANDLER_NAME = "activity-worker"


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib root logger. Idempotent: calling it again reconfigures."""
    out = stream if stream is not None else sys.stdout
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use auto, json or console")
    console = fmt == "console" or (fmt == "auto" and out.isatty())

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer()
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(default=repr)

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        # Not cached: reconfiguring (tests, capture_logs) must reach loggers made earlier.
        cache_logger_on_first_use=False,
    )

    # Library logs (stdlib logging) get the same format on the same stream.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
