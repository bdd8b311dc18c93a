"""The worker's own metrics (``faaslens_*``) and rate-limited logging of rejections.

Every internal event is both counted (bounded ``reason`` label) and logged,
but a flood of bad input must not become a flood of log lines: each
reason logs at most one line per interval, carrying how many it stands for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from faaslens.ingest.events import EVENT_REASONS, FRAME_REASONS
from faaslens.protocol import INDEX_KINDS

__all__ = [
    "DROP_REASONS",
    "TCP_CLOSE_REASONS",
    "RejectionLog",
    "SelfMetrics",
    "counters_by",
    "totals",
]

DROP_REASONS = ("queue_full", "shutdown")
# Why the TCP source closed a connection (see ingest/source_tcp.py).
TCP_CLOSE_REASONS = ("connection_cap", "buffer_cap", "idle_timeout")

log = structlog.get_logger("faaslens.ingest")


class RejectionLog:
    """Logs rejections at most once per ``(what, reason)`` per ``interval_s``, with a count."""

    def __init__(
        self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        # (what, reason) -> [next time a line may be written, occurrences not yet logged]
        self._state: dict[tuple[str, str], list[float]] = {}

    def note(self, what: str, reason: str, count: int = 1, **detail: Any) -> bool:
        """Record ``count`` rejections; return True if a line was written now."""
        key = (what, reason)
        st = self._state.get(key)
        now = self._clock()
        if st is None:
            st = self._state[key] = [0.0, 0]
        st[1] += count
        if now < st[0]:
            return False
        log.warning("rejected", what=what, reason=reason, count=int(st[1]), **detail)
        st[0] = now + self.interval_s
        st[1] = 0
        return True


# What the worker reports when it stops: name in the log line -> counters summed.
TOTALS: dict[str, tuple[str, ...]] = {
    "received": ("faaslens_datagrams_received_total", "faaslens_tcp_frames_received_total"),
    "frames_accepted": ("faaslens_frames_accepted_total",),
    "frames_rejected": ("faaslens_frames_rejected_total",),
    "frames_dropped": ("faaslens_frames_dropped_total",),
    "events_accepted": ("faaslens_events_accepted_total",),
    "events_rejected": ("faaslens_events_rejected_total",),
    "docs_built": ("faaslens_docs_built_total",),
    "docs_indexed": ("faaslens_docs_indexed_total",),
    "docs_duplicate": ("faaslens_docs_duplicate_total",),
    "docs_spooled": ("faaslens_docs_spooled_total",),
    "docs_replayed": ("faaslens_docs_replayed_total",),
    "docs_dead_lettered": ("faaslens_dead_letter_total",),
    "docs_failed": ("faaslens_docs_failed_total",),
    "docs_dropped": ("faaslens_docs_dropped_total",),
    "internal_errors": ("faaslens_internal_errors_total",),
}


def counters_by(
    name: str, documentation: str, label: str, values: Iterable[str], registry: CollectorRegistry
) -> dict[str, Counter]:
    """A counter ``name`` (``_total`` added on exposition) labelled by ``label``, one
    child per bounded value of ``values``, each exposed at 0 from the start."""
    parent = Counter(name, documentation, [label], registry=registry)
    return {value: parent.labels(value) for value in values}


def totals(registry: CollectorRegistry) -> dict[str, int]:
    """The worker's lifetime totals (see :data:`TOTALS`), summed over labels."""
    sums: dict[str, float] = {}
    for family in registry.collect():
        if family.name.startswith("faaslens_"):
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return {key: int(sum(sums.get(n, 0.0) for n in names)) for key, names in TOTALS.items()}


