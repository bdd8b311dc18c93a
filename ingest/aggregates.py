"""Prometheus aggregates of invocation records, on an injected registry.

Per invocation: counts, durations (with an exemplar pointing at the
invocation), memory, billed time and cost, labelled only by bounded
dimensions; plus the custom metrics functions send. Each metric has a cap on
its series (excess goes to one ``_overflow`` series, so totals stay right)
and series idle longer than the TTL are removed by :meth:`Aggregates.sweep`.

Bound children are cached per label tuple: ``.labels()`` costs ~4x a
pre-bound child on this hot path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["CORE_LABELS", "Aggregates"]

CORE_LABELS: Final = (
    "function",
    "version",
    "environment",
    "outcome",
    "coldstart",
    "provider",
    "region",
    "trigger",
)
OVERFLOW: Final = "_overflow"
_OVERFLOW_KEY: Final = (OVERFLOW,) * len(CORE_LABELS)

DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    900.0,
)
INIT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
_MIB = 1024 * 1024
MEMORY_BUCKETS: Final = tuple(
    float(n * _MIB) for n in (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 10240)
)
# A bucket keeps one exemplar and Prometheus reads it once per scrape: refreshing it
# more often than this only costs time (~1 us per observation).
EXEMPLAR_EVERY_S: Final = 1.0
# OpenMetrics caps an exemplar's label names + values at 128 characters.
_EXEMPLAR_MAX: Final = 128
_EXEMPLAR_ID_ROOM: Final = _EXEMPLAR_MAX - len("invocation_id")
_EXEMPLAR_BOTH_ROOM: Final = _EXEMPLAR_ID_ROOM - len("trace_id") - 32

CUSTOM_PREFIX: Final = "faas_custom_"
CUSTOM_REJECT_REASONS: Final = ("kind_conflict", "label_conflict", "invalid", "too_many_metrics")


class _CoreSeries:
    """The children of every core metric for one label tuple, created on first use."""

    __slots__ = (
        "billed", "cold", "cost", "dur", "err", "ex_t", "gbs", "init", "inv", "key", "last", "mem",
    )  # fmt: skip

    def __init__(self, key: tuple[str, ...]) -> None:
        self.key = key  # the label values (the overflow key past the cap)
        # Per duration bucket (+Inf last): when its exemplar was last set.
        self.ex_t = [-EXEMPLAR_EVERY_S] * (len(DURATION_BUCKETS) + 1)
        self.inv: Any = None
        self.err: Any = None
        self.cold: Any = None
        self.dur: Any = None
        self.init: Any = None
        self.mem: Any = None
        self.billed: Any = None
        self.cost: Any = None
        self.gbs: Any = None
        self.last = 0.0


@dataclass(slots=True)
class _Custom:
    kind: str
    metric: Counter | Gauge | Histogram
    label_keys: tuple[str, ...]  # user label names, sorted, without "function"
    children: dict[tuple[str, ...], list[Any]] = field(default_factory=dict)  # key -> [child, last]


def _exemplar(exec_id: Any, trace_id: Any) -> dict[str, str] | None:
    if type(exec_id) is not str or len(exec_id) > _EXEMPLAR_ID_ROOM:
        return None
    if type(trace_id) is str and len(exec_id) <= _EXEMPLAR_BOTH_ROOM:
        return {"invocation_id": exec_id, "trace_id": trace_id}
    return {"invocation_id": exec_id}


class Aggregates:
    """Updates the Prometheus aggregates from validated invocation records."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        series_cap: int = 10_000,
        series_ttl_s: float = 900.0,
        custom_metrics_cap: int = 1000,
    ) -> None:
        # _created samples double the scrape cost and say little for these metrics.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self._registry = registry
        self.series_cap = series_cap
        self.series_ttl_s = series_ttl_s
        self.custom_metrics_cap = custom_metrics_cap
        labels = CORE_LABELS
        self.invocations = Counter("faas_invocations", "Invocations", labels, registry=registry)
        self.errors = Counter(
            "faas_errors", "Invocations that failed (outcome=failure)", labels, registry=registry
        )
        self.coldstarts = Counter(
            "faas_coldstarts", "Invocations that were cold starts", labels, registry=registry
        )
        self.duration = Histogram(
            "faas_invoke_duration_seconds",
            "Handler duration",
            labels,
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.init_duration = Histogram(
            "faas_init_duration_seconds",
            "Init (cold start) duration",
            labels,
            registry=registry,
            buckets=INIT_BUCKETS,
        )
        # A histogram, not a gauge: many processes report per function, and the
        # distribution (p99 against the configured memory) is what sizing needs.
        self.mem_usage = Histogram(
            "faas_mem_usage_bytes",
            "Peak process memory per invocation",
            labels,
            registry=registry,
            buckets=MEMORY_BUCKETS,
        )
        self.billed = Counter(
            "faas_billed_duration_seconds", "Billed duration", labels, registry=registry
        )
        self.cost = Counter("faas_cost_usd", "Estimated cost in USD", labels, registry=registry)
        self.gb_seconds = Counter(
            "faas_billed_gb_seconds", "Billed GB-seconds", labels, registry=registry
        )
        self.overflow = Counter(
            "faaslens_series_overflow",
            "Samples folded into the _overflow series because a metric hit its series cap",
            ["metric"],
            registry=registry,
        )
        self.expired = Counter(
            "faaslens_series_expired",
            "Series removed after being idle longer than the TTL",
            registry=registry,
        )
        self.custom_rejected = Counter(
            "faaslens_custom_metrics_rejected",
            "Custom metric samples that could not be aggregated",
            ["reason"],
            registry=registry,
        )
        self._core_overflow = self.overflow.labels("faas_invocations_total")
        self._custom_rejected = {r: self.custom_rejected.labels(r) for r in CUSTOM_REJECT_REASONS}
        self._core: dict[tuple[str, ...], _CoreSeries] = {}
        self._custom: dict[str, _Custom] = {}
        # (name, kind, label keys) that failed to register: not retried on every sample.
        self._custom_failed: dict[tuple[str, str, tuple[str, ...]], str] = {}

    # -- hot path -------------------------------------------------------------------

    def observe_many(self, invocations: Iterable[dict[str, Any]], now: float) -> None:
        """Update the aggregates from many invocation records (``now`` = monotonic time)."""
        for inv in invocations:
            self.observe(inv, now)

    def observe(self, inv: dict[str, Any], now: float) -> None:
        """Update the aggregates from one validated invocation record."""
        get = inv.get
        function = get("faas.name", "")
        outcome = inv["event.outcome"]
        cold = inv["faas.coldstart"]
        key: tuple[str, ...] = (
            function,
            get("faas.version", ""),
            get("service.environment", ""),
            outcome,
            "true" if cold else "false",
            get("cloud.provider", ""),
            get("cloud.region", ""),
            get("faas.trigger.type", ""),
        )
        s = self._core.get(key)
        if s is None:
            s = self._new_core(key)
        key = s.key
        s.last = now
        if s.inv is None:
            s.inv = self.invocations.labels(*key)
            s.dur = self.duration.labels(*key)
        s.inv.inc()
        secs = inv["event.duration"] / 1e9
        bucket = bisect_left(DURATION_BUCKETS, secs)  # the bucket observe() will count in
        if now - s.ex_t[bucket] >= EXEMPLAR_EVERY_S:
            s.ex_t[bucket] = now
            s.dur.observe(secs, _exemplar(inv["faas.execution"], get("trace.id")))
        else:
            s.dur.observe(secs)
        if outcome == "failure":
            if s.err is None:
                s.err = self.errors.labels(*key)
            s.err.inc()
        if cold:
            if s.cold is None:
                s.cold = self.coldstarts.labels(*key)
            s.cold.inc()
            init = get("faas.coldstart_duration")
            if init is not None:
                if s.init is None:
                    s.init = self.init_duration.labels(*key)
                s.init.observe(init / 1e9)
        mem = get("faas.mem_usage")
        if mem is not None:
            if s.mem is None:
                s.mem = self.mem_usage.labels(*key)
            s.mem.observe(mem)
        billed = get("faas.billed_duration")
        if billed is not None:
            if s.billed is None:
                s.billed = self.billed.labels(*key)
            s.billed.inc(billed / 1000.0)
        cost = get("faas.cost.usd")
        if cost is not None:
            if s.cost is None:
                s.cost = self.cost.labels(*key)
            s.cost.inc(cost)
        gbs = get("faas.cost.gb_seconds")
        if gbs is not None:
            if s.gbs is None:
                s.gbs = self.gb_seconds.labels(*key)
            s.gbs.inc(gbs)
        metrics = get("metrics")
        if metrics:
            for m in metrics:
                self._observe_custom(function, m, now)

    def _new_core(self, key: tuple[str, ...]) -> _CoreSeries:
        if len(self._core) >= self.series_cap:
            self._core_overflow.inc()
            s = self._core.get(_OVERFLOW_KEY)
            if s is not None:
                return s
            key = _OVERFLOW_KEY  # the one series allowed past the cap
        s = _CoreSeries(key)
        self._core[key] = s
        return s

    def _observe_custom(self, function: str, m: dict[str, Any], now: float) -> None:
        name: str = m["name"]
        kind: str = m["kind"]
        user: dict[str, str] = m.get("labels") or {}
        c = self._custom.get(name)
        if c is None:
            c = self._register_custom(name, kind, user)
            if c is None:
                return
        elif c.kind != kind:
            self._custom_rejected["kind_conflict"].inc()
            return
        n_user = len(user) - ("function" in user)  # the worker's "function" wins
        if n_user != len(c.label_keys) or not all(k in user for k in c.label_keys):
            self._custom_rejected["label_conflict"].inc()
            return
        key = (function, *[user[k] for k in c.label_keys])
        slot = c.children.get(key)
        if slot is None:
            if len(c.children) >= self.series_cap:
                self.overflow.labels(c.metric._name).inc()
                key = (OVERFLOW,) * len(key)
                slot = c.children.get(key)
            if slot is None:
                slot = [c.metric.labels(*key), now]
                c.children[key] = slot
        slot[1] = now
        child = slot[0]
        value = m["value"]
        if kind == "counter":
            child.inc(value)
        elif kind == "gauge":
            child.set(value)
        else:
            child.observe(value)

    def _register_custom(self, name: str, kind: str, user: dict[str, str]) -> _Custom | None:
        label_keys = tuple(sorted(k for k in user if k != "function"))
        failed = self._custom_failed.get((name, kind, label_keys))
        if failed is not None:
            self._custom_rejected[failed].inc()
            return None
        if len(self._custom) >= self.custom_metrics_cap:
            self._custom_rejected["too_many_metrics"].inc()
            return None
        labelnames = ("function", *label_keys)
        full = CUSTOM_PREFIX + name
        help_ = f"Custom {kind} sent by functions"
        metric: Counter | Gauge | Histogram
        try:
            if kind == "counter":
                metric = Counter(full, help_, labelnames, registry=self._registry)
            elif kind == "gauge":
                metric = Gauge(full, help_, labelnames, registry=self._registry)
            else:
                metric = Histogram(full, help_, labelnames, registry=self._registry)
        except ValueError as exc:
            # A name clash with another metric (counter "x" makes "x_total", so gauge
            # "x_total" clashes) or a reserved label name ("le" on a histogram).
            reason = "kind_conflict" if "Duplicated" in str(exc) else "invalid"
            if len(self._custom_failed) < self.custom_metrics_cap:
                self._custom_failed[(name, kind, label_keys)] = reason
            self._custom_rejected[reason].inc()
            return None
        c = _Custom(kind, metric, label_keys)
        self._custom[name] = c
        return c

    # -- housekeeping ---------------------------------------------------------------

    def sweep(self, now: float) -> int:
        """Remove series idle for longer than the TTL; return how many label sets went."""
        cutoff = now - self.series_ttl_s
        removed = 0
        for key in [k for k, s in self._core.items() if s.last < cutoff]:
            s = self._core.pop(key)
            for metric, child in (
                (self.invocations, s.inv),
                (self.duration, s.dur),
                (self.errors, s.err),
                (self.coldstarts, s.cold),
                (self.init_duration, s.init),
                (self.mem_usage, s.mem),
                (self.billed, s.billed),
                (self.cost, s.cost),
                (self.gb_seconds, s.gbs),
            ):
                if child is not None:
                    metric.remove(*key)
            removed += 1
        for name, c in list(self._custom.items()):
            for key in [k for k, slot in c.children.items() if slot[1] < cutoff]:
                del c.children[key]
                c.metric.remove(*key)
                removed += 1
            if not c.children:  # unregister, so the name is free again (even for another kind)
                self._registry.unregister(c.metric)
                del self._custom[name]
        if removed:
            self.expired.inc(removed)
        return removed

    @property
    def core_series(self) -> int:
        """Label sets currently held for the core metrics."""
        return len(self._core)
