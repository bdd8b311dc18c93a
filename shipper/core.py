"""The composition root: a :class:`Shipper` ties config, context, cost, wire and transport.

One shipper per process is the rule (``get_shipper()``); tests and the demo
build their own with an injected clock, ids, memory reading and transport.
Nothing here raises into the handler: internal failures are counted in
``stats()["internal_errors"]`` and the handler runs on.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time

from faaslens.protocol import MAX_ATTEMPT, MAX_LOGGER, MAX_MESSAGE, TCP_MAX, UDP_MAX
from faaslens.shipper import config as _config
from faaslens.shipper import context as _context
from faaslens.shipper import state as _state
from faaslens.shipper.cost import estimator_for
from faaslens.shipper.errors import error_fields
from faaslens.shipper.processors import RedactKeys
from faaslens.shipper.record import (
    Invocation,
    InvocationScope,
    MetricBuffer,
    current_invocation,
    wrap_handler,
)
from faaslens.shipper.transport import Stats, Transport, make_transport
from faaslens.shipper.wire import Packer, Signer, dumps, safe_str, truncate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar, overload

    from faaslens.shipper.cost import Estimator
    from faaslens.shipper.record import Line

    F = TypeVar("F", bound=Callable[..., Any])
    # (fields differing from the resource block, price estimator, memory size,
    #  the function's identity fields among them, repeated on its lines)
    _Plan = tuple[dict[str, Any] | None, Estimator | None, int | None, dict[str, Any] | None]

_NO_COLD = ("provisioned-concurrency", "snap-start")


class Clock:
    """Time sources; tests and the demo substitute their own."""

    time_ns = staticmethod(time.time_ns)  # wall clock, for @timestamp
    perf_ns = staticmethod(time.perf_counter_ns)  # monotonic, for durations

    def process_age_ns(self) -> int | None:
        """Nanoseconds since the process's init began (see :func:`state.init_age_ns`)."""
        return _state.init_age_ns()


try:
    import resource as _resource

    _getrusage = _resource.getrusage
    _RUSAGE_SELF = _resource.RUSAGE_SELF
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    _RSS_UNIT = 1 if sys.platform == "darwin" else 1024
except ImportError:  # Windows
    _getrusage = None  # type: ignore[assignment]


def peak_rss() -> int | None:
    """Peak resident set size of the process in bytes (``ru_maxrss``)."""
    if _getrusage is None:
        return None
    return int(_getrusage(_RUSAGE_SELF).ru_maxrss) * _RSS_UNIT


