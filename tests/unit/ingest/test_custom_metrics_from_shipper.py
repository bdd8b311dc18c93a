"""Custom metrics pre-aggregated by the shipper come out of the worker as if each update
had been sent on its own; what the shipper dropped is counted per function."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.buckets import buckets_for
from faaslens.ingest.validate import Validator
from faaslens.protocol import HISTOGRAM_BUCKETS, UNIT_BUCKETS, histogram_buckets
from faaslens.shipper.metrics import Counter, Histogram
from tests.unit.shipper.kit import Receiver, make_shipper, receivers


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


@pytest.mark.parametrize("unit", [None, "", "widgets", *sorted(UNIT_BUCKETS), "MS", "Bytes"])
def test_shipper_and_worker_share_the_buckets(unit: str | None) -> None:
    """The worker's buckets for a unit are the protocol's, which the shipper uses."""
    assert buckets_for("x", unit, {}) == histogram_buckets(unit)
    if not unit or unit.lower() not in UNIT_BUCKETS:
        assert histogram_buckets(unit) == HISTOGRAM_BUCKETS


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_aggregated_updates_count_as_many_as_were_made(rx: Receiver, path: str) -> None:
    sh = make_shipper(rx, function_name="checkout", max_datagram=65_000)
    latency = Histogram("latency", shipper=sh)
    orders = Counter("orders", shipper=sh)
    values = [i / 37 for i in range(100)] + [0.1] * 7 + [2.5] * 3  # bucket edges too
    with sh.invocation():
        for v in values:
            latency.observe(v)
        orders.inc(100)
        for i in range(70):
            orders.inc(shard=str(i))  # 64 objects per record: some are dropped
    reg = CollectorRegistry()
    agg = Aggregates(reg)
    validator = Validator()
    for frame in rx.frames():
        result = (
            validator.validate(frame) if path == "fast" else validator.validate_reference(frame)
        )
        assert not result.rejected and not result.event_rejections
        agg.observe_many(result.invocations, 0.0)
    fn = {"function": "checkout"}
    sample = reg.get_sample_value
    assert sample("faas_custom_latency_count", fn) == len(values)
    assert sample("faas_custom_latency_sum", fn) == pytest.approx(sum(values))
    for bound in (0.1, 0.5, 2.5, 5.0):
        expected = sum(1 for v in values if v <= bound)
        assert sample("faas_custom_latency_bucket", {**fn, "le": str(bound)}) == expected
    assert sample("faas_custom_orders_total", fn) == 100
    dropped = sample("faaslens_custom_metrics_dropped_total", fn)
    assert dropped is not None and dropped > 0
    assert dropped == sh.snapshot()["dropped_metrics"]


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        ({"name": "c", "kind": "counter", "value": 1, "count": 2}, "bad_value"),
        ({"name": "h", "kind": "histogram", "value": 1, "count": 0}, "bad_value"),
        ({"name": "h", "kind": "histogram", "value": 1, "count": 1.5}, "wrong_type"),
        ({"name": "h", "kind": "histogram", "value": 1, "sum": "2"}, "wrong_type"),
    ],
)
def test_bad_aggregates_are_rejected_with_a_reason(metric: dict[str, object], reason: str) -> None:
    import orjson

    ev = {
        "t": "inv",
        "faas.execution": "x",
        "@timestamp": 1,
        "event.duration": 1,
        "event.outcome": "success",
        "faas.coldstart": False,
        "metrics": [metric],
    }
    frame = orjson.dumps({"v": 1, "src": "s", "seq": 1, "ev": [ev]})
    for result in (Validator().validate(frame), Validator().validate_reference(frame)):
        # The bad metric is dropped alone; the invocation is kept and says so.
        assert result.rejected is None and not result.event_rejections
        assert result.dropped == [f"metrics:{reason}"]
        assert orjson.loads(result.docs[0].source)["faaslens.dropped"] == [f"metrics:{reason}"]
