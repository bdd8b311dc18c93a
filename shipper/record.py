"""One invocation's state, and the decorator / context manager that delimit it.

The current invocation lives in a ContextVar, so concurrent invocations on
threads or asyncio tasks never see each other's lines, labels or metrics.
Everything recorded during an invocation is buffered here as tuples and
serialized once, when it ends (see :mod:`shipper.core`); the lines of an
invocation that runs past the flush interval leave earlier, in batches
(:mod:`shipper.flusher`).
"""

from __future__ import annotations

import functools
import itertools
import sys
from bisect import bisect_left
from collections import deque
from contextvars import copy_context

from faaslens.protocol import (
    LEVEL_NAMES,
    MAX_INV_LABEL_VALUE,
    MAX_INV_LABELS,
    MAX_METRIC_LABEL_VALUE,
    MAX_METRIC_LABELS,
    MAX_METRICS,
    histogram_buckets,
)
from faaslens.shipper.state import current as _current
from faaslens.shipper.state import current_invocation
from faaslens.shipper.wire import safe_str, truncate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextvars import Context, Token
    from typing import Any, Protocol

    from faaslens.shipper.context import InvocationInfo

    class _Host(Protocol):
        """What an invocation needs from the shipper that runs it."""

        def _start(
            self,
            args: tuple[Any, ...],
            kwargs: Mapping[str, Any],
            name: str | None,
            trigger: str | None,
            execution_id: str | None,
        ) -> Invocation: ...

        def _finish(
            self, inv: Invocation, exc: BaseException | None, result: object = None
        ) -> None: ...