class Shipper:
    """Sends one record per invocation, with its log lines, errors and metrics; before
    it, a start event (``start_events``) and, for long invocations, their lines so far.

    Parameters are for tests and simulations; in a function use the module
    functions (:func:`shipper.instrument`, ...), which share one shipper built
    from the ``FAASLENS_*`` environment.
    """

    def __init__(
        self,
        config: _config.ShipperConfig | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        resource: Mapping[str, Any] | None = None,
        transport: Transport | None = None,
        clock: Clock | None = None,
        src: str | None = None,
        rss: Callable[[], int | None] | None = None,
        new_id: Callable[[], str] | None = None,
        sample: Callable[[], float] | None = None,
    ) -> None:
        self.config = config if config is not None else _config.load_config(environ)
        self._env = environ if environ is not None else _config.environ()
        self.stats = Stats()
        clock = clock or Clock()
        self._time_ns = clock.time_ns
        self._perf_ns = clock.perf_ns
        self._clock = clock
        self._rss = rss or peak_rss
        self._new_id = new_id or _context.new_execution_id
        self._sample = sample
        self.src = src or os.urandom(8).hex()
        cfg = self.config
        scheme, host, port = _config.parse_endpoint(cfg.endpoint)
        self._transport = transport or make_transport(
            scheme, host, port, self.stats, cfg.tcp_timeout_s
        )
        signer = Signer(cfg.hmac_key_id, cfg.hmac_key, self._time_ns) if cfg.hmac_key else None
        hard_max = UDP_MAX if scheme == "udp" else TCP_MAX
        datagram = _config.datagram_size(cfg, host)
        self._packer = Packer(self.src, datagram, hard_max, signer)
        self._packer_args = (datagram, hard_max, signer)
        self._seq = itertools.count(1)
        self._log_seq = itertools.count(0)
        self._invocation_count = itertools.count()
        # Ids of recent failed attempts -> their attempt (a redelivery reuses the id).
        self._failed: dict[str, int] = {}
        self._failed_old: dict[str, int] = {}
        self.redact = RedactKeys(cfg.redact_keys)
        res = dict(resource) if resource is not None else _context.resource_from_env(self._env, cfg)
        self.resource = res
        self._res_json = dumps(res)
        self._estimators: dict[tuple[Any, ...], Estimator | None] = {}
        self._plans: dict[int, tuple[dict[str, Any] | None, _Plan]] = {}
        self._rss_value: int | None = None
        self._rss_at = 0
        self._pending_metrics = MetricBuffer()
        self._min_level = cfg.min_level
        self._unsampled_level = max(self._min_level, 30)
        self._rate = cfg.log_sample_rate
        self._deferred_max = cfg.debug_buffer
        self._echo = self._echo_line if cfg.echo else None
        self._no_cold = self._env.get("AWS_LAMBDA_INITIALIZATION_TYPE") in _NO_COLD
        self._watchdog: Any = None
        self.disabled = cfg.disabled
        self._margin_ms = cfg.timeout_margin_ms
        self._failure_status = cfg.http_failure_status
        self._next_seq = self._seq.__next__
        self._start_events = cfg.start_events
        # Invocations running now, for the periodic flush of their lines (None: disabled);
        # those older than half the interval have their lines flushed (shipper/flusher.py).
        self._flush_ns = cfg.flush_interval_ms * 1_000_000
        self._flush_age_ns = self._flush_ns // 2
        self._running: set[Invocation] | None = set() if self._flush_ns else None
        self._flusher: Any = None
        # Frames leave from the handler's thread and from the flusher and watchdog threads:
        # packing (sequence numbers) and sending happen under one lock, in order.
        self._send_lock = threading.Lock()
        _state.register(self)

    # ------------------------------------------------------------ public API

    if TYPE_CHECKING:  # the decorated handler keeps its signature for type checkers

        @overload
        def instrument(
            self, fn: F, *, name: str | None = None, trigger: str | None = None
        ) -> F: ...
        @overload
        def instrument(
            self, fn: None = None, *, name: str | None = None, trigger: str | None = None
        ) -> Callable[[F], F]: ...

    def instrument(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        trigger: str | None = None,
    ) -> Any:
        """Decorate a handler (sync or async): one record per call.

        ``@shipper.instrument`` or ``@shipper.instrument(name="checkout", trigger="http")``.
        """

        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            if self.disabled:
                return f
            return wrap_handler(self, f, name, trigger)

        return decorate(fn) if fn is not None else decorate

    def invocation(
        self,
        *args: Any,
        name: str | None = None,
        trigger: str | None = None,
        execution_id: str | None = None,
        **kwargs: Any,
    ) -> InvocationScope:
        """Context manager for one invocation; pass the handler's arguments if any."""
        return InvocationScope(self, args, kwargs, name, trigger, execution_id)

    def snapshot(self) -> dict[str, int]:
        """Counters: frames/bytes sent, send errors, dropped lines/metrics, internal errors."""
        return self.stats.as_dict()

    def flush(self) -> None:
        """Retry frames waiting for a TCP connection (UDP sends never wait)."""
        try:
            with self._send_lock:
                self._transport.send(())
        except Exception:
            self.stats.internal_errors += 1

    def close(self) -> None:
        """Release the socket (a later send reopens it) and stop the flusher thread."""
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None
        self._transport.close()

    def _renew_after_fork(self) -> None:
        """In a forked child: a new sender (id, sequence numbers, counters) that keeps
        nothing of the parent's socket, queued frames, pending metrics or watchdog."""
        self.src = os.urandom(8).hex()
        self.stats = Stats()
        self._transport.after_fork(self.stats)
        self._packer = Packer(self.src, *self._packer_args)
        self._seq = itertools.count(1)
        self._next_seq = self._seq.__next__
        self._log_seq = itertools.count(0)
        self._pending_metrics = MetricBuffer()
        self._watchdog = None
        self._rss_value = None
        # The parent's running invocations and flusher thread are not the child's.
        self._send_lock = threading.Lock()
        self._flusher = None
        if self._running is not None:
            self._running = set()

    # ------------------------------------------------------------ invocation lifecycle

    def _start(
        self,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        name: str | None,
        trigger: str | None,
        execution_id: str | None,
    ) -> Invocation:
        try:
            start_ms = self._time_ns() // 1_000_000
            info = _context.extract(args, kwargs, self._env) if (args or kwargs) else _PLAIN
            exec_id = execution_id or info.execution_id
            attempt = 1
            if not exec_id:  # none, or an empty one the protocol would refuse
                exec_id = self._new_id()
            elif info.attempt or (
                self._failed and (exec_id in self._failed or exec_id in self._failed_old)
            ):
                attempt = self._attempt_of(exec_id, info.attempt)
            if self._rate >= 1.0:
                keep = self._min_level
            else:
                sample = self._sample
                if sample is None:
                    import random

                    sample = self._sample = random.random
                keep = self._min_level if sample() < self._rate else self._unsampled_level
            inv = Invocation(
                exec_id, start_ms, 0, info, keep, self._deferred_max, self._time_ns, self._echo
            )
            inv.name = name
            inv.attempt = attempt
            if trigger is not None:
                inv.trigger = trigger
            if next(self._invocation_count) == 0 and not self._no_cold:
                inv.coldstart = True
                inv.init_ns = self._clock.process_age_ns()
            if self._pending_metrics:
                inv.metrics, self._pending_metrics = self._pending_metrics, MetricBuffer()
            remaining = info.remaining_ms
            if remaining is not None and self._margin_ms:
                self._arm_watchdog(inv, remaining)
            if self._start_events:
                self._send_start(inv, remaining() if remaining is not None else None)
            self.stats.invocations += 1
            running = self._running
            if running is not None:
                running.add(inv)
                if self._flusher is None:
                    self._start_flusher()
            inv.t0 = self._perf_ns()
            return inv
        except Exception:
            self.stats.internal_errors += 1
            inv = Invocation(execution_id or "unknown", 0, 0, _PLAIN, 100, 0, self._time_ns)
            inv.done = True  # a placeholder: nothing will be sent for it
            return inv

    def _attempt_of(self, exec_id: str, stated: int | None) -> int:
        """The attempt number of an id seen failing in this process, or stated by the
        platform: one more than the last failed attempt, or the stated one if more."""
        before = self._failed.get(exec_id) or self._failed_old.get(exec_id, 0)
        attempt = before + 1
        if stated is not None and stated > attempt:
            attempt = stated
        return min(attempt, MAX_ATTEMPT)

    def _note_failed(self, inv: Invocation) -> None:
        """Remember a failed attempt's id: platforms redeliver after a failure (AWS async
        retries, Pub/Sub, Azure retries). Two generations of 1,024 ids: O(1) eviction."""
        failed = self._failed
        if len(failed) >= 1024 and inv.execution_id not in failed:
            self._failed_old = failed
            self._failed = failed = {}
        failed[inv.execution_id] = inv.attempt

    def _finish(
        self,
        inv: Invocation,
        exc: BaseException | None,
        result: object = None,
        *,
        timed_out: int | None = None,
    ) -> None:
        end = self._perf_ns()
        try:
            with _state.finish_lock:
                if inv.done:
                    return
                inv.done = True
            if self._running is not None:
                self._running.discard(inv)
            duration = end - inv.t0
            if timed_out is not None and inv.limit_ms:
                # The platform stops the handler at its timeout and bills all of it; the
                # record leaves a margin earlier, so it states the full limit.
                duration = max(duration, inv.limit_ms * 1_000_000)
            self._send_record(inv, duration, exc, timed_out, result)
        except Exception:
            self.stats.internal_errors += 1

    def _send_record(
        self,
        inv: Invocation,
        duration: int,
        exc: BaseException | None,
        timed_out: int | None,
        result: object = None,
    ) -> None:
        failed = exc is not None or timed_out is not None
        # Only an HTTP function's answer is one: a job may return an upstream's response.
        status = (
            None
            if inv.trigger != "http" or type(result) in _NO_STATUS
            else _context.http_status(result)
        )
        if status is not None and self._failure_status and status >= self._failure_status:
            failed = True  # the platform counts a 5xx answer as an error
        ev: dict[str, Any] = {
            "t": "inv",
            "faas.execution": inv.execution_id,
            "@timestamp": inv.start_ms,
            "event.duration": duration if duration > 0 else 0,
            "event.outcome": "failure" if failed else "success",
            "faas.coldstart": inv.coldstart,
        }
        if inv.attempt > 1:
            ev["faas.attempt"] = inv.attempt
        if failed or inv.attempt > 1:
            self._note_failed(inv)  # a later delivery of this id is the next attempt
        diff, est, memory, ident = self._plan(inv.info.fields)
        if diff:
            ev.update(diff)
        if inv.name is not None and self.resource.get("faas.name") != inv.name:
            ev["faas.name"] = inv.name
            ident = {**ident, "faas.name": inv.name} if ident else {"faas.name": inv.name}
        if inv.init_ns is not None:
            ev["faas.coldstart_duration"] = inv.init_ns
        if inv.trigger is not None:
            ev["faas.trigger.type"] = inv.trigger
        if status is not None:
            ev["http.response.status_code"] = status
        rss = self._peak_rss(duration)
        if rss:
            ev["faas.mem_usage"] = rss
        if est is not None:
            billed = duration
            if inv.init_ns is not None and est.bills_init:
                billed += inv.init_ns  # a cold start's init phase is billed with it
            priced = est.estimate(billed, memory, rss)
            if priced is not None:
                ev["faas.billed_duration"] = priced[0]
                ev["faas.cost.gb_seconds"] = priced[1]
                ev["faas.cost.usd"] = priced[2]
                ev["faas.cost.price_id"] = est.row.price_id
        trace_id = inv.trace_id
        if trace_id is not None:
            ev["trace.id"] = trace_id
            if inv.span_id is not None:
                ev["span.id"] = inv.span_id
        if exc is not None:
            ev.update(error_fields(exc))
        elif timed_out is not None:
            ev["error.type"] = "faaslens.Timeout"
            ev["error.message"] = f"invocation still running {timed_out} ms before its deadline"
            ev["error.grouping_key"] = "timeout"
            self.stats.timeouts += 1
        if inv.labels:
            ev["labels"] = {
                k: self.redact.replacement if self.redact.sensitive(k) else v
                for k, v in inv.labels.items()
            }
        metrics = inv.metrics
        if metrics is not None:
            if metrics.items:
                ev["metrics"] = metrics.items
            if metrics.dropped:
                ev["faas.metrics_dropped"] = metrics.dropped
                self.stats.dropped_metrics += metrics.dropped
        lines = inv.lines_to_ship(failed)
        events = [ev]
        if lines:
            if inv.attempt > 1:  # the lines of each attempt keep ids of their own
                ident = (
                    {**ident, "faas.attempt": inv.attempt}
                    if ident
                    else {"faas.attempt": inv.attempt}
                )
            self._line_events(lines, inv.execution_id, trace_id, events, ident)
        if failed and inv.deferred is not None:
            # The debug buffer is bounded: older kept-aside lines were pushed out.
            self.stats.dropped_lines += inv.deferred_total - len(inv.deferred)
        self._send(events)
        self.stats.frames_oversize = self._packer.oversize

    def _send(self, events: list[dict[str, Any]]) -> None:
        with self._send_lock:
            self._transport.send(self._packer.pack(self._res_json, events, self._next_seq))

    def _send_start(self, inv: Invocation, remaining_ms: object) -> None:
        """The start event (docs/protocol.md, ``t: "start"``), sent at once."""
        ev: dict[str, Any] = {
            "t": "start",
            "faas.execution": inv.execution_id,
            "@timestamp": inv.start_ms,
            "faas.coldstart": inv.coldstart,
        }
        if inv.attempt > 1:
            ev["faas.attempt"] = inv.attempt
        diff = self._plan(inv.info.fields)[0]
        if diff:
            ev.update(diff)
        if inv.name is not None and self.resource.get("faas.name") != inv.name:
            ev["faas.name"] = inv.name
        if inv.trigger is not None:
            ev["faas.trigger.type"] = inv.trigger
        if type(remaining_ms) is int and remaining_ms > 0:
            ev["faas.timeout"] = remaining_ms * 1_000_000
        if inv.trace_id is not None:
            ev["trace.id"] = inv.trace_id
            if inv.span_id is not None:
                ev["span.id"] = inv.span_id
        self._send([ev])

    # ------------------------------------------------------------ periodic flush

    def _start_flusher(self) -> None:
        from faaslens.shipper.flusher import Flusher

        with _state.finish_lock:
            if self._flusher is None:
                self._flusher = Flusher(self._flush_ns / 1e9, self._flush_running)

    def _flush_running(self, now_ns: int) -> None:
        """Send the pending lines of invocations running for at least half the flush interval."""
        running = self._running
        if not running:
            return
        try:
            for inv in list(running):
                if inv.done or now_ns - inv.t0 < self._flush_age_ns:
                    continue
                lines = inv.take_unsent()
                if not lines:
                    continue
                ident = self._plan(inv.info.fields)[3]
                if inv.name is not None and self.resource.get("faas.name") != inv.name:
                    ident = {**ident, "faas.name": inv.name} if ident else {"faas.name": inv.name}
                if inv.attempt > 1:  # the lines of each attempt keep ids of their own
                    ident = {**(ident or {}), "faas.attempt": inv.attempt}
                events: list[dict[str, Any]] = []
                self._line_events(lines, inv.execution_id, inv.trace_id, events, ident)
                self._send(events)
                self.stats.lines_flushed += len(lines)
        except Exception:
            self.stats.internal_errors += 1

    def _peak_rss(self, duration: int) -> int | None:
        """Peak RSS, re-read (a syscall, ~1 us) unless a sub-millisecond invocation
        follows a reading made less than 100 ms ago: it cannot have grown much since."""
        now = self._perf_ns()
        if duration >= 1_000_000 or now - self._rss_at > 100_000_000 or self._rss_value is None:
            self._rss_value = self._rss()
            self._rss_at = now
        return self._rss_value

    def _line_events(
        self,
        lines: list[Line],
        exec_id: str | None,
        trace_id: str | None,
        out: list[dict[str, Any]],
        ident: dict[str, Any] | None = None,
    ) -> None:
        """Wire events for buffered lines, appended to ``out``.

        ``ident``: the invocation's own function name/version where they differ from
        the resource block's (an Azure app hosts several functions), so that its
        lines are found under the same function as its record."""
        clean = self.redact.clean
        for seq, ts, level, text, logger, kv, exc in lines:
            message = text
            if len(text) > MAX_MESSAGE:
                message = truncate(text, MAX_MESSAGE)
                self.stats.truncated += 1
            ev: dict[str, Any]
            if exec_id is not None:
                ev = {
                    "t": "log",
                    "@timestamp": ts,
                    "event.sequence": seq,
                    "log.level": level,
                    "message": message,
                    "faas.execution": exec_id,
                }
            else:
                ev = {
                    "t": "log",
                    "@timestamp": ts,
                    "event.sequence": seq,
                    "log.level": level,
                    "message": message,
                }
            if logger is not None:
                name = logger if type(logger) is str else safe_str(logger)
                ev["log.logger"] = name if len(name) <= MAX_LOGGER else name[:MAX_LOGGER]
            if trace_id is not None:
                ev["trace.id"] = trace_id
            if kv:
                ev["labels"] = clean(kv)
            if exc is not None:
                ev.update(error_fields(exc))
            if ident:
                ev.update(ident)
            out.append(ev)
        self.stats.lines += len(lines)

    def _plan(self, fields: dict[str, Any] | None) -> _Plan:
        """For an invocation's own resource fields: those differing from the process's,
        the price estimator and the memory size. Cached per (shared) fields dict."""
        key = id(fields)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is fields:
            return cached[1]
        res = self.resource
        diff = {k: v for k, v in fields.items() if res.get(k) != v} if fields else None
        merged = {**res, **fields} if fields else res
        est = self._estimator(merged)
        ident: dict[str, Any] | None = None
        if diff:
            ident = {k: diff[k] for k in ("faas.name", "faas.version") if k in diff} or None
        plan: _Plan = (diff, est, merged.get("faas.max_memory"), ident)
        if fields is None or len(self._plans) < 64:
            self._plans[key] = (fields, plan)
        return plan

    def _estimator(self, ev: Mapping[str, Any]) -> Estimator | None:
        res = self.resource
        provider = ev.get("cloud.provider") or res.get("cloud.provider", "local")
        region = ev.get("cloud.region") or res.get("cloud.region")
        key = (provider, region)
        try:
            return self._estimators[key]
        except KeyError:
            cfg = self.config
            est = estimator_for(
                provider,
                res.get("host.architecture", "x86_64"),
                region,
                gcp_generation=cfg.gcp_generation,
                cpu=cfg.cpu,
                prices=cfg.prices,
            )
            self._estimators[key] = est
            return est

    # ------------------------------------------------------------ lines outside invocations

    def log_outside(  # noqa: PLR0917 - mirrors Invocation.add_line
        self,
        levelno: int,
        level: str,
        message: str,
        logger: str | None,
        kv: dict[Any, Any] | None,
        exc: BaseException | None,
    ) -> None:
        """Send one line logged outside any invocation, on its own (id ``<src>-<seq>``)."""
        try:
            if levelno < self._min_level:
                return
            line: Line = (
                next(self._log_seq),
                self._time_ns() // 1_000_000,
                level,
                message,
                logger,
                kv,
                exc,
            )
            if self._echo is not None:
                self._echo(line, None)
            events: list[dict[str, Any]] = []
            self._line_events([line], None, None, events)
            self._send(events)
        except Exception:
            self.stats.internal_errors += 1

    def add_metric(
        self, kind: str, name: str, value: float, labels: dict[str, str] | None, unit: str | None
    ) -> None:
        """A custom metric update: with the current invocation, or the next one."""
        self._metric_buffer().add(kind, name, value, labels, unit)

    def drop_metric(self, n: int = 1) -> None:
        """Count metric updates refused before buffering (bad value, label, label set):
        sent with the current (or next) record as ``faas.metrics_dropped``."""
        self._metric_buffer().dropped += n

    def _metric_buffer(self) -> MetricBuffer:
        inv = current_invocation()
        if inv is not None and not inv.done:
            if inv.metrics is None:
                inv.metrics = MetricBuffer()
            return inv.metrics
        return self._pending_metrics

    def _echo_line(self, line: Line, inv: Invocation | None) -> None:
        """``FAASLENS_ECHO``: print the line as JSON on stdout too (e.g. CloudWatch)."""
        _, ts, level, message, logger, kv, exc = line
        out: dict[str, Any] = {"@timestamp": ts, "log.level": level, "message": message}
        if inv is not None:
            out["faas.execution"] = inv.execution_id
        if logger:
            out["log.logger"] = logger
        if kv:
            out.update(self.redact.clean(kv))
        if exc is not None:
            out["error.type"] = type(exc).__name__
        try:
            sys.stdout.write(dumps(out).decode() + "\n")
        except (OSError, ValueError):
            self.stats.internal_errors += 1

    # ------------------------------------------------------------ timeouts (AWS)

    def _arm_watchdog(self, inv: Invocation, remaining_ms: Callable[[], int]) -> None:
        left = remaining_ms()
        if not isinstance(left, int) or left <= 0:
            return
        if self._watchdog is None:
            from faaslens.shipper.watchdog import Watchdog

            self._watchdog = Watchdog(self._on_timeout)
        # Lambda timeouts are whole seconds, counted from before the handler was called.
        inv.limit_ms = -(-left // 1000) * 1000
        margin = self._margin_ms
        self._watchdog.arm(time.monotonic() + max(left - margin, 0) / 1000.0, inv, margin)

    def _on_timeout(self, inv: Invocation, margin_ms: int) -> None:
        self._finish(inv, None, timed_out=margin_ms)


_PLAIN = _context.InvocationInfo()
# Results that cannot carry an HTTP status: skipped without a call.
_NO_STATUS = frozenset({type(None), int, float, bool, str, bytes, list})


# ------------------------------------------------------------------ the process's shipper


def get_shipper() -> Shipper:
    """The process's shipper, built from the environment on first use."""
    shipper = _state.default
    if shipper is None:
        with _state.default_lock:
            if _state.default is None:
                _state.default = Shipper()
            shipper = _state.default
    return shipper


def configure(**settings: Any) -> Shipper:
    """Replace the process's shipper: environment settings overridden by ``settings``.

    Handlers decorated with :func:`instrument` before the call use the new one.

    Call it at import time of the function module, before the first invocation.
    Raises :class:`shipper.config.ConfigError` on an unknown or bad setting.
    """
    shipper = Shipper(_config.load_config(None, **settings))
    with _state.default_lock:
        old, _state.default = _state.default, shipper
    if old is not None:
        old.close()
    return shipper


class _DefaultHost:
    """Lets module-level decorators follow :func:`configure` made after decoration."""

    __slots__ = ()

    def _start(
        self,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        name: str | None,
        trigger: str | None,
        execution_id: str | None,
    ) -> Invocation:
        shipper = _state.default or get_shipper()
        inv = shipper._start(args, kwargs, name, trigger, execution_id)
        inv.owner = shipper
        return inv

    def _finish(self, inv: Invocation, exc: BaseException | None, result: object = None) -> None:
        owner = inv.owner
        if owner is not None:
            owner._finish(inv, exc, result)


_HOST = _DefaultHost()


if TYPE_CHECKING:

    @overload
    def instrument(fn: F, *, name: str | None = None, trigger: str | None = None) -> F: ...
    @overload
    def instrument(
        fn: None = None, *, name: str | None = None, trigger: str | None = None
    ) -> Callable[[F], F]: ...


def instrument(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, trigger: str | None = None
) -> Any:
    """Decorate a handler (sync or async) so that each call sends one invocation record.

    ``@instrument`` or ``@instrument(name="checkout", trigger="http")``. The
    handler's result and exceptions are untouched; the shipper never raises.
    """

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        if get_shipper().disabled:
            return f
        return wrap_handler(_HOST, f, name, trigger)

    return decorate(fn) if fn is not None else decorate


def invocation(
    *args: Any,
    name: str | None = None,
    trigger: str | None = None,
    execution_id: str | None = None,
    **kwargs: Any,
) -> InvocationScope:
    """``with invocation(event, context):`` / ``async with``: one invocation record."""
    return InvocationScope(_HOST, args, kwargs, name, trigger, execution_id)


def set_label(key: str, value: object) -> None:
    """Attach a label to the current invocation's record (ignored outside one)."""
    inv = current_invocation()
    if inv is not None:
        inv.set_label(key, value)


def flush() -> None:
    """Retry frames waiting for the TCP connection. Records are sent before the handler
    returns; this matters only for frames queued while a TCP collector was away."""
    get_shipper().flush()


def stats() -> dict[str, int]:
    """Counters of the process's shipper (frames sent, send errors, drops...)."""
    return get_shipper().snapshot()
