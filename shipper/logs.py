"""Logging front ends: a fast structlog-style logger, stdlib logging, and structlog itself.

All three route a line the same way: inside an invocation it is buffered with
the invocation and sent with its record; outside, it is sent on its own with
an id of ``<src>-<seq>``.

* :func:`get_logger` returns a :class:`Logger` with structlog's BoundLogger
  interface (``bind``, ``info(event, **kw)``, ``exception``...) whose calls just
  append a tuple to the invocation's buffer; processing happens once, when the
  record is sent. It does not import structlog.
* :class:`shipper.logging_handler.LoggingHandler` does the same for stdlib
  ``logging`` records.
* :func:`configure_structlog` sets structlog up to end its chain in the shipper
  (structlog is imported only there).
"""

from __future__ import annotations

import sys

from faaslens.protocol import LEVEL_ALIASES, LEVEL_NUMBERS
from faaslens.shipper.core import get_shipper
from faaslens.shipper.errors import exception_from
from faaslens.shipper.record import current_invocation
from faaslens.shipper.wire import safe_str

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from typing import Any

    from faaslens.shipper.core import Shipper

# Any level name a logger may use -> (number, wire name).
_LEVELS = {alias: (LEVEL_NUMBERS[name], name) for alias, name in LEVEL_ALIASES.items()}


_modules = sys.modules
STRUCTLOG_CONTEXTVARS = "structlog.contextvars"


def with_bound_context(kv: dict[str, Any] | None) -> dict[str, Any] | None:
    """``kv`` over what ``structlog.contextvars.bind_contextvars`` bound in this context
    (structlog's ``merge_contextvars``: the line's own keys win). Only called once the
    application has imported ``structlog.contextvars``."""
    try:
        bound = _modules[STRUCTLOG_CONTEXTVARS].get_contextvars()
    except Exception:  # structlog missing its API: the line goes without the context
        return kv
    if not bound:
        return kv
    return {**bound, **kv} if kv else bound


def _route(  # noqa: PLR0917 - hot path
    logger: Logger,
    levelno: int,
    level: str,
    event: object,
    args: tuple[Any, ...],
    kw: dict[str, Any],
) -> None:
    inv = current_invocation()
    if inv is not None and inv.done:
        inv = None  # a line from a thread that outlived its invocation
    if inv is not None and levelno < inv.keep_level and not inv.deferred_max and not inv.echo:
        return  # below the shipping level with no debug buffer: nothing to do
    try:
        message = event if type(event) is str else ("" if event is None else safe_str(event))
        if args:
            try:
                message = message % args
            except Exception:  # a format mismatch or a raising __str__ must not lose the line
                message = f"{message} {safe_str(args)}"
        exc = exception_from(kw.pop("exc_info")) if "exc_info" in kw else None
        ctx = logger._context
        kv = ({**ctx, **kw} if kw else ctx) if ctx else (kw or None)
        if STRUCTLOG_CONTEXTVARS in _modules:
            kv = with_bound_context(kv)
        if inv is not None:
            inv.add_line(levelno, level, message, logger._name, kv, exc)
        else:
            (logger._shipper or get_shipper()).log_outside(
                levelno, level, message, logger._name, kv, exc
            )
    except Exception:
        (logger._shipper or get_shipper()).stats.internal_errors += 1


