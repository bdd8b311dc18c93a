"""The metrics prometheus-aggregator lines describe, kept as that aggregator keeps them.

A metric is declared once, with a type and a help text: by the declaration
file at start, or at run time by a JSON line carrying both. Observations then
name it: counters add, gauges set (or add, with ``op: add``), histograms count
the value into the declared buckets (``value <= bound``, as Prometheus's ``le``).
Each metric is exposed under its own name, so queries written for the
aggregator keep working; counters get the ``_total`` Prometheus requires when
their name lacks it.

Series fall under the worker's limits for every aggregate: ``series_cap``
label sets per metric (beyond it, samples fold into one ``_overflow`` series
and ``faaslens_series_overflow_total`` counts them), idle series expire after
``series_ttl_s`` (``faaslens_series_expired_total``), and at most
``metrics_cap`` metrics exist. Metrics declared at run time go when their last
series expires, so a burst of one-off names cannot fill the cap for good;
metrics from the declaration file stay.

Updates happen on the event loop thread; a scrape on another thread reads a
snapshot of the series (see ``aggregates``). The families are rendered by
prometheus_client, which escapes label values and help texts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from faaslens.ingest.lines_parse import Observation
from faaslens.ingest.metric_lint import label_problem, name_problem

__all__ = ["STORE_REASONS", "LineMetrics"]

# Why a parsed line was not applied: the bounded values of the `reason` label.
STORE_REASONS: Final = (
    "undeclared",  # no type and help yet for this name (a text line cannot declare)
    "type_conflict",  # the line names another type than the metric was declared with
    "name_lint",  # promtool would flag the name: see metric_lint
    "label_lint",  # a label name promtool would flag, or a reserved one (le, quantile)
    "negative_counter",  # a counter only goes up
    "name_conflict",  # the name is taken by another metric of the worker
    "too_many_metrics",  # metrics_cap reached
)
OVERFLOW: Final = "_overflow"


def _exposed(name: str, kind: str) -> str:
    """The family name Prometheus sees: counters end in ``_total``."""
    return name + "_total" if kind == "counter" and not name.endswith("_total") else name


class _Series:
    __slots__ = ("counts", "last", "value")

    def __init__(self, buckets: int | None) -> None:
        self.value = 0.0  # a counter's or gauge's value; a histogram's sum
        self.counts = [0] * (buckets + 1) if buckets is not None else []  # +Inf last
        self.last = 0.0


class _LineMetric(Collector):
    """One declared metric and its series, registered as a collector of its own:
    the registry refuses a name that clashes with any other metric."""

    def __init__(self, obs: Observation, kind: str, help_: str, permanent: bool) -> None:
        self.name = obs.name
        self.kind = kind
        self.help = help_
        self.buckets = (obs.buckets or ()) if kind == "histogram" else None
        self.exposed = _exposed(obs.name, kind)
        self.permanent = permanent
        self.series: dict[tuple[tuple[str, str], ...], _Series] = {}
        self.last = 0.0
        self._les = (
            (*(floatToGoString(b) for b in self.buckets), "+Inf")  # type: ignore[no-untyped-call]
            if self.buckets is not None
            else ()
        )

    def _family(self) -> Metric:
        if self.kind == "counter":
            return CounterMetricFamily(self.exposed, self.help)
        if self.kind == "gauge":
            return GaugeMetricFamily(self.exposed, self.help)
        return HistogramMetricFamily(self.exposed, self.help)

    def describe(self) -> Iterable[Metric]:
        """The family without samples: its names are what the registry checks."""
        return (self._family(),)

    def collect(self) -> Iterable[Metric]:
        """The family with every series, or nothing before the first observation."""
        series = list(self.series.items())  # one step under the GIL: a snapshot
        if not series:
            return ()
        fam = self._family()
        add = fam.samples.append
        name = self.exposed
        if self.buckets is None:
            for key, s in series:
                add(Sample(name, dict(key), s.value))
            return (fam,)
        for key, s in series:
            labels = dict(key)
            acc = 0
            for le, n in zip(self._les, list(s.counts), strict=True):
                acc += n
                add(Sample(name + "_bucket", {**labels, "le": le}, acc))
            add(Sample(name + "_count", labels, acc))  # the +Inf bucket, as read
            add(Sample(name + "_sum", labels, s.value))
        return (fam,)


class LineMetrics:
    """Applies parsed lines (see :mod:`lines_parse`) to the declared metrics.

    ``overflow`` is a counter with a ``metric`` label and ``expired`` one
    without labels: the worker passes the ones its other aggregates count in.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        overflow: Counter,
        expired: Counter,
        series_cap: int = 10_000,
        series_ttl_s: float = 900.0,
        metrics_cap: int = 1000,
    ) -> None:
        self._registry = registry
        self._overflow = overflow
        self._expired = expired
        self.series_cap = series_cap
        self.series_ttl_s = series_ttl_s
        self.metrics_cap = metrics_cap
        self._metrics: dict[str, _LineMetric] = {}
        # (name, kind) whose declaration failed: not retried on every line.
        self._failed: dict[tuple[str, str], str] = {}

    def declare_all(self, declarations: Sequence[Observation], now: float) -> None:
        """Declare the file's metrics for good and apply any values they carry.

        Raises ValueError naming the first declaration that cannot be used."""
        for d in declarations:
            reason = self._declare(d, now, permanent=True)
            if reason is None and d.value is not None:
                reason = self.observe(d, now)
            if reason is not None:
                kind = d.kind or ""
                why = name_problem(_exposed(d.name, kind), kind) if reason == "name_lint" else None
                detail = f" ({why})" if why else ""
                raise ValueError(f"declaration {d.name!r}: {reason}{detail}")

    def observe(self, obs: Observation, now: float) -> str | None:
        """Apply one parsed line (``now``: monotonic seconds); return None, or
        the reason from :data:`STORE_REASONS` it was refused for."""
        m = self._metrics.get(obs.name)
        if m is None:
            reason = self._declare(obs, now, permanent=False)
            if reason is not None:
                return reason
            m = self._metrics[obs.name]
        elif obs.kind is not None and obs.kind != m.kind:
            return "type_conflict"
        m.last = now
        value = obs.value
        if value is None:
            return None  # a declaration only
        if m.kind == "counter" and value < 0:
            return "negative_counter"
        s = m.series.get(obs.labels)
        if s is None:
            if label_problem(k for k, _ in obs.labels) is not None:
                return "label_lint"
            s = self._new_series(m, obs.labels)
        s.last = now
        if m.buckets is not None:
            s.counts[bisect_left(m.buckets, value)] += 1
            s.value += value
        elif m.kind == "counter" or obs.op == "add":
            s.value += value
        else:
            s.value = value
        return None

    def _new_series(self, m: _LineMetric, key: tuple[tuple[str, str], ...]) -> _Series:
        if len(m.series) >= self.series_cap:
            self._overflow.labels(m.exposed).inc()
            key = tuple((k, OVERFLOW) for k, _ in key)
            s = m.series.get(key)
            if s is not None:
                return s
        s = _Series(len(m.buckets) if m.buckets is not None else None)
        m.series[key] = s
        return s

    def _declare(self, obs: Observation, now: float, *, permanent: bool) -> str | None:
        kind, help_ = obs.kind, obs.help
        if kind is None or not help_:
            return "undeclared"
        failed = self._failed.get((obs.name, kind))
        if failed is not None:
            return failed
        if len(self._metrics) >= self.metrics_cap:
            return "too_many_metrics"
        m = _LineMetric(obs, kind, help_, permanent)
        reason = None
        if name_problem(m.exposed, kind) is not None:
            reason = "name_lint"
        else:
            try:
                self._registry.register(m)
            except ValueError:  # the name (or a derived one: x_total, x_bucket) is taken
                reason = "name_conflict"
        if reason is not None:
            if len(self._failed) < self.metrics_cap:
                self._failed[(obs.name, kind)] = reason
            return reason
        m.last = now
        self._metrics[obs.name] = m
        return None

    def sweep(self, now: float) -> int:
        """Remove series idle longer than the TTL, and run-time metrics left
        without series; return how many series went."""
        cutoff = now - self.series_ttl_s
        removed = 0
        for name, m in list(self._metrics.items()):
            idle = [k for k, s in m.series.items() if s.last < cutoff]
            for key in idle:
                del m.series[key]
            removed += len(idle)
            if not m.permanent and not m.series and m.last < cutoff:
                self._registry.unregister(m)
                del self._metrics[name]
                self._failed.clear()  # a name it blocked may be free now
        if removed:
            self._expired.inc(removed)
        return removed

    @property
    def metrics(self) -> int:
        """Metrics currently declared."""
        return len(self._metrics)
