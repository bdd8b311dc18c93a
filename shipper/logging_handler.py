"""A stdlib ``logging`` handler routing records like the shipper's own logger."""

from __future__ import annotations

import logging
import sys

from faaslens.shipper.core import get_shipper
from faaslens.shipper.logs import STRUCTLOG_CONTEXTVARS, level_of, with_bound_context
from faaslens.shipper.record import current_invocation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from faaslens.shipper.core import Shipper

# Attributes every LogRecord has: anything else came from ``extra=`` and is a label.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


class LoggingHandler(logging.Handler):
    """Routes stdlib ``logging`` records like :class:`Logger` lines.

    ``extra=`` values become the line's labels; ``exc_info`` its ``error.*``.
    """

    def __init__(self, level: int = logging.NOTSET, shipper: Shipper | None = None) -> None:
        super().__init__(level)
        self._shipper = shipper

    def emit(self, record: logging.LogRecord) -> None:
        """Hand the record to the current invocation, or send it on its own."""
        try:
            levelno, level = level_of(record.levelno)
            extra = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
            if STRUCTLOG_CONTEXTVARS in sys.modules:
                extra = with_bound_context(extra) or {}
            exc = record.exc_info[1] if record.exc_info else None
            message = record.getMessage()
            inv = current_invocation()
            if inv is not None and not inv.done:
                inv.add_line(levelno, level, message, record.name, extra or None, exc)
            else:
                (self._shipper or get_shipper()).log_outside(
                    levelno, level, message, record.name, extra or None, exc
                )
        except Exception:
            self.handleError(record)


def capture_logging(level: int = logging.INFO, logger: str | None = None) -> LoggingHandler:
    """Attach a :class:`LoggingHandler` to a stdlib logger (the root by default)."""
    handler = LoggingHandler()
    target = logging.getLogger(logger)
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)
    return handler