class Logger:
    """structlog-compatible bound logger that hands lines to the current invocation."""

    __slots__ = ("_context", "_name", "_shipper")

    def __init__(
        self,
        name: str | None = None,
        context: dict[str, Any] | None = None,
        shipper: Shipper | None = None,
    ) -> None:
        self._name = name
        self._context = context or {}
        self._shipper = shipper

    def __repr__(self) -> str:
        return f"<shipper.Logger {self._name!r} context={self._context!r}>"

    def bind(self, **new_values: Any) -> Logger:
        """A logger with more key-values on every line."""
        return Logger(self._name, {**self._context, **new_values}, self._shipper)

    def new(self, **new_values: Any) -> Logger:
        """A logger with only these key-values."""
        return Logger(self._name, dict(new_values), self._shipper)

    def unbind(self, *keys: str) -> Logger:
        """A logger without these keys (KeyError if one is missing, as structlog)."""
        ctx = dict(self._context)
        for key in keys:
            del ctx[key]
        return Logger(self._name, ctx, self._shipper)

    def try_unbind(self, *keys: str) -> Logger:
        """A logger without these keys, missing ones ignored."""
        return Logger(
            self._name, {k: v for k, v in self._context.items() if k not in keys}, self._shipper
        )

    def debug(self, event: object = None, *args: Any, **kw: Any) -> None:
        """Log at debug level (kept aside unless the invocation fails, by default)."""
        _route(self, 10, "debug", event, args, kw)

    def info(self, event: object = None, *args: Any, **kw: Any) -> None:
        """Log at info level."""
        _route(self, 20, "info", event, args, kw)

    msg = info

    def warning(self, event: object = None, *args: Any, **kw: Any) -> None:
        """Log at warning level."""
        _route(self, 30, "warning", event, args, kw)

    warn = warning

    def error(self, event: object = None, *args: Any, **kw: Any) -> None:
        """Log at error level."""
        _route(self, 40, "error", event, args, kw)

    def exception(self, event: object = None, *args: Any, **kw: Any) -> None:
        """Log at error level with the exception being handled."""
        kw.setdefault("exc_info", True)
        _route(self, 40, "error", event, args, kw)

    def critical(self, event: object = None, *args: Any, **kw: Any) -> None:
        """Log at critical level."""
        _route(self, 50, "critical", event, args, kw)

    fatal = critical

    def log(self, level: int | str, event: object = None, *args: Any, **kw: Any) -> None:
        """Log at a level given by number or name."""
        if isinstance(level, str):
            levelno, name = _LEVELS.get(level.lower(), (20, "info"))
        else:
            levelno, name = level_of(level)
        _route(self, levelno, name, event, args, kw)


def level_of(levelno: int) -> tuple[int, str]:
    """A stdlib-style numeric level as the protocol's (number, name)."""
    if levelno >= 50:
        return 50, "critical"
    if levelno >= 40:
        return 40, "error"
    if levelno >= 30:
        return 30, "warning"
    if levelno >= 20:
        return 20, "info"
    return 10, "debug"


def get_logger(name: str | None = None, **initial_values: Any) -> Logger:
    """A logger whose lines go with the current invocation (or on their own outside one)."""
    return Logger(name, initial_values or None)


# ------------------------------------------------------------------ structlog


def _hand_over(method_name: str, event_dict: MutableMapping[str, Any]) -> None:
    ed = dict(event_dict)
    levelno, level = _LEVELS.get(str(ed.pop("level", method_name)), (20, "info"))
    event = ed.pop("event", None)
    name = ed.pop("logger", None)
    ed.pop("timestamp", None)
    exc = exception_from(ed.pop("exc_info")) if "exc_info" in ed else None
    message = event if isinstance(event, str) else ("" if event is None else safe_str(event))
    inv = current_invocation()
    if inv is not None and not inv.done:
        inv.add_line(levelno, level, message, name, ed or None, exc)
    else:
        get_shipper().log_outside(levelno, level, message, name, ed or None, exc)


def ship(logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Terminal structlog processor: hand the event to the shipper, then drop it.

    Put it last in a chain (``configure_structlog`` does when structlog had no
    configuration of its own).
    """
    import structlog

    _hand_over(method_name, event_dict)
    raise structlog.DropEvent


def ship_through(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hand the event to the shipper and pass it on unchanged (to the
    application's own renderer, e.g. JSON lines on stdout)."""
    _hand_over(method_name, event_dict)
    return event_dict


def configure_structlog(*, extra_processors: list[Any] | None = None) -> None:
    """Configure structlog so that ``structlog.get_logger()`` lines go with invocations.

    Without a structlog configuration of the application's: the chain is contextvars
    merge, log level, ``extra_processors``, then :func:`ship` (lines leave only through
    the shipper). With one (``structlog.configure`` called before): it is kept (its
    processors, wrapper class, logger factory and renderer); ``merge_contextvars`` is
    added first if missing, and ``extra_processors`` + :func:`ship_through` go just
    before its last processor (the renderer), so its output goes on as before.
    Calling it twice changes nothing more. Redaction, sampling and the debug buffer
    happen in the shipper.
    """
    import structlog

    merge = structlog.contextvars.merge_contextvars
    if not structlog.is_configured():
        structlog.configure(
            processors=[
                merge,
                structlog.processors.add_log_level,
                *(extra_processors or []),
                ship,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(10),
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=True,
        )
        return
    processors = list(structlog.get_config()["processors"])
    if ship in processors or ship_through in processors:
        return
    if merge not in processors:
        processors.insert(0, merge)
    at = max(len(processors) - 1, 1)
    processors[at:at] = [*(extra_processors or []), ship_through]
    structlog.configure(processors=processors)
