"""Prometheus aggregates of invocation records, on an injected registry.

Per invocation: counts, durations (with an exemplar pointing at the
invocation), memory, billed time and cost, labelled only by bounded
dimensions; plus the custom metrics functions send. Each metric has a cap on
its series (excess goes to one ``_overflow`` series, so totals stay right)
and series idle longer than the TTL are removed by :meth:`Aggregates.sweep`.

The values are plain numbers and lists, one small object per label tuple,
turned into metric families only when the registry is collected. A
prometheus_client metric takes a lock and checks its state on every update;
at ~10 updates per invocation that alone cost more than the worker's whole
budget per invocation. Updates happen on the event loop thread only; a
scrape on another thread reads a snapshot of the series and may see an
invocation in one metric and not yet in the next, never an error.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import Any, Final

import prometheus_client
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

from faaslens.ingest.buckets import BucketTable, buckets_for
from faaslens.ingest.recent import RecentKeys
from faaslens.protocol import histogram_buckets

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
# Started and unfinished invocations: no outcome, cold start or trigger is known for
# an invocation that never finished, so these have the identity labels only.
LIFECYCLE_LABELS: Final = ("function", "version", "environment", "provider", "region")
_LIFECYCLE_OVERFLOW_KEY: Final = (OVERFLOW,) * len(LIFECYCLE_LABELS)
_LIFECYCLE_FIELDS: Final = (
    "faas.name",
    "faas.version",
    "service.environment",
    "cloud.provider",
    "cloud.region",
)

DURATION_BUCKETS: Final = histogram_buckets("s")
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
CUSTOM_REJECT_REASONS: Final = (
    "kind_conflict",
    "label_conflict",
    "unit_conflict",
    "invalid",
    "too_many_metrics",
)
# Custom metric and label names as the protocol allows them: valid Prometheus names
# that need no escaping in either format. Anything else is refused, never exposed.
_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")


# A Sample from its six fields in order. Sample(...) runs a Python-level __new__:
# a scrape builds hundreds of thousands of samples, and this costs half as much.
_sample: Final = partial(tuple.__new__, Sample)


def _le(bound: float) -> str:
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


# Set on the thread that renders /metrics while it collects the rest of the registry:
# the aggregates then render themselves (see Aggregates.exposition) instead.
_MUTED = threading.local()


def _muted() -> bool:
    return getattr(_MUTED, "on", False)


def _utf8(value: str) -> str:
    """``value`` as a string UTF-8 can encode: a lone surrogate (which a Python string,
    unlike JSON text, may hold) becomes U+FFFD, so one value cannot fail a whole scrape."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _clean(values: tuple[str, ...]) -> tuple[str, ...]:
    """Label values as :func:`_utf8` leaves them (the same tuple when nothing changes)."""
    cleaned = tuple(map(_utf8, values))
    return values if cleaned == values else cleaned


def _escape(value: str) -> str:
    """A label value escaped as both formats require (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str, openmetrics: bool) -> str:
    """HELP text: the text format escapes backslash and newline, OpenMetrics also quotes."""
    text = _utf8(text).replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    """``{name="value",...`` (no closing brace), escaped as both formats require.

    Names are the worker's own or checked custom names (see :data:`_NAME_RE`)."""
    return "{" + ",".join(f'{n}="{_escape(_utf8(v))}"' for n, v in zip(names, values, strict=True))


def _num(v: float) -> str:
    """A sample value: integers as such, floats in their shortest exact form."""
    if type(v) is int:
        return str(v)
    if math.isfinite(v):
        return repr(v)
    return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")


def _exemplar_text(ex: Exemplar) -> str:
    # An invocation id is any string the protocol allows: escaped like any label value.
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in ex.labels.items())
    ts = "" if ex.timestamp is None else f" {ex.timestamp!r}"
    return f" # {{{labels}}} {_num(ex.value)}{ts}"


def _head(out: list[str], name: str, help_: str, kind: str, openmetrics: bool) -> None:
    # The text format names a counter's family with its _total suffix.
    family = name + "_total" if kind == "counter" and not openmetrics else name
    out.append(f"# HELP {family} {_escape_help(help_, openmetrics)}\n# TYPE {family} {kind}\n")


