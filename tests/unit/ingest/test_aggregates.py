"""Prometheus aggregates: values, labels, exemplars, custom metrics, cap + overflow, TTL."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.utils import floatToGoString

from faaslens.ingest.aggregates import CORE_LABELS, EXEMPLAR_EVERY_S, OVERFLOW, Aggregates

LABELS = {
    "function": "checkout",
    "version": "7",
    "environment": "prod",
    "outcome": "success",
    "coldstart": "false",
    "provider": "aws",
    "region": "eu-west-1",
    "trigger": "http",
}


_STARTS = itertools.count(1_764_028_800_000)


def record(**over: Any) -> dict[str, Any]:
    """An invocation record; each call is a new invocation (its own start time),
    since the aggregates count a repeated record only once."""
    rec: dict[str, Any] = {
        "faas.name": "checkout",
        "faas.version": "7",
        "service.environment": "prod",
        "cloud.provider": "aws",
        "cloud.region": "eu-west-1",
        "faas.trigger.type": "http",
        "faas.execution": "exec-1",
        "@timestamp": next(_STARTS),
        "event.duration": 250_000_000,
        "event.outcome": "success",
        "faas.coldstart": False,
    }
    rec.update(over)
    return rec


def openmetrics(reg: CollectorRegistry) -> bytes:
    out: bytes = generate_latest(reg)  # type: ignore[no-untyped-call]
    return out


def le(bound: float) -> str:
    out: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return out


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, {**LABELS, **labels} if labels is not None else None)


def test_core_metrics(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    agg.observe(
        record(
            **{
                "faas.billed_duration": 300,
                "faas.cost.usd": 0.5,
                "faas.cost.gb_seconds": 0.25,
                "faas.mem_usage": 100 * 2**20,
            }
        ),
        0.0,
    )
    agg.observe(
        record(
            **{
                "event.outcome": "failure",
                "faas.coldstart": True,
                "faas.coldstart_duration": 400_000_000,
            }
        ),
        0.0,
    )
    assert value(reg, "faas_invocations_total") == 1
    failed = {"outcome": "failure", "coldstart": "true"}
    assert value(reg, "faas_invocations_total", **failed) == 1
    assert value(reg, "faas_errors_total", **failed) == 1
    assert value(reg, "faas_errors_total") is None  # no error series for successes
    assert value(reg, "faas_coldstarts_total", **failed) == 1
    assert value(reg, "faas_init_duration_seconds_sum", **failed) == pytest.approx(0.4)
    assert value(reg, "faas_invoke_duration_seconds_count") == 1
    assert value(reg, "faas_invoke_duration_seconds_sum") == pytest.approx(0.25)
    assert value(reg, "faas_invoke_duration_seconds_bucket", le="0.25") == 1
    assert value(reg, "faas_invoke_duration_seconds_bucket", le="0.1") == 0
    assert value(reg, "faas_billed_duration_seconds_total") == pytest.approx(0.3)
    assert value(reg, "faas_cost_usd_total") == pytest.approx(0.5)
    assert value(reg, "faas_billed_gigabyte_seconds_total") == pytest.approx(0.25)
    assert value(reg, "faas_mem_usage_bytes_bucket", le=le(128 * 2**20)) == 1
    assert value(reg, "faas_mem_usage_bytes_count") == 1


def test_missing_optional_labels_are_empty(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    rec = record()
    for key in ("faas.version", "service.environment", "cloud.region", "faas.trigger.type"):
        del rec[key]
    agg.observe(rec, 0.0)
    labels = dict.fromkeys(CORE_LABELS, "")
    labels.update(function="checkout", outcome="success", coldstart="false", provider="aws")
    assert reg.get_sample_value("faas_invocations_total", labels) == 1


def test_no_created_series(reg: CollectorRegistry) -> None:
    Aggregates(reg).observe(record(), 0.0)
    assert b"_created" not in openmetrics(reg)


def test_exemplar_in_openmetrics(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    trace = "0af7651916cd43dd8448eb211c80319c"
    agg.observe(record(**{"faas.execution": "8f3c-abc", "trace.id": trace}), 0.0)
    text = openmetrics(reg).decode()
    line = next(
        x
        for x in text.splitlines()
        if x.startswith("faas_invoke_duration_seconds_bucket") and 'le="0.25"' in x
    )
    assert f'# {{invocation_id="8f3c-abc",trace_id="{trace}"}} 0.25' in line


@pytest.mark.parametrize(("length", "has_trace"), [(75, True), (76, False), (115, False)])
def test_exemplar_fits_128_characters(reg: CollectorRegistry, length: int, has_trace: bool) -> None:
    agg = Aggregates(reg)
    exec_id = "e" * length
    agg.observe(record(**{"faas.execution": exec_id, "trace.id": "a" * 32}), 0.0)
    text = openmetrics(reg).decode()
    assert f'invocation_id="{exec_id}"' in text
    assert ('trace_id="' in text) is has_trace


def test_exemplar_dropped_when_id_alone_too_long(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    agg.observe(record(**{"faas.execution": "e" * 128}), 0.0)
    assert "invocation_id" not in openmetrics(reg).decode()
    assert value(reg, "faas_invocations_total") == 1


def test_series_cap_and_overflow(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg, series_cap=3)
    for i in range(10):
        agg.observe(record(**{"faas.name": f"fn{i}", "event.outcome": "failure"}), 0.0)
    for i in range(3):
        assert value(reg, "faas_invocations_total", function=f"fn{i}", outcome="failure") == 1
    assert value(reg, "faas_invocations_total", function="fn3", outcome="failure") is None
    overflow = dict.fromkeys(CORE_LABELS, OVERFLOW)
    assert reg.get_sample_value("faas_invocations_total", overflow) == 7
    assert reg.get_sample_value("faas_errors_total", overflow) == 7
    assert (
        reg.get_sample_value("faaslens_series_overflow_total", {"metric": "faas_invocations_total"})
        == 7
    )
    # totals stay right
    total = sum(s.value for m in reg.collect() if m.name == "faas_invocations" for s in m.samples)
    assert total == 10


def test_ttl_expiry_removes_series(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg, series_ttl_s=60)
    agg.observe(record(**{"faas.name": "old", "faas.mem_usage": 1}), 0.0)
    agg.observe(
        record(
            **{"faas.name": "new", "metrics": [{"name": "orders", "kind": "counter", "value": 1}]}
        ),
        50.0,
    )
    assert agg.sweep(59.0) == 0
    assert agg.sweep(61.0) == 1
    assert value(reg, "faas_invocations_total", function="old") is None
    assert value(reg, "faas_mem_usage_bytes_count", function="old") is None
    assert value(reg, "faas_invocations_total", function="new") == 1
    assert reg.get_sample_value("faaslens_series_expired_total") == 1
    # a series that comes back starts again from zero
    agg.observe(record(**{"faas.name": "old"}), 62.0)
    assert value(reg, "faas_invocations_total", function="old") == 1
    assert agg.sweep(200.0) == 3  # old, new and the custom series
    assert reg.get_sample_value("faas_custom_orders_total", {"function": "new"}) is None


def test_custom_metrics(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    agg.observe(
        record(
            metrics=[
                {"name": "orders", "kind": "counter", "value": 2, "labels": {"shop": "eu"}},
                {"name": "queue_len", "kind": "gauge", "value": 7},
                {"name": "basket", "kind": "histogram", "value": 0.3, "unit": "eur"},
            ]
        ),
        0.0,
    )
    agg.observe(
        record(
            metrics=[
                {"name": "orders", "kind": "counter", "value": 3, "labels": {"shop": "eu"}},
                {"name": "queue_len", "kind": "gauge", "value": 4},
            ]
        ),
        0.0,
    )
    fn = {"function": "checkout"}
    assert reg.get_sample_value("faas_custom_orders_total", {**fn, "shop": "eu"}) == 5
    assert reg.get_sample_value("faas_custom_queue_len", fn) == 4
    assert reg.get_sample_value("faas_custom_basket_count", fn) == 1
    assert reg.get_sample_value("faas_custom_basket_bucket", {**fn, "le": "0.5"}) == 1


def test_custom_metric_conflicts_rejected_and_counted(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    agg.observe(record(metrics=[{"name": "x", "kind": "counter", "value": 1}]), 0.0)
    agg.observe(record(metrics=[{"name": "x", "kind": "gauge", "value": 1}]), 0.0)
    agg.observe(record(metrics=[{"name": "x_total", "kind": "gauge", "value": 1}]), 0.0)
    agg.observe(
        record(metrics=[{"name": "x", "kind": "counter", "value": 1, "labels": {"extra": "1"}}]),
        0.0,
    )
    agg.observe(
        record(metrics=[{"name": "h", "kind": "histogram", "value": 1, "labels": {"le": "1"}}]), 0.0
    )
    rejected = "faaslens_custom_metrics_rejected_total"
    assert reg.get_sample_value(rejected, {"reason": "kind_conflict"}) == 2
    assert reg.get_sample_value(rejected, {"reason": "label_conflict"}) == 1
    assert reg.get_sample_value(rejected, {"reason": "invalid"}) == 1
    assert reg.get_sample_value("faas_custom_x_total", {"function": "checkout"}) == 1
    assert value(reg, "faas_invocations_total") == 5  # the invocations still count


def test_custom_metric_function_label_comes_from_the_worker(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    agg.observe(
        record(
            metrics=[
                {
                    "name": "c",
                    "kind": "counter",
                    "value": 1,
                    "labels": {"function": "spoof", "a": "1"},
                }
            ]
        ),
        0.0,
    )
    assert reg.get_sample_value("faas_custom_c_total", {"function": "checkout", "a": "1"}) == 1


def test_custom_metric_names_capped(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg, custom_metrics_cap=2)
    agg.observe(
        record(metrics=[{"name": f"m{i}", "kind": "gauge", "value": i} for i in range(4)]), 0.0
    )
    assert (
        reg.get_sample_value(
            "faaslens_custom_metrics_rejected_total", {"reason": "too_many_metrics"}
        )
        == 2
    )
    assert reg.get_sample_value("faas_custom_m1", {"function": "checkout"}) == 1


def test_custom_series_cap(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg, series_cap=2)
    for i in range(5):
        agg.observe(
            record(
                metrics=[{"name": "c", "kind": "counter", "value": 1, "labels": {"user": f"u{i}"}}]
            ),
            0.0,
        )
    assert (
        reg.get_sample_value("faas_custom_c_total", {"function": OVERFLOW, "user": OVERFLOW}) == 3
    )
    assert reg.get_sample_value("faaslens_series_overflow_total", {"metric": "faas_custom_c"}) == 3


def exemplars(reg: CollectorRegistry) -> dict[str, str]:
    """le -> invocation_id of the duration bucket exemplars of the LABELS series."""
    out = {}
    for m in reg.collect():
        for s in m.samples:
            if s.name == "faas_invoke_duration_seconds_bucket" and s.exemplar is not None:
                out[s.labels["le"]] = s.exemplar.labels["invocation_id"]
    return out


def test_exemplar_refreshed_once_per_interval_per_bucket(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    slow = 2_000_000_000  # 2 s: another bucket than the default 0.25 s
    agg.observe(record(**{"faas.execution": "a"}), 10.0)
    agg.observe(record(**{"faas.execution": "b"}), 10.5)  # same bucket, too soon
    agg.observe(record(**{"faas.execution": "c", "event.duration": slow}), 10.5)
    assert exemplars(reg) == {"0.25": "a", "2.5": "c"}
    agg.observe(record(**{"faas.execution": "d"}), 10.0 + EXEMPLAR_EVERY_S)
    assert exemplars(reg) == {"0.25": "d", "2.5": "c"}
    # an id too long for an exemplar keeps the previous one
    agg.observe(record(**{"faas.execution": "e" * 128}), 20.0)
    assert exemplars(reg) == {"0.25": "d", "2.5": "c"}


def test_optional_values_of_zero_still_make_a_series(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    agg.observe(record(**{"faas.billed_duration": 0, "faas.cost.usd": 0.0}), 0.0)
    assert value(reg, "faas_billed_duration_seconds_total") == 0
    assert value(reg, "faas_cost_usd_total") == 0
    assert value(reg, "faas_billed_gigabyte_seconds_total") is None
    assert value(reg, "faas_init_duration_seconds_count") is None
    assert value(reg, "faas_coldstarts_total") is None


def test_core_names_are_taken_on_the_registry(reg: CollectorRegistry) -> None:
    Aggregates(reg)
    with pytest.raises(ValueError, match="Duplicated"):
        Histogram("faas_invoke_duration_seconds", "again", registry=reg)
    with pytest.raises(ValueError, match="Duplicated"):
        Gauge("faas_invocations_total", "clashes with the counter's sample", registry=reg)


def test_custom_metric_names_are_taken_on_the_registry(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    Counter("faas_custom_jobs", "registered by someone else", registry=reg)
    agg.observe(record(metrics=[{"name": "jobs", "kind": "gauge", "value": 1}]), 0.0)
    rejected = "faaslens_custom_metrics_rejected_total"
    assert reg.get_sample_value(rejected, {"reason": "kind_conflict"}) == 1
    agg.observe(record(metrics=[{"name": "depth", "kind": "gauge", "value": 1}]), 0.0)
    with pytest.raises(ValueError, match="Duplicated"):
        Gauge("faas_custom_depth", "registered after the custom one", registry=reg)


def test_reserved_custom_label_names_rejected(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    agg.observe(
        record(metrics=[{"name": "g", "kind": "gauge", "value": 1, "labels": {"__x": "1"}}]), 0.0
    )
    agg.observe(
        record(metrics=[{"name": "g", "kind": "gauge", "value": 1, "labels": {"__x": "2"}}]), 0.0
    )
    assert (
        reg.get_sample_value("faaslens_custom_metrics_rejected_total", {"reason": "invalid"}) == 2
    )
    assert b"faas_custom_g" not in openmetrics(reg)


def test_swept_custom_metric_frees_its_name(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg, series_ttl_s=10)
    agg.observe(record(metrics=[{"name": "x", "kind": "counter", "value": 1}]), 0.0)
    agg.sweep(100.0)
    agg.observe(record(metrics=[{"name": "x", "kind": "histogram", "value": 0.3}]), 100.0)
    fn = {"function": "checkout"}
    assert reg.get_sample_value("faas_custom_x_total", fn) is None
    assert reg.get_sample_value("faas_custom_x_bucket", {**fn, "le": "0.5"}) == 1
    assert reg.get_sample_value("faas_custom_x_sum", fn) == pytest.approx(0.3)


# -- custom histogram buckets follow the unit ------------------------------------------


def bucket_counts(reg: CollectorRegistry, name: str) -> dict[float, float]:
    """Non-cumulative count per upper bound of one custom histogram series."""
    cumulative = {
        float(s.labels["le"]): s.value
        for m in reg.collect()
        for s in m.samples
        if s.name == f"faas_custom_{name}_bucket"
    }
    out, prev = {}, 0.0
    for bound in sorted(cumulative):
        out[bound] = cumulative[bound] - prev
        prev = cumulative[bound]
    return out


@pytest.mark.parametrize(
    ("unit", "values"),
    [
        ("bytes", [100, 700, 2048, 20_000, 5_000_000]),
        ("By", [64, 65, 300_000]),
        ("ms", [3, 40, 1200, 59_000]),
        ("seconds", [0.002, 0.3, 42.0]),
        ("percent", [3, 50, 99.5]),
        (None, [1, 30, 700, 12_000, 0.05]),
        ("widgets", [2, 200, 20_000]),
    ],
)
def test_custom_histogram_spreads_values_of_its_unit(unit: str | None, values: list[float]) -> None:
    """Values of a metric's usual range land in distinct finite buckets, not all in +Inf."""
    reg = CollectorRegistry()
    agg = Aggregates(reg)
    for v in values:
        m: dict[str, Any] = {"name": "h", "kind": "histogram", "value": v}
        if unit is not None:
            m["unit"] = unit
        agg.observe(record(metrics=[m]), 0.0)
    counts = bucket_counts(reg, "h")
    assert counts[float("inf")] == 0
    assert sum(1 for c in counts.values() if c) == len(values)  # one bucket each


