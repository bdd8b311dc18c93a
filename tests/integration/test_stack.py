"""The service fixtures work against the real Elasticsearch and Prometheus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from tests.support import (
    Prometheus,
    ServiceError,
    delete_es_prefix,
    es_request,
    http_json,
    poll_until,
)

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[2] / "prometheus" / "rules"


# ---------------------------------------------------------------- Elasticsearch


def test_es_is_healthy(es_url: str) -> None:
    health = es_request(es_url, "GET", "/_cluster/health")
    assert health["status"] in ("green", "yellow")
    assert health["number_of_nodes"] >= 1


def test_es_document_round_trip(es_url: str, es_prefix: str) -> None:
    index = f"{es_prefix}-invocations-2026.01.02"
    es_request(
        es_url,
        "PUT",
        f"/{index}",
        {
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "@timestamp": {
                        "type": "date",
                        "format": "strict_date_optional_time||epoch_millis",
                    },
                    "faas.execution": {"type": "keyword"},
                    "event.duration": {"type": "long"},
                },
            }
        },
    )
    doc = {"@timestamp": 1767312000123, "faas.execution": "inv-1", "event.duration": 1500000}
    es_request(es_url, "PUT", f"/{index}/_create/inv-1?refresh=true", doc)

    assert es_request(es_url, "GET", f"/{index}/_doc/inv-1")["_source"] == doc
    hits = es_request(
        es_url,
        "POST",
        f"/{es_prefix}-invocations-*/_search",
        {"query": {"range": {"@timestamp": {"gte": "2026-01-02T00:00:00Z"}}}},
    )["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["inv-1"]
    # A second create of the same id is refused: what the worker's retries rely on.
    status, _ = http_json("PUT", f"{es_url}/{index}/_create/inv-1", doc)
    assert status == 409


def test_prefix_cleanup_removes_only_that_prefix(es_url: str, es_prefix: str) -> None:
    other = es_prefix + "x"  # shares the first characters, must survive
    try:
        for prefix in (es_prefix, other):
            es_request(es_url, "PUT", f"/{prefix}-logs-2026.01.02")
            es_request(
                es_url,
                "PUT",
                f"/_component_template/{prefix}-mappings",
                {"template": {"mappings": {"properties": {"message": {"type": "text"}}}}},
            )
            es_request(
                es_url,
                "PUT",
                f"/_index_template/{prefix}-logs",
                {"index_patterns": [f"{prefix}-logs-*"], "composed_of": [f"{prefix}-mappings"]},
            )

        deleted = delete_es_prefix(es_url, es_prefix)

        assert sorted(deleted) == sorted(
            [
                f"{es_prefix}-logs-2026.01.02",
                f"_index_template/{es_prefix}-logs",
                f"_component_template/{es_prefix}-mappings",
            ]
        )
        assert http_json("GET", f"{es_url}/{es_prefix}-logs-2026.01.02")[0] == 404
        assert http_json("GET", f"{es_url}/_index_template/{es_prefix}-logs")[0] == 404
        assert http_json("GET", f"{es_url}/{other}-logs-2026.01.02")[0] == 200
        assert http_json("GET", f"{es_url}/_index_template/{other}-logs")[0] == 200
    finally:
        delete_es_prefix(es_url, other)


# ---------------------------------------------------------------- Prometheus


@pytest.fixture
def exporter() -> Iterator[tuple[CollectorRegistry, str]]:
    """A prometheus_client HTTP exporter on a free port with its own registry."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    target = f"127.0.0.1:{server.server_port}"
    yield registry, target
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_prometheus_scrapes_an_added_target(
    prometheus: Prometheus, exporter: tuple[CollectorRegistry, str]
) -> None:
    registry, target = exporter
    Counter("stackprobe_events", "events seen", ["outcome"], registry=registry).labels(
        "success"
    ).inc(7)

    prometheus.add_target(target)
    try:
        entry = prometheus.wait_for_target_up(target, timeout=30)
        assert entry["scrapePool"] == "faaslens"

        def sample() -> list[dict[str, Any]]:
            return prometheus.query(f'stackprobe_events_total{{instance="{target}"}}')

        result = poll_until(sample, timeout=30, what="sample stored")
        assert result[0]["metric"]["outcome"] == "success"
        assert float(result[0]["value"][1]) == 7.0
    finally:
        prometheus.remove_target(target)


def test_prometheus_stores_exemplars(
    prometheus: Prometheus, exporter: tuple[CollectorRegistry, str]
) -> None:
    registry, target = exporter
    started = time.time()
    Histogram("stackprobe_duration_seconds", "duration", registry=registry).observe(
        0.042, exemplar={"faas_execution": "inv-abc"}
    )

    prometheus.add_target(target)
    try:
        prometheus.wait_for_target_up(target, timeout=30)

        def exemplars() -> list[dict[str, Any]]:
            return prometheus.query_exemplars(
                f'stackprobe_duration_seconds_bucket{{instance="{target}"}}',
                started - 60,
                time.time() + 60,
            )

        found = poll_until(exemplars, timeout=30, what="exemplar stored")
        labels = [e["labels"] for series in found for e in series["exemplars"]]
        assert {"faas_execution": "inv-abc"} in labels
    finally:
        prometheus.remove_target(target)


def test_prometheus_query_errors_raise(prometheus: Prometheus) -> None:
    with pytest.raises(ServiceError, match="parse error"):
        prometheus.query("sum(")


def test_prometheus_loads_the_repository_rules(prometheus: Prometheus) -> None:
    expected = sorted(
        group["name"]
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", [])
    )
    assert sorted(group["name"] for group in prometheus.rules()) == expected