class _Histogram:
    """How one histogram's series render: sample names and ``le`` values."""

    __slots__ = ("bucket", "count", "les", "no_exemplars", "sum")

    def __init__(self, name: str, bounds: Sequence[float]) -> None:
        self.bucket = name + "_bucket"
        self.count = name + "_count"
        self.sum = name + "_sum"
        self.les = (*(_le(b) for b in bounds), "+Inf")
        self.no_exemplars: tuple[Exemplar | None, ...] = (None,) * len(self.les)

    def add(
        self,
        samples: list[Sample],
        labels: dict[str, str],
        counts: Sequence[int],
        total: float,
        exemplars: Sequence[Exemplar | None] | None = None,
    ) -> None:
        """Append one series as prometheus_client renders it: cumulative buckets
        (each with the exemplar of its own observations), count, sum."""
        append = samples.append
        bucket = self.bucket
        acc = 0
        for le, n, ex in zip(self.les, counts, exemplars or self.no_exemplars, strict=True):
            acc += n
            bucket_labels = labels.copy()
            bucket_labels["le"] = le
            append(_sample((bucket, bucket_labels, acc, None, ex, None)))
        # The count is the +Inf bucket as read, so the two always agree.
        append(_sample((self.count, labels, acc, None, None, None)))
        append(_sample((self.sum, labels, total, None, None, None)))

    def text(
        self,
        out: list[str],
        lbl: str,
        counts: Sequence[int],
        total: float,
        exemplars: Sequence[Exemplar | None] | None,
    ) -> None:
        """The same series as exposition lines (``lbl`` from :func:`_label_text`)."""
        append = out.append
        bucket = self.bucket + lbl + ',le="'
        acc = 0
        for le, n, ex in zip(self.les, counts, exemplars or self.no_exemplars, strict=True):
            acc += n
            if ex is None:
                append(f'{bucket}{le}"}} {acc}\n')
            else:
                append(f'{bucket}{le}"}} {acc}{_exemplar_text(ex)}\n')
        append(f"{self.count}{lbl}}} {acc}\n{self.sum}{lbl}}} {_num(total)}\n")


_DURATION: Final = _Histogram("faas_invoke_duration_seconds", DURATION_BUCKETS)
_INIT: Final = _Histogram("faas_init_duration_seconds", INIT_BUCKETS)
_MEMORY: Final = _Histogram("faas_mem_usage_bytes", MEMORY_BUCKETS)


class _CoreSeries:
    """The values of every core metric for one label tuple.

    A metric has a series for the label tuple only once it got a value, as
    with prometheus_client children created on first use: a zero count or
    ``None`` means no series.
    """

    __slots__ = (
        "billed", "cold", "cost", "dur", "dur_ex", "dur_sum", "err", "ex_t", "gbs", "init",
        "init_sum", "inv", "key", "last", "lbl", "mem", "mem_sum",
    )  # fmt: skip

    def __init__(self, key: tuple[str, ...]) -> None:
        self.key = _clean(key)  # the label values (the overflow key past the cap)
        self.lbl = _label_text(CORE_LABELS, self.key)  # rendered once, used by every scrape
        self.last = 0.0
        self.inv = 0
        self.err = 0
        self.cold = 0
        # Histograms: per-bucket counts (+Inf last, not cumulative) and the sum.
        n = len(_DURATION.les)
        self.dur = [0] * n
        self.dur_sum = 0.0
        self.dur_ex: list[Exemplar | None] = [None] * n  # the last exemplar per bucket
        self.ex_t = [-EXEMPLAR_EVERY_S] * n  # when each bucket's exemplar was set (monotonic)
        self.init: list[int] | None = None
        self.init_sum = 0.0
        self.mem: list[int] | None = None
        self.mem_sum = 0.0
        self.billed: float | None = None
        self.cost: float | None = None
        self.gbs: float | None = None


_CORE_FAMILIES: Final = (
    # (family, help, type), in the order both collect() and _text_core() give them.
    ("faas_invocations", "Invocations", "counter"),
    ("faas_errors", "Invocations that failed (outcome=failure)", "counter"),
    ("faas_coldstarts", "Invocations that were cold starts", "counter"),
    ("faas_invoke_duration_seconds", "Handler duration", "histogram"),
    ("faas_init_duration_seconds", "Init (cold start) duration", "histogram"),
    # A histogram, not a gauge: many processes report per function, and the
    # distribution (p99 against the configured memory) is what sizing needs.
    ("faas_mem_usage_bytes", "Peak process memory per invocation", "histogram"),
    ("faas_billed_duration_seconds", "Billed duration", "counter"),
    ("faas_cost_usd", "Estimated cost in USD", "counter"),
    ("faas_billed_gigabyte_seconds", "Billed GB-seconds (GiB of memory x billed s)", "counter"),
)


