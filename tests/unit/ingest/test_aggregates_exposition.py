"""The aggregates' own exposition text says what prometheus_client says for them.

/metrics renders the aggregates apart (much faster than through metric
families); both parsers must read the same samples and exemplars from it as
from prometheus_client's rendering of the same registry.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_format
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.http import HttpServer
from tests.unit.ingest.test_aggregates import record


def fed() -> tuple[CollectorRegistry, Aggregates]:
    reg = CollectorRegistry()
    Counter("faaslens_other", "A metric of the worker itself", registry=reg).inc(3)
    agg = Aggregates(reg)
    for i in range(40):
        agg.observe(
            record(
                **{
                    "faas.name": ["checkout", 'we"ird\\name', "multi\nline"][i % 3],
                    "faas.execution": f"exec-{i}",
                    "trace.id": f"{i:032x}",
                    "event.duration": 1_000_000 * (i * 37 % 900 + 1),
                    "event.outcome": "failure" if i % 7 == 0 else "success",
                    "faas.coldstart": i % 5 == 0,
                    "faas.coldstart_duration": 300_000_000,
                    "faas.mem_usage": 90_000_000 + i,
                    "faas.billed_duration": 120,
                    "faas.cost.usd": 2.1e-7,
                    "faas.cost.gb_seconds": 0.0625,
                    "metrics": [
                        {"name": "orders", "kind": "counter", "value": 2, "labels": {"shop": "eu"}},
                        {"name": "queue_depth", "kind": "gauge", "value": 0.5 * i},
                        {"name": "payload", "kind": "histogram", "value": 0.3 * i},
                    ],
                }
            ),
            float(i),  # a second apart: every bucket's exemplar is refreshed
        )
    for i in range(10):  # started / unfinished invocations, escaped names too
        res = {"faas.name": ["checkout", 'we"ird\\name'][i % 2], "cloud.provider": "aws"}
        start = {"faas.execution": f"s-{i}", "@timestamp": 1}
        agg.observe_started(res, start, float(i))
        if i % 3 == 0:
            agg.observe_unfinished(res, start, float(i))
    return reg, agg


def read(families: Any) -> set[tuple[Any, ...]]:
    out = set()
    for fam in families:
        for s in fam.samples:
            ex = None
            if s.exemplar is not None:
                ts = s.exemplar.timestamp
                ts = None if ts is None else float(ts)
                ex = (frozenset(s.exemplar.labels.items()), s.exemplar.value, ts)
            out.add((fam.name, fam.type, s.name, frozenset(s.labels.items()), float(s.value), ex))
    return out


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_own_text_reads_as_prometheus_client_rendering(openmetrics: bool) -> None:
    reg, agg = fed()
    server = HttpServer("127.0.0.1", 0, reg, lambda: True, rendered_apart=agg)
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
    body, ctype = server.render(accept)
    reference = (openmetrics_format if openmetrics else text_format)(reg)
    parse = parse_openmetrics if openmetrics else parse_text
    got, want = read(parse(body.decode())), read(parse(reference.decode()))
    assert got == want
    assert any(x[5] is not None for x in got) == openmetrics  # exemplars only in OpenMetrics
    assert ("faaslens_other" if openmetrics else "faaslens_other_total") in body.decode()
    if openmetrics:
        assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1
        assert ctype.startswith("application/openmetrics-text")


def test_muting_is_per_thread_and_undone() -> None:
    reg, agg = fed()
    seen_elsewhere: list[set[str]] = []
    with agg.rendered_apart():
        names = {m.name for m in reg.collect()}
        assert not any(n.startswith("faas_") for n in names)
        other = threading.Thread(
            target=lambda: seen_elsewhere.append({m.name for m in reg.collect()})
        )
        other.start()
        other.join()
    assert "faas_invocations" in seen_elsewhere[0]
    names = {m.name for m in reg.collect()}
    assert "faas_invocations" in names and "faas_custom_orders" in names