__all__ = ["Invocation", "InvocationScope", "current_invocation", "wrap_handler"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_CO_COROUTINE = 0x80

# (event.sequence, @timestamp ms, level, message, logger, key-values, exception)
Line = tuple[int, int, str, str, "str | None", "dict[Any, Any] | None", "BaseException | None"]


def valid_name(name: object) -> bool:
    """The protocol's metric and metric-label name rule: ``[a-zA-Z_][a-zA-Z0-9_]{0,63}``."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 64
        and not name[0].isdigit()
        and set(name) <= _NAME_CHARS
    )


class MetricBuffer:
    """Custom metric objects carried with one record, aggregated per series, so the
    number of updates does not matter: counters summed, gauges their last value,
    histograms as counts per bucket (the worker's buckets for the metric's unit,
    ``faaslens.protocol.histogram_buckets``):
    one object per bucket used, whose ``value`` is its largest observation and, past
    one observation, ``count`` and ``sum`` say how many and their total.

    At most 64 objects per record; updates that would need more are dropped and
    counted in ``dropped`` (sent as ``faas.metrics_dropped``).
    """

    __slots__ = ("dropped", "items", "keyed")

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.keyed: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.items) or self.dropped > 0

    def add(
        self, kind: str, name: str, value: float, labels: dict[str, str] | None, unit: str | None
    ) -> None:
        """Record one update (name, labels and value already checked)."""
        key: tuple[Any, ...] = (kind, name, tuple(labels.items())) if labels else (kind, name)
        if kind == "histogram":
            key = (*key, bisect_left(histogram_buckets(unit), value))
        entry = self.keyed.get(key)
        if entry is not None:
            if kind == "counter":
                entry["value"] += value
            elif kind == "gauge":
                entry["value"] = value
            else:
                # The first observation is the entry's value until a second one comes.
                entry["sum"] = entry.get("sum", entry["value"]) + value
                entry["count"] = entry.get("count", 1) + 1
                entry["value"] = max(entry["value"], value)  # still inside the bucket
            return
        if len(self.items) >= MAX_METRICS:
            self.dropped += 1
            return
        entry = {"name": name, "kind": kind, "value": value}
        if labels:
            entry["labels"] = labels
        if unit:
            entry["unit"] = unit
        self.items.append(entry)
        self.keyed[key] = entry


def clean_metric_labels(labels: Mapping[str, object]) -> tuple[dict[str, str] | None, int]:
    """Metric labels within limits: valid names, <= 5 keys, values <= 64 chars.

    Returns the labels and how many were dropped.
    """
    if not labels:
        return None, 0
    out: dict[str, str] = {}
    dropped = 0
    for key, value in labels.items():
        if len(out) >= MAX_METRIC_LABELS or not valid_name(key):
            dropped += 1
            continue
        text = value if type(value) is str else safe_str(value)
        out[key] = truncate(text, MAX_METRIC_LABEL_VALUE) if len(text) > 64 else text
    return out or None, dropped


class Invocation:
    """The state of one invocation, until its record is sent.

    Attributes users may read: ``execution_id``, ``trace_id``, ``coldstart``,
    ``trigger``. Use :meth:`set_label` to attach labels to the record.
    """

    __slots__ = (
        "attempt",
        "coldstart",
        "deferred",
        "deferred_max",
        "deferred_total",
        "done",
        "echo",
        "execution_id",
        "info",
        "init_ns",
        "keep_level",
        "labels",
        "limit_ms",
        "lines",
        "metrics",
        "name",
        "owner",
        "sent",
        "seq",
        "span_id",
        "start_ms",
        "t0",
        "time_ns",
        "trace_id",
        "trigger",
    )

    def __init__(  # noqa: PLR0917 - built on the hot path: positional is cheapest
        self,
        execution_id: str,
        start_ms: int,
        t0: int,
        info: InvocationInfo,
        keep_level: int,
        deferred_max: int,
        time_ns: Callable[[], int],
        echo: Callable[[Line, Invocation | None], None] | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.start_ms = start_ms
        self.t0 = t0
        self.info = info
        self.trace_id = info.trace_id
        self.span_id = info.span_id
        self.trigger = info.trigger
        self.name: str | None = None
        self.coldstart = False
        self.attempt = 1  # > 1: the platform delivered this id before
        self.init_ns: int | None = None
        self.limit_ms = 0  # the platform's time limit, when it states one (AWS)
        self.keep_level = keep_level
        self.lines: list[Line] = []
        self.sent = 0  # lines[:sent] already left, flushed while the invocation ran
        self.deferred: deque[Line] | None = None  # made on the first kept-aside line
        self.deferred_max = deferred_max
        self.deferred_total = 0
        self.labels: dict[str, str] | None = None
        self.metrics: MetricBuffer | None = None
        self.seq = itertools.count()
        self.time_ns = time_ns
        self.echo = echo
        self.done = False
        self.owner: Any = None  # the shipper that sends it, when started via the default

    def __repr__(self) -> str:
        return f"<Invocation {self.execution_id} lines={len(self.lines)} done={self.done}>"

    def add_line(  # noqa: PLR0917 - hot path: positional is cheapest
        self,
        levelno: int,
        level: str,
        message: str,
        logger: str | None,
        kv: dict[Any, Any] | None,
        exc: BaseException | None,
    ) -> None:
        """Buffer one log line (or keep it aside: below the shipping level)."""
        line: Line = (next(self.seq), self.time_ns() // 1_000_000, level, message, logger, kv, exc)
        if levelno >= self.keep_level:
            self.lines.append(line)
        elif self.deferred_max:
            if self.deferred is None:
                self.deferred = deque(maxlen=self.deferred_max)
            self.deferred.append(line)
            self.deferred_total += 1
        if self.echo is not None:
            self.echo(line, self)

    def defer_event(self, levelno: int, event_dict: Mapping[str, Any]) -> None:
        """Keep a structlog event dict aside (debug buffer / unsampled)."""
        if not self.deferred_max:
            return
        if self.deferred is None:
            self.deferred = deque(maxlen=self.deferred_max)
        kv = {k: v for k, v in event_dict.items() if k not in _STRUCTLOG_OWN}
        message = safe_str(event_dict.get("event", ""))
        level = LEVEL_NAMES.get(levelno, "info")
        line: Line = (
            next(self.seq),
            self.time_ns() // 1_000_000,
            level,
            message,
            event_dict.get("logger"),
            kv or None,
            None,
        )
        self.deferred.append(line)
        self.deferred_total += 1

    def lines_to_ship(self, failed: bool) -> list[Line]:
        """The lines that go with the record: those not flushed yet, and the kept-aside
        ones too when the invocation failed."""
        lines = self.lines[self.sent :] if self.sent else self.lines
        if failed and self.deferred:
            return sorted([*lines, *self.deferred])
        return lines

    def take_unsent(self) -> list[Line]:
        """Lines not sent yet, now counted as sent (the periodic flush's share).

        Called from the flusher thread while the handler may append: only lines
        already in the list are taken. Should the record be sent meanwhile, a line
        may go twice; its document id (invocation id + sequence) makes that harmless.
        """
        lines = self.lines
        n = len(lines)
        first = self.sent
        if n <= first:
            return []
        self.sent = n
        return lines[first:n]

    def set_label(self, key: str, value: object) -> None:
        """Attach a label (``labels.<key>``) to the invocation record (<= 32, values str)."""
        labels = self.labels
        if labels is None:
            labels = self.labels = {}
        if key not in labels and len(labels) >= MAX_INV_LABELS:
            return
        text = value if type(value) is str else safe_str(value)
        labels[key if type(key) is str else safe_str(key)] = truncate(text, MAX_INV_LABEL_VALUE)

    def add_metric(
        self, kind: str, name: str, value: float, labels: dict[str, str] | None, unit: str | None
    ) -> None:
        """Carry one custom metric update with the record."""
        metrics = self.metrics
        if metrics is None:
            metrics = self.metrics = MetricBuffer()
        metrics.add(kind, name, value, labels, unit)


_STRUCTLOG_OWN = frozenset({"event", "level", "logger", "timestamp", "exc_info"})


def _reset(token: Token[Invocation | None]) -> None:
    try:  # noqa: SIM105 - try/except is cheaper than contextlib.suppress on the hot path
        _current.reset(token)
    except (ValueError, RuntimeError):  # a token from another context: leave it be
        pass


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (without importing inspect when avoidable)."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        return bool(code.co_flags & _CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


_STRUCTLOG_CONTEXTVARS = "structlog.contextvars"


def _run_in(inv: Invocation, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    _current.set(inv)
    return fn(*args, **kwargs)


def wrap_handler(
    host: _Host, fn: Callable[..., Any], name: str | None, trigger: str | None
) -> Callable[..., Any]:
    """The instrumented handler: one record per call, the handler's outcome untouched.

    Once the application uses ``structlog.contextvars``, each call runs in a copy of
    the caller's context: what the handler binds (``bind_contextvars``, or any other
    ContextVar it sets) ends with its invocation, and what was bound before (at import
    time) is seen by every invocation. Without it a call sets and resets only the
    current invocation (~0.3 us cheaper: the hot path of most functions).
    """
    modules = sys.modules
    start = host._start
    finish = host._finish

    if is_async(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            import asyncio

            inv = start(args, kwargs, name, trigger, None)
            ctx = copy_context()
            ctx.run(_current.set, inv)
            try:
                # A task is the only way to await a coroutine in a context of its own.
                result = await asyncio.get_running_loop().create_task(
                    fn(*args, **kwargs), context=ctx
                )
            except BaseException as exc:
                finish(inv, exc)
                raise
            finish(inv, None, result)
            return result

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        inv = start(args, kwargs, name, trigger, None)
        if _STRUCTLOG_CONTEXTVARS in modules:
            try:
                result = copy_context().run(_run_in, inv, fn, args, kwargs)
            except BaseException as exc:
                finish(inv, exc)
                raise
        else:
            token = _current.set(inv)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _reset(token)
                finish(inv, exc)
                raise
            _reset(token)
        finish(inv, None, result)
        return result

    return wrapper


def _restore_structlog_context(saved: Context) -> None:
    """At the end of a ``with invocation()`` block (which cannot run in a context of its
    own): undo what the block bound with ``structlog.contextvars``."""
    for var, value in copy_context().items():
        if var.name.startswith("structlog_") and saved.get(var, ...) is not value:
            var.set(saved.get(var, ...))  # structlog's "unbound" is Ellipsis


class InvocationScope:
    """``with`` / ``async with`` block delimiting one invocation.

    Entering returns the :class:`Invocation`; leaving sends its record. An
    exception leaving the block marks the invocation failed and propagates.
    """

    __slots__ = (
        "_args",
        "_execution_id",
        "_host",
        "_inv",
        "_kwargs",
        "_name",
        "_saved",
        "_token",
        "_trigger",
    )

    def __init__(  # noqa: PLR0917
        self,
        host: _Host,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        name: str | None,
        trigger: str | None,
        execution_id: str | None,
    ) -> None:
        self._host = host
        self._args = args
        self._kwargs = kwargs
        self._name = name
        self._trigger = trigger
        self._execution_id = execution_id
        self._inv: Invocation | None = None
        self._token: Token[Invocation | None] | None = None
        self._saved: Context | None = None

    def __enter__(self) -> Invocation:
        inv = self._host._start(
            self._args, self._kwargs, self._name, self._trigger, self._execution_id
        )
        self._inv = inv
        if "structlog.contextvars" in sys.modules:
            self._saved = copy_context()
        self._token = _current.set(inv)
        return inv

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._token is not None:
            _reset(self._token)
            self._token = None
        if self._saved is not None:
            _restore_structlog_context(self._saved)
            self._saved = None
        if self._inv is not None:
            self._host._finish(self._inv, exc)
            self._inv = None

    async def __aenter__(self) -> Invocation:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)