def _core_families() -> tuple[Metric, ...]:
    return tuple(
        CounterMetricFamily(name, help_, labels=CORE_LABELS)
        if kind == "counter"
        else HistogramMetricFamily(name, help_, labels=CORE_LABELS)
        for name, help_, kind in _CORE_FAMILIES
    )


class _CoreCollector(Collector):
    """Turns the core series into metric families when the registry is collected."""

    def __init__(self, series: dict[tuple[str, ...], _CoreSeries]) -> None:
        self._series = series

    def describe(self) -> Iterable[Metric]:
        """The families without samples: their names are what the registry checks."""
        return _core_families()

    def collect(self) -> Iterable[Metric]:
        """All core families, with the samples of every label tuple."""
        if _muted():
            return ()
        fams = _core_families()
        inv, err, cold, dur, init, mem, billed, cost, gbs = (f.samples for f in fams)
        # list() copies in one step under the GIL: the loop thread may add or
        # remove series while this runs.
        for s in list(self._series.values()):
            labels = dict(zip(CORE_LABELS, s.key, strict=True))
            inv.append(_sample(("faas_invocations_total", labels, s.inv, None, None, None)))
            if s.err:
                err.append(_sample(("faas_errors_total", labels, s.err, None, None, None)))
            if s.cold:
                cold.append(_sample(("faas_coldstarts_total", labels, s.cold, None, None, None)))
            _DURATION.add(dur, labels, s.dur, s.dur_sum, s.dur_ex)
            # Each optional value is read once: it may turn from None meanwhile.
            h = s.init
            if h is not None:
                _INIT.add(init, labels, h, s.init_sum)
            h = s.mem
            if h is not None:
                _MEMORY.add(mem, labels, h, s.mem_sum)
            v = s.billed
            if v is not None:
                billed.append(
                    _sample(("faas_billed_duration_seconds_total", labels, v, None, None, None))
                )
            v = s.cost
            if v is not None:
                cost.append(_sample(("faas_cost_usd_total", labels, v, None, None, None)))
            v = s.gbs
            if v is not None:
                gbs.append(
                    _sample(("faas_billed_gigabyte_seconds_total", labels, v, None, None, None))
                )
        return fams


def _text_core(series: Iterable[_CoreSeries], openmetrics: bool) -> list[str]:
    """The core families as exposition text: what collect() holds, ~10x faster to
    produce than through metric families (label strings are rendered once per series)."""
    snapshot = list(series)
    parts: list[list[str]] = [[] for _ in _CORE_FAMILIES]
    inv, err, cold, dur, init, mem, billed, cost, gbs = parts
    for s in snapshot:
        lbl = s.lbl
        inv.append(f"faas_invocations_total{lbl}}} {s.inv}\n")
        if s.err:
            err.append(f"faas_errors_total{lbl}}} {s.err}\n")
        if s.cold:
            cold.append(f"faas_coldstarts_total{lbl}}} {s.cold}\n")
        _DURATION.text(dur, lbl, s.dur, s.dur_sum, s.dur_ex if openmetrics else None)
        h = s.init
        if h is not None:
            _INIT.text(init, lbl, h, s.init_sum, None)
        h = s.mem
        if h is not None:
            _MEMORY.text(mem, lbl, h, s.mem_sum, None)
        v = s.billed
        if v is not None:
            billed.append(f"faas_billed_duration_seconds_total{lbl}}} {_num(v)}\n")
        v = s.cost
        if v is not None:
            cost.append(f"faas_cost_usd_total{lbl}}} {_num(v)}\n")
        v = s.gbs
        if v is not None:
            gbs.append(f"faas_billed_gigabyte_seconds_total{lbl}}} {_num(v)}\n")
    out: list[str] = []
    for (name, help_, kind), lines in zip(_CORE_FAMILIES, parts, strict=True):
        _head(out, name, help_, kind, openmetrics)
        out += lines
    return out


class _LifecycleSeries:
    """Started and unfinished counts for one function identity (both always rendered,
    so that ratios and alerts have a zero to work with)."""

    __slots__ = ("key", "last", "lbl", "started", "unfinished")

    def __init__(self, key: tuple[str, ...]) -> None:
        self.key = key
        self.lbl = _label_text(LIFECYCLE_LABELS, key)
        self.last = 0.0
        self.started = 0
        self.unfinished = 0