class _KernelDrops(Collector):
    """Exposes the kernel's drop count for our UDP socket, read at scrape time."""

    def __init__(self, read: Callable[[], int | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        value = self._read()
        fam = CounterMetricFamily(
            "faaslens_udp_receive_buffer_drops",
            "Datagrams the kernel dropped because our receive buffer was full (/proc/net/udp)",
        )
        if value is not None:
            fam.add_metric([], value)
        yield fam


class _Settling(Collector):
    """The settle table's figures, read at scrape time (see :mod:`ingest.settle`)."""

    def __init__(self, read: Callable[[], tuple[int, int, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        pending, overflow, replaced = self._read()
        yield GaugeMetricFamily(
            "faaslens_pending_invocations",
            "Started invocations waiting for their record",
            value=pending,
        )
        yield CounterMetricFamily(
            "faaslens_pending_overflow",
            "Start events not tracked because the pending table was full (pending_max)",
            value=overflow,
        )
        yield CounterMetricFamily(
            "faaslens_unfinished_replaced",
            "Records that came after their invocation was settled as unfinished "
            "(their document replaced the unfinished one)",
            value=replaced,
        )


class SelfMetrics:
    """Counters and gauges about the worker itself, pre-bound for the hot path."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.datagrams = Counter(
            "faaslens_datagrams_received", "UDP datagrams received", registry=registry
        )
        self.tcp_frames = Counter(
            "faaslens_tcp_frames_received", "Frames received over TCP", registry=registry
        )
        self.bytes = Counter(
            "faaslens_received_bytes", "Bytes received", ["transport"], registry=registry
        )
        self.udp_bytes = self.bytes.labels("udp")
        self.tcp_bytes = self.bytes.labels("tcp")
        self.frames_rejected = Counter(
            "faaslens_frames_rejected", "Frames rejected whole", ["reason"], registry=registry
        )
        self.frame_reasons = {r: self.frames_rejected.labels(r) for r in FRAME_REASONS}
        self.frames_accepted = Counter(
            "faaslens_frames_accepted",
            "Frames that passed the frame checks (their events are then accepted or rejected)",
            registry=registry,
        )
        self.frames_dropped = Counter(
            "faaslens_frames_dropped",
            "Frames received but dropped before validation",
            ["reason"],
            registry=registry,
        )
        self.drop_reasons = {r: self.frames_dropped.labels(r) for r in DROP_REASONS}
        self.events_accepted = Counter(
            "faaslens_events_accepted", "Events accepted", ["type"], registry=registry
        )
        self.accepted_inv = self.events_accepted.labels("inv")
        self.accepted_log = self.events_accepted.labels("log")
        self.accepted_start = self.events_accepted.labels("start")
        self.events_rejected = Counter(
            "faaslens_events_rejected", "Events rejected", ["reason"], registry=registry
        )
        self.event_reasons = {r: self.events_rejected.labels(r) for r in EVENT_REASONS}
        self.parts_dropped = Counter(
            "faaslens_event_parts_dropped",
            "Labels and custom metrics dropped from events that were kept (the document "
            "lists them in faaslens.dropped), by part and reason",
            ["part", "reason"],
            registry=registry,
        )
        self.unknown_fields = Counter(
            "faaslens_unknown_fields", "Unknown event keys removed", registry=registry
        )
        self.frames_lost = Counter(
            "faaslens_frames_lost",
            "Frames missing from senders' sequence numbers that never reached this worker"
            " (network, kernel receive buffer); not the worker's own drops"
            " (faaslens_frames_dropped_total). Subtract faaslens_frames_late. Exact only while"
            " each sender reaches one worker: across workers use faaslens query loss.",
            registry=registry,
        )
        self.frames_late = Counter(
            "faaslens_frames_late",
            "Frames that arrived after a higher sequence number (each was first counted lost)",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "faaslens_queue_depth", "Frames waiting for validation", registry=registry
        )
        self.tcp_connections = Gauge(
            "faaslens_tcp_connections", "Open TCP connections", registry=registry
        )
        self.tcp_connections_closed = Counter(
            "faaslens_tcp_connections_closed",
            "TCP connections the worker closed to bound its memory, by reason",
            ["reason"],
            registry=registry,
        )
        self.tcp_closed = {r: self.tcp_connections_closed.labels(r) for r in TCP_CLOSE_REASONS}
        self.udp_rcvbuf = Gauge(
            "faaslens_udp_receive_buffer_bytes",
            "Actual SO_RCVBUF of the UDP socket (as the kernel reports it)",
            registry=registry,
        )
        self.docs_built = Counter(
            "faaslens_docs_built", "Documents built for the sink", ["index_kind"], registry=registry
        )
        self.docs_built_by_kind = {k: self.docs_built.labels(k) for k in INDEX_KINDS}
        self.batches = Counter(
            "faaslens_batches_written",
            "Batches handed to the sink and confirmed",
            registry=registry,
        )
        self.batches_spilled = Counter(
            "faaslens_batches_spilled",
            "Batches put straight into the sink's disk spool because the sink took less "
            "than arrived (replayed once it catches up)",
            registry=registry,
        )
        self.sink_errors = Counter(
            "faaslens_sink_write_errors",
            "Sink writes that raised (the batch is retried)",
            registry=registry,
        )
        self.internal_errors = Counter(
            "faaslens_internal_errors",
            "Unexpected exceptions caught in the pipeline (a bug: see the log)",
            ["stage"],
            registry=registry,
        )
        self.docs_dropped = Counter(
            "faaslens_docs_dropped",
            "Documents built but never handed to the sink (shutdown deadline passed)",
            ["reason"],
            registry=registry,
        )
        self._kernel: _KernelDrops | None = None

    def watch_settling(self, read: Callable[[], tuple[int, int, int]]) -> None:
        """Expose the settle table's (pending, overflow, replaced) figures at scrape time."""
        self.registry.register(_Settling(read))

    def watch_kernel_drops(self, read: Callable[[], int | None]) -> None:
        """Expose ``read()`` (the socket's kernel drop count) at scrape time."""
        if self._kernel is None:
            self._kernel = _KernelDrops(read)
            self.registry.register(self._kernel)
