"""The aggregates' collectors: samples as prometheus_client's own metrics would
report them, and scrapes on another thread while the loop thread observes."""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from faaslens.ingest.aggregates import (
    CORE_LABELS,
    DURATION_BUCKETS,
    INIT_BUCKETS,
    MEMORY_BUCKETS,
    Aggregates,
)
from faaslens.ingest.buckets import buckets_for
from tests.unit.ingest.test_aggregates import LABELS, record

Samples = set[tuple[str, frozenset[tuple[str, str]], float]]


def samples(reg: CollectorRegistry, family: str) -> Samples:
    """The samples of one family (1 == 1.0, so ints and floats compare equal)."""
    return {
        (s.name, frozenset(s.labels.items()), s.value)
        for m in reg.collect()
        if m.name == family
        for s in m.samples
        if not s.name.endswith("_created")
    }


# On the bounds, just either side of them, zero and past the last bound.
DURATIONS_NS = sorted(
    {
        0,
        1,
        *(int(b * 1e9) + d for b in DURATION_BUCKETS for d in (-1, 0, 1)),
        2_000_000_000_000,
    }
)


@pytest.mark.parametrize(
    ("family", "field", "scale", "values", "bounds"),
    [
        ("faas_invoke_duration_seconds", "event.duration", 1e9, DURATIONS_NS, DURATION_BUCKETS),
        (
            "faas_init_duration_seconds",
            "faas.coldstart_duration",
            1e9,
            [int(b * 1e9) + d for b in INIT_BUCKETS for d in (-1, 0, 1)] + [10**12],
            INIT_BUCKETS,
        ),
        (
            "faas_mem_usage_bytes",
            "faas.mem_usage",
            1,
            [0, *(int(b) + d for b in MEMORY_BUCKETS for d in (-1, 0, 1)), 2**40],
            MEMORY_BUCKETS,
        ),
    ],
)
def test_core_histograms_match_prometheus_client(
    family: str, field: str, scale: float, values: list[int], bounds: tuple[float, ...]
) -> None:
    reg = CollectorRegistry()
    agg = Aggregates(reg)
    ref_reg = CollectorRegistry()
    ref = Histogram(family, "reference", CORE_LABELS, buckets=bounds, registry=ref_reg)
    for fn in ("a", "b"):
        for i, v in enumerate(values):
            if fn == "b" and i % 3:
                continue  # another label tuple, with other counts
            agg.observe(record(**{"faas.name": fn, "faas.coldstart": True, field: v}), float(i))
            ref.labels(**{**LABELS, "function": fn, "coldstart": "true"}).observe(v / scale)
    got = samples(reg, family)
    assert got == samples(ref_reg, family)
    assert len(got) == 2 * (len(bounds) + 3)


@pytest.mark.parametrize("unit", [None, "s", "bytes", "ms", "percent", "eur"])
def test_custom_histogram_matches_prometheus_client(unit: str | None) -> None:
    reg = CollectorRegistry()
    agg = Aggregates(reg)
    ref_reg = CollectorRegistry()
    bounds = buckets_for("basket", unit, {})
    ref = Histogram(
        "faas_custom_basket", "reference", ["function", "shop"], registry=ref_reg, buckets=bounds
    )
    # On, between and past the bounds of every unit's table.
    values = [0, 0.005, 0.0051, 0.3, 1, 7.5, 10, 11, 64, 100, 2048, 1e9, *bounds]
    for i, v in enumerate(values):
        shop = "eu" if i % 2 else "us"
        metric: dict[str, Any] = {"name": "basket", "kind": "histogram", "value": v}
        metric["labels"] = {"shop": shop}
        if unit is not None:
            metric["unit"] = unit
        agg.observe(record(metrics=[metric]), 0.0)
        ref.labels("checkout", shop).observe(v)
    assert samples(reg, "faas_custom_basket") == samples(ref_reg, "faas_custom_basket")


def check_histograms(reg: CollectorRegistry) -> int:
    """Assert every histogram series reads consistently; return how many there were."""
    series = 0
    for m in reg.collect():
        if m.type != "histogram":
            continue
        buckets: dict[frozenset[tuple[str, str]], list[float]] = defaultdict(list)
        counts = {}
        for s in m.samples:
            if s.name.endswith("_bucket"):
                labels = frozenset((k, v) for k, v in s.labels.items() if k != "le")
                buckets[labels].append(s.value)
            elif s.name.endswith("_count"):
                counts[frozenset(s.labels.items())] = s.value
        assert buckets.keys() == counts.keys()
        for labels, cumulative in buckets.items():
            assert cumulative == sorted(cumulative)
            assert counts[labels] == cumulative[-1]
        series += len(buckets)
    return series


def test_scrapes_during_observe_never_fail() -> None:
    reg = CollectorRegistry()
    agg = Aggregates(reg, series_cap=60, series_ttl_s=0.2)
    stop = threading.Event()
    errors: list[BaseException] = []
    scrapes = [0]

    def scrape() -> None:
        try:
            while not stop.is_set():
                # both formats, as Prometheus and a curl would ask
                if scrapes[0] % 2:
                    text_format(reg)
                else:
                    openmetrics(reg)  # type: ignore[no-untyped-call]
                check_histograms(reg)
                scrapes[0] += 1
        except BaseException as exc:
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the GIL over often, mid-collect and mid-observe
    thread = threading.Thread(target=scrape)
    thread.start()
    i = 0
    try:
        deadline = time.monotonic() + 30
        while (i < 3_000 or scrapes[0] < 6) and not errors and time.monotonic() < deadline:
            now = i / 1000
            metrics = [
                {"name": "c", "kind": "counter", "value": 1, "labels": {"k": str(i % 7)}},
                {"name": f"g{i % 3}", "kind": "gauge", "value": i},
                {"name": "h", "kind": "histogram", "value": i % 13},
            ]
            rec = record(
                **{
                    "faas.name": f"fn{i % 90}",  # past the cap: the overflow series too
                    "faas.coldstart": i % 4 == 0,
                    "faas.coldstart_duration": i * 1000,
                    "faas.mem_usage": i * 4096,
                    "faas.billed_duration": i % 100,
                    "event.duration": i * 100_000,
                    "faas.execution": f"x{i}",
                    "metrics": metrics,
                }
            )
            agg.observe(rec, now)
            if i % 150 == 0:
                agg.sweep(now)  # series come and go, custom metrics unregister
            i += 1
    finally:
        stop.set()
        thread.join(30)
        sys.setswitchinterval(switch)
    assert not thread.is_alive()
    assert not errors, errors
    assert scrapes[0] >= 6 and i >= 3_000
    assert check_histograms(reg) > 0