_LIFECYCLE_FAMILIES: Final = (
    ("faas_invocations_started", "Invocations that announced their start", "counter"),
    (
        "faas_invocations_unfinished",
        "Started invocations whose record did not come by their timeout plus grace period",
        "counter",
    ),
)


def _lifecycle_families() -> tuple[CounterMetricFamily, ...]:
    return tuple(
        CounterMetricFamily(name, help_, labels=LIFECYCLE_LABELS)
        for name, help_, _ in _LIFECYCLE_FAMILIES
    )


class _LifecycleCollector(Collector):
    """The started / unfinished series as metric families, when collected."""

    def __init__(self, series: dict[tuple[str, ...], _LifecycleSeries]) -> None:
        self._series = series

    def describe(self) -> Iterable[Metric]:
        """The families without samples."""
        return _lifecycle_families()

    def collect(self) -> Iterable[Metric]:
        """Both families, a sample each per function identity."""
        if _muted():
            return ()
        fams = _lifecycle_families()
        started, unfinished = (f.samples for f in fams)
        for s in list(self._series.values()):
            labels = dict(zip(LIFECYCLE_LABELS, s.key, strict=True))
            started.append(
                _sample(("faas_invocations_started_total", labels, s.started, None, None, None))
            )
            unfinished.append(
                _sample(
                    ("faas_invocations_unfinished_total", labels, s.unfinished, None, None, None)
                )
            )
        return fams


def _text_lifecycle(series: Iterable[_LifecycleSeries], openmetrics: bool) -> list[str]:
    """The lifecycle families as exposition text (what their collector holds)."""
    snapshot = list(series)
    out: list[str] = []
    (started, h1, k1), (unfinished, h2, k2) = _LIFECYCLE_FAMILIES
    _head(out, started, h1, k1, openmetrics)
    out += [f"faas_invocations_started_total{s.lbl}}} {s.started}\n" for s in snapshot]
    _head(out, unfinished, h2, k2, openmetrics)
    out += [f"faas_invocations_unfinished_total{s.lbl}}} {s.unfinished}\n" for s in snapshot]
    return out


class _CustomSeries:
    """One series of a custom metric: the counter's or gauge's value, or a
    histogram's sum and per-bucket counts (+Inf last, not cumulative)."""

    __slots__ = ("buckets", "key", "last", "value")

    def __init__(self, key: tuple[str, ...], n_buckets: int) -> None:
        self.key = _clean(key)  # label values as exposed
        self.value: float = 0.0
        self.buckets = [0] * n_buckets
        self.last = 0.0


class _Custom(Collector):
    """One custom metric and its series, registered as a collector of its own: the
    registry refuses a clashing name as for any metric, and a sweep can unregister
    it alone, freeing its name."""

    def __init__(
        self,
        full: str,
        kind: str,
        label_keys: tuple[str, ...],
        unit: str | None,
        bounds: tuple[float, ...] = (),
    ) -> None:
        self.full = full
        self.kind = kind
        self.unit = unit  # of the first sample: later samples must agree
        self.bounds = bounds  # histograms only (+Inf implied)
        self.label_keys = label_keys  # user label names, sorted, without "function"
        self.labelnames = ("function", *label_keys)
        self.series: dict[tuple[str, ...], _CustomSeries] = {}
        self.help = f"Custom {kind} sent by functions" + (f" (unit: {unit})" if unit else "")
        self.name = self._family().name  # a counter's family name loses a "_total"
        self.shape = _Histogram(self.name, bounds) if kind == "histogram" else None

    def _family(self) -> Metric:
        if self.kind == "counter":
            return CounterMetricFamily(self.full, self.help, labels=self.labelnames)
        if self.kind == "gauge":
            return GaugeMetricFamily(self.full, self.help, labels=self.labelnames)
        return HistogramMetricFamily(self.full, self.help, labels=self.labelnames)

    def describe(self) -> Iterable[Metric]:
        """The family without samples: its names are what the registry checks."""
        return (self._family(),)

    def text(self, openmetrics: bool) -> list[str]:
        """The family as exposition text (see _text_core)."""
        out: list[str] = []
        name = self.name
        _head(out, name, self.help, self.kind, openmetrics)
        names = self.labelnames
        series = list(self.series.values())
        shape = self.shape
        if shape is not None:
            for s in series:
                shape.text(out, _label_text(names, s.key), s.buckets, s.value, None)
        else:
            sample = name + "_total" if self.kind == "counter" else name
            for s in series:
                out.append(f"{sample}{_label_text(names, s.key)}}} {_num(s.value)}\n")
        return out

    def collect(self) -> Iterable[Metric]:
        """The family with a sample set per series."""
        if _muted():
            return ()
        fam = self._family()
        samples = fam.samples
        names = self.labelnames
        series = list(self.series.values())  # a snapshot, as for the core series
        shape = self.shape
        if shape is not None:
            for s in series:
                shape.add(samples, dict(zip(names, s.key, strict=True)), s.buckets, s.value)
        else:
            sample = fam.name + "_total" if self.kind == "counter" else fam.name
            for s in series:
                labels = dict(zip(names, s.key, strict=True))
                samples.append(_sample((sample, labels, s.value, None, None, None)))
        return (fam,)