def test_custom_histogram_buckets_configured_per_name() -> None:
    reg = CollectorRegistry()
    agg = Aggregates(reg, custom_buckets={"payload": (1000.0, 10_000.0)})
    for v in (10, 2048, 50_000):
        agg.observe(
            record(metrics=[{"name": "payload", "kind": "histogram", "value": v, "unit": "By"}]),
            0.0,
        )
    assert bucket_counts(reg, "payload") == {1000.0: 1, 10_000.0: 1, float("inf"): 1}


def test_custom_metric_unit_must_stay_the_same(reg: CollectorRegistry) -> None:
    agg = Aggregates(reg)
    for unit in ("ms", "s", "ms"):
        m = {"name": "lat", "kind": "histogram", "value": 5, "unit": unit}
        agg.observe(record(metrics=[m]), 0.0)
    assert reg.get_sample_value("faas_custom_lat_count", {"function": "checkout"}) == 2
    assert (
        reg.get_sample_value("faaslens_custom_metrics_rejected_total", {"reason": "unit_conflict"})
        == 1
    )
def test_started_and_unfinished_per_function_with_the_event_winning() -> None:
    reg = CollectorRegistry()
    agg = Aggregates(reg, series_cap=2)
    res = {"faas.name": "app", "faas.version": "3", "cloud.provider": "azure"}
    agg.observe_started(res, {"faas.execution": "a"}, 1.0)
    agg.observe_started(res, {"faas.execution": "b", "faas.name": "app/fn"}, 1.0)
    agg.observe_unfinished(res, {"faas.execution": "b", "faas.name": "app/fn"}, 2.0)
    base = {"version": "3", "environment": "", "provider": "azure", "region": ""}
    started = "faas_invocations_started_total"
    unfinished = "faas_invocations_unfinished_total"
    assert reg.get_sample_value(started, {"function": "app", **base}) == 1
    assert reg.get_sample_value(unfinished, {"function": "app", **base}) == 0  # a zero to divide
    assert reg.get_sample_value(started, {"function": "app/fn", **base}) == 1
    assert reg.get_sample_value(unfinished, {"function": "app/fn", **base}) == 1
    agg.observe_started({"faas.name": "third"}, {"faas.execution": "c"}, 3.0)  # past the cap
    overflow = dict.fromkeys(("function", "version", "environment", "provider", "region"), OVERFLOW)
    assert reg.get_sample_value(started, overflow) == 1
    assert agg.sweep(1e9) >= 3  # idle series expire like the others
    assert reg.get_sample_value(started, {"function": "app", **base}) is None