def _exemplar(exec_id: Any, trace_id: Any) -> dict[str, str] | None:
    """Exemplar labels for an invocation, or None when its id cannot be one: too long
    for OpenMetrics, or holding a double quote. Escaped (``\\"``) it is valid
    OpenMetrics, but prometheus_client's parser (0.2x) ends an exemplar's labels at
    any quote, so the id could not be read back by every client."""
    if type(exec_id) is not str or len(exec_id) > _EXEMPLAR_ID_ROOM or '"' in exec_id:
        return None
    exec_id = _utf8(exec_id)
    if type(trace_id) is str and len(exec_id) <= _EXEMPLAR_BOTH_ROOM:
        return {"invocation_id": exec_id, "trace_id": trace_id}
    return {"invocation_id": exec_id}


def _names_invalid(name: str, kind: str, label_keys: tuple[str, ...]) -> bool:
    """A metric or label name that is not a plain Prometheus name, or a label name
    Prometheus reserves (prometheus_client refuses them): any starting with ``__``,
    and ``le`` on a histogram."""
    if _NAME_RE.fullmatch(name) is None or kind not in ("counter", "gauge", "histogram"):
        return True
    return any(_NAME_RE.fullmatch(k) is None or k.startswith("__") for k in label_keys) or (
        kind == "histogram" and "le" in label_keys
    )


class Aggregates:
    """Updates the Prometheus aggregates from validated invocation records."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        series_cap: int = 10_000,
        series_ttl_s: float = 900.0,
        custom_metrics_cap: int = 1000,
        custom_buckets: BucketTable | None = None,
        dedupe_window_s: float = 180.0,
        dedupe_max_keys: int = 250_000,
    ) -> None:
        # _created samples double the scrape cost and say little for these metrics.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self._registry = registry
        self.series_cap = series_cap
        self.series_ttl_s = series_ttl_s
        self.custom_metrics_cap = custom_metrics_cap
        self.custom_buckets: BucketTable = dict(custom_buckets or {})
        # Invocation records already counted (id and start time): a record the
        # transport repeats, or a replayed signed frame, is counted once.
        self._seen = RecentKeys(dedupe_window_s, dedupe_max_keys)
        self._core: dict[tuple[str, ...], _CoreSeries] = {}
        registry.register(_CoreCollector(self._core))
        self._lifecycle: dict[tuple[str, ...], _LifecycleSeries] = {}
        registry.register(_LifecycleCollector(self._lifecycle))
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
        self.repeated = Counter(
            "faaslens_invocations_repeated",
            "Invocation records received again (same id and start time) and not counted again",
            registry=registry,
        )
        self.custom_dropped = Counter(
            "faaslens_custom_metrics_dropped",
            "Custom metric updates a function's shipper dropped before sending "
            "(bad values, too many label sets or series; faas.metrics_dropped)",
            ["function"],
            registry=registry,
        )
        self._core_overflow = self.overflow.labels("faas_invocations_total")
        self._lifecycle_overflow = self.overflow.labels("faas_invocations_started_total")
        self._custom_rejected = {r: self.custom_rejected.labels(r) for r in CUSTOM_REJECT_REASONS}
        self._custom: dict[str, _Custom] = {}
        # (name, kind, label keys) that failed to register: not retried on every sample.
        self._custom_failed: dict[tuple[str, str, tuple[str, ...]], str] = {}

    # -- hot path -------------------------------------------------------------------

    def observe_many(self, invocations: Iterable[dict[str, Any]], now: float) -> None:
        """Update the aggregates from many invocation records (``now`` = monotonic time)."""
        for inv in invocations:
            self.observe(inv, now)

    def observe(self, inv: dict[str, Any], now: float) -> None:
        """Update the aggregates from one validated invocation record (once per record:
        the same ``faas.execution`` and ``@timestamp`` again is counted as repeated)."""
        record = hash((inv["faas.execution"], inv["@timestamp"]))
        if not self._seen.first_time(record, now):
            self.repeated.inc()
            return
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
        s.last = now
        s.inv += 1
        secs = inv["event.duration"] / 1e9
        i = bisect_left(DURATION_BUCKETS, secs)  # the first bucket with secs <= bound
        s.dur[i] += 1
        s.dur_sum += secs
        ex_t = s.ex_t
        if now - ex_t[i] >= EXEMPLAR_EVERY_S:
            ex_t[i] = now
            labels = _exemplar(inv["faas.execution"], get("trace.id"))
            if labels is not None:
                s.dur_ex[i] = Exemplar(labels, secs, time.time())
        if outcome == "failure":
            s.err += 1
        if cold:
            s.cold += 1
            init = get("faas.coldstart_duration")
            if init is not None:
                h = s.init
                if h is None:
                    h = s.init = [0] * len(_INIT.les)
                init_s = init / 1e9
                h[bisect_left(INIT_BUCKETS, init_s)] += 1
                s.init_sum += init_s
        mem = get("faas.mem_usage")
        if mem is not None:
            h = s.mem
            if h is None:
                h = s.mem = [0] * len(_MEMORY.les)
            h[bisect_left(MEMORY_BUCKETS, mem)] += 1
            s.mem_sum += mem
        # `or 0.0`: None (no series yet) and 0.0 both start from zero.
        billed = get("faas.billed_duration")
        if billed is not None:
            s.billed = (s.billed or 0.0) + billed / 1000.0
        cost = get("faas.cost.usd")
        if cost is not None:
            s.cost = (s.cost or 0.0) + cost
        gbs = get("faas.cost.gb_seconds")
        if gbs is not None:
            s.gbs = (s.gbs or 0.0) + gbs
        metrics = get("metrics")
        if metrics:
            for m in metrics:
                self._observe_custom(function, m, now)
        dropped = get("faas.metrics_dropped")
        if dropped:
            self.custom_dropped.labels(function).inc(dropped)

    def observe_started(self, res: dict[str, Any], start: dict[str, Any], now: float) -> None:
        """Count one started invocation (its frame's resource block and its start event,
        whose fields win)."""
        self._lifecycle_series(res, start, now).started += 1

    def observe_unfinished(self, res: dict[str, Any], start: dict[str, Any], now: float) -> None:
        """Count one invocation settled as unfinished (the same fields as its start)."""
        self._lifecycle_series(res, start, now).unfinished += 1

    def _lifecycle_series(
        self, res: dict[str, Any], ev: dict[str, Any], now: float
    ) -> _LifecycleSeries:
        get = res.get
        key: tuple[str, ...] = (
            get("faas.name", ""),
            get("faas.version", ""),
            get("service.environment", ""),
            get("cloud.provider", ""),
            get("cloud.region", ""),
        )
        if not ev.keys().isdisjoint(_LIFECYCLE_FIELDS):  # a field of the event wins
            key = tuple(
                ev.get(field, value) for field, value in zip(_LIFECYCLE_FIELDS, key, strict=True)
            )
        series = self._lifecycle
        s = series.get(key)
        if s is None:
            if len(series) >= self.series_cap:
                self._lifecycle_overflow.inc()
                key = _LIFECYCLE_OVERFLOW_KEY
                s = series.get(key)
            if s is None:
                s = series[key] = _LifecycleSeries(key)
        s.last = now
        return s

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
        unit: str | None = m.get("unit")
        c = self._custom.get(name)
        if c is None:
            c = self._register_custom(name, kind, user, unit)
            if c is None:
                return
        elif c.kind != kind:
            self._custom_rejected["kind_conflict"].inc()
            return
        elif c.unit != unit:
            # Buckets (and meaning) follow the first sample's unit: mixing would lie.
            self._custom_rejected["unit_conflict"].inc()
            return
        keys = c.label_keys
        # The worker's "function" wins over one sent in the labels.
        if len(user) - ("function" in user) != len(keys):
            self._custom_rejected["label_conflict"].inc()
            return
        try:
            # Unpacking costs ~5x these special cases, and most metrics have 0 or 1 label.
            if len(keys) == 1:
                key: tuple[str, ...] = (function, user[keys[0]])
            elif keys:
                key = (function, *map(user.__getitem__, keys))
            else:
                key = (function,)
        except KeyError:
            self._custom_rejected["label_conflict"].inc()
            return
        s = c.series.get(key)
        if s is None:
            s = self._new_custom(c, key)
        s.last = now
        value = m["value"]
        if kind == "counter":
            s.value += value
        elif kind == "gauge":
            s.value = value
        else:
            # A pre-aggregated object stands for `count` observations in value's bucket.
            s.buckets[bisect_left(c.bounds, value)] += m.get("count", 1)
            s.value += m.get("sum", value)

    def _new_custom(self, c: _Custom, key: tuple[str, ...]) -> _CustomSeries:
        if len(c.series) >= self.series_cap:
            self.overflow.labels(c.name).inc()
            key = (OVERFLOW,) * len(key)
            s = c.series.get(key)
            if s is not None:
                return s
        s = _CustomSeries(key, len(c.bounds) + 1 if c.kind == "histogram" else 0)
        c.series[key] = s
        return s

    def _register_custom(
        self, name: str, kind: str, user: dict[str, str], unit: str | None
    ) -> _Custom | None:
        label_keys = tuple(sorted(k for k in user if k != "function"))
        failed = self._custom_failed.get((name, kind, label_keys))
        if failed is not None:
            self._custom_rejected[failed].inc()
            return None
        if len(self._custom) >= self.custom_metrics_cap:
            self._custom_rejected["too_many_metrics"].inc()
            return None
        reason = "invalid"
        if not _names_invalid(name, kind, label_keys):
            bounds = buckets_for(name, unit, self.custom_buckets) if kind == "histogram" else ()
            c = _Custom(CUSTOM_PREFIX + name, kind, label_keys, unit, bounds)
            try:
                self._registry.register(c)
            except ValueError:
                # A name clash with another metric: counter "x" makes "x_total",
                # so gauge "x_total" clashes.
                reason = "kind_conflict"
            else:
                self._custom[name] = c
                return c
        if len(self._custom_failed) < self.custom_metrics_cap:
            self._custom_failed[(name, kind, label_keys)] = reason
        self._custom_rejected[reason].inc()
        return None

    # -- housekeeping ---------------------------------------------------------------

    def sweep(self, now: float) -> int:
        """Remove series idle for longer than the TTL; return how many label sets went."""
        cutoff = now - self.series_ttl_s
        core = self._core
        idle = [k for k, s in core.items() if s.last < cutoff]
        for key in idle:
            del core[key]
        removed = len(idle)
        lifecycle = self._lifecycle
        idle = [k for k, s in lifecycle.items() if s.last < cutoff]
        for key in idle:
            del lifecycle[key]
        removed += len(idle)
        for name, c in list(self._custom.items()):
            series = c.series
            idle = [k for k, s in series.items() if s.last < cutoff]
            for key in idle:
                del series[key]
            removed += len(idle)
            if not series:  # unregister, so the name is free again (even for another kind)
                self._registry.unregister(c)
                del self._custom[name]
        if removed:
            self.expired.inc(removed)
        return removed

    # -- exposition -----------------------------------------------------------------

    @contextlib.contextmanager
    def rendered_apart(self) -> Iterator[None]:
        """While active, on this thread, the aggregates' collectors yield nothing: the
        caller renders the rest of the registry, then adds :meth:`exposition`."""
        _MUTED.on = True
        try:
            yield
        finally:
            _MUTED.on = False

    def exposition(self, openmetrics: bool) -> str:
        """Every aggregate (core and custom) in the text or OpenMetrics format, without
        the OpenMetrics ``# EOF`` line: the same samples collect() gives the registry."""
        out = _text_core(self._core.values(), openmetrics)
        out += _text_lifecycle(self._lifecycle.values(), openmetrics)
        for c in list(self._custom.values()):
            out += c.text(openmetrics)
        return "".join(out)

    @property
    def core_series(self) -> int:
        """Label sets currently held for the core metrics."""
        return len(self._core)
