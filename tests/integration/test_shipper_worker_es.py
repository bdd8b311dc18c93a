"""The real shipper into the real worker into the real Elasticsearch.

An invocation made with ``@instrument`` is looked up in Elasticsearch by its
id, with its log lines in order, its error document and its cost; then the
same over signed TCP frames, a record that needs several datagrams, and a
run of the demo fleet whose every record must be indexed without rejection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from faaslens.demo import run_demo
from faaslens.ingest.runner import Worker
from faaslens.shipper.config import ShipperConfig
from faaslens.shipper.core import Shipper
from faaslens.shipper.logs import Logger
from faaslens.shipper.metrics import Counter
from tests.integration.contexts import LambdaContext
from tests.support import apoll_until, es_request, http_json, worker_test_config

pytestmark = pytest.mark.integration

AWS_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "checkout",
    "AWS_LAMBDA_FUNCTION_VERSION": "12",
    "AWS_REGION": "eu-west-1",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
}


@pytest.fixture
async def worker(es_url: str, es_prefix: str, tmp_path: Path) -> AsyncIterator[Worker]:
    w = Worker(worker_test_config(es_url, es_prefix, tmp_path), registry=CollectorRegistry())
    async with w:
        yield w


def search(es_url: str, index: str, query: dict[str, Any], size: int = 100) -> list[Any]:
    es_request(es_url, "POST", f"/{index}/_refresh?allow_no_indices=true")
    status, res = http_json(
        "POST",
        f"{es_url}/{index}/_search?allow_no_indices=true",
        {"query": query, "size": size, "sort": [{"@timestamp": "asc"}]},
    )
    if status == 503:
        return []  # an index created a moment ago: its shard is not started yet; poll again
    assert status == 200, res
    return [hit["_source"] | {"_id": hit["_id"]} for hit in res["hits"]["hits"]]


def count(es_url: str, index: str) -> int:
    es_request(es_url, "POST", f"/{index}/_refresh?allow_no_indices=true")
    status, res = http_json("POST", f"{es_url}/{index}/_count?allow_no_indices=true")
    if status == 503:
        return -1  # shard of a just-created index not started yet; callers poll
    assert status == 200, res
    return int(res["count"])


def lines_of(es_url: str, prefix: str, exec_id: str, expected: int) -> list[Any] | None:
    """The log documents of an invocation once all ``expected`` are searchable."""
    found = search(es_url, f"{prefix}-logs-*", {"term": {"faas.execution": exec_id}})
    return found if len(found) == expected else None


def rejections(registry: CollectorRegistry) -> float:
    """Frames and events the worker rejected, and frames it counted as lost."""
    total = 0.0
    for family in registry.collect():
        if family.name in (
            "faaslens_frames_rejected",
            "faaslens_events_rejected",
            "faaslens_frames_lost",
        ):
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


async def _wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    async def probe() -> Any:
        return await asyncio.to_thread(check)

    return await apoll_until(probe, timeout=timeout, what=what)


async def test_invocation_found_by_id_with_its_lines_in_order(
    worker: Worker, es_url: str, es_prefix: str
) -> None:
    host, port = worker.udp_address or ("", 0)
    sh = Shipper(
        ShipperConfig(endpoint=f"udp://{host}:{port}", service="shop", environment="test"),
        environ=AWS_ENV,
    )
    log = Logger("checkout", shipper=sh)
    orders = Counter("orders", shipper=sh)

    @sh.instrument
    def handler(event: dict[str, Any], context: LambdaContext) -> None:
        for step in range(8):
            log.info("step done", step=step, password="hunter2")
        orders.inc(3, shop="eu")
        raise RuntimeError("payment provider unavailable")

    exec_id = "3f2c9d4e-1b7a-4c8e-9f00-000000000001"
    with pytest.raises(RuntimeError):
        handler({"httpMethod": "POST", "headers": {}}, LambdaContext(exec_id))
    assert sh.snapshot()["send_errors"] == 0

    invocations = f"{es_prefix}-invocations-*"
    inv_docs = await _wait_for(
        lambda: search(es_url, invocations, {"ids": {"values": [exec_id]}}), "invocation"
    )
    inv = inv_docs[0]
    assert inv["faas.name"] == "checkout" and inv["faas.version"] == "12"
    assert inv["service.environment"] == "test"
    assert inv["event.outcome"] == "failure" and inv["faas.coldstart"] is True
    assert inv["error.type"] == "RuntimeError"
    assert inv["faas.trigger.type"] == "http"
    assert inv["faas.cost.price_id"].startswith("aws-") and inv["faas.cost.usd"] > 0
    assert inv["faas.billed_duration"] >= 1
    logs = await _wait_for(lambda: lines_of(es_url, es_prefix, exec_id, 8), "8 log lines")
    logs.sort(key=lambda d: d["event.sequence"])
    assert [d["event.sequence"] for d in logs] == list(range(8))
    assert [d["_id"] for d in logs] == [f"{exec_id}-{i}" for i in range(8)]
    assert all(d["message"] == "step done" for d in logs)
    assert all(d["labels"]["password"] == "[REDACTED]" for d in logs)
    errors = await _wait_for(
        lambda: search(es_url, f"{es_prefix}-errors-*", {"ids": {"values": [exec_id]}}), "error"
    )
    assert errors[0]["error.grouping_key"] == inv["error.grouping_key"]
    assert "payment provider unavailable" in errors[0]["error.stack_trace"]
    sample = worker.registry.get_sample_value(
        "faas_custom_orders_total", {"function": "checkout", "shop": "eu"}
    )
    assert sample == 3
    assert rejections(worker.registry) == 0


async def test_signed_tcp_and_multi_frame_records(
    es_url: str, es_prefix: str, tmp_path: Path
) -> None:
    cfg = worker_test_config(
        es_url, es_prefix, tmp_path, hmac_keys={"k1": "s3cret"}, require_signature=True
    )
    async with Worker(cfg, registry=CollectorRegistry()) as w:
        tcp_host, tcp_port = w.tcp_address or ("", 0)
        udp_host, udp_port = w.udp_address or ("", 0)
        signed = {"hmac_key": "s3cret", "hmac_key_id": "k1", "max_datagram": 1400}
        via_tcp = Shipper(
            ShipperConfig(endpoint=f"tcp://{tcp_host}:{tcp_port}", **signed), environ=AWS_ENV
        )
        via_udp = Shipper(
            ShipperConfig(endpoint=f"udp://{udp_host}:{udp_port}", **signed), environ=AWS_ENV
        )
        for sh, exec_id in ((via_tcp, "tcp-0001"), (via_udp, "udp-0001")):
            log = Logger("batch", shipper=sh)
            with sh.invocation(execution_id=exec_id, trigger="timer"):
                for i in range(30):  # ~30 x 200 bytes: several 1,400-byte frames
                    log.info("record processed", record=i, status="ok")
        assert via_udp._packer.oversize == 0
        assert via_udp.snapshot()["frames_sent"] > 3
        for exec_id in ("tcp-0001", "udp-0001"):
            found = await _wait_for(
                lambda e=exec_id: lines_of(es_url, es_prefix, e, 30), f"30 lines of {exec_id}"
            )
            assert sorted(d["labels"]["record"] for d in found) == list(range(30))
        # the records went in the first frames, but may sit in another bulk request
        await _wait_for(lambda: count(es_url, f"{es_prefix}-invocations-*") == 2, "2 records")
        assert rejections(w.registry) == 0
        via_tcp.close()


async def test_demo_traffic_is_indexed_whole(worker: Worker, es_url: str, es_prefix: str) -> None:
    host, port = worker.udp_address or ("", 0)
    stats = await asyncio.to_thread(
        run_demo, f"udp://{host}:{port}", rate=200, duration=2.0, seed=7, progress=False
    )
    assert stats.invocations > 100 and stats.send_errors == 0
    assert stats.errors > 0 and stats.cold_starts > 0 and stats.crashes > 0
    await _wait_for(  # the crashed ones as unfinished, after their timeout plus grace
        lambda: count(es_url, f"{es_prefix}-invocations-*") == stats.invocations,
        "every demo invocation",
    )
    await _wait_for(
        lambda: count(es_url, f"{es_prefix}-errors-*") >= stats.errors, "the error documents"
    )
    assert rejections(worker.registry) == 0
    status, res = http_json(
        "POST",
        f"{es_url}/{es_prefix}-invocations-*/_search",
        {
            "size": 0,
            "aggs": {
                "providers": {"terms": {"field": "cloud.provider"}},
                "envs": {"terms": {"field": "service.environment"}},
            },
        },
    )
    assert status == 200, res
    providers = {b["key"] for b in res["aggregations"]["providers"]["buckets"]}
    assert providers == {"aws", "azure", "gcp"}
    envs = {b["key"] for b in res["aggregations"]["envs"]["buckets"]}
    assert envs == {"prod", "staging"}


async def test_redelivered_id_keeps_each_attempt(
    worker: Worker, es_url: str, es_prefix: str
) -> None:
    """A platform retry reuses the id: attempt 1 fails, attempt 2 succeeds. Each is a
    record of its own with its own lines; the lookup by id shows both."""
    from faaslens.query.client import QueryClient

    host, port = worker.udp_address or ("", 0)
    sh = Shipper(ShipperConfig(endpoint=f"udp://{host}:{port}"), environ=AWS_ENV)
    log = Logger("retry", shipper=sh)
    calls: list[int] = []

    @sh.instrument
    def handler(event: dict[str, Any], context: LambdaContext) -> str:
        calls.append(1)
        log.info("attempt starts", n=len(calls))
        if len(calls) == 1:
            raise ConnectionError("upstream reset")
        return "ok"

    exec_id = "7d1e0c4b-2f6a-4b9e-8c11-000000000005"
    with pytest.raises(ConnectionError):
        handler({}, LambdaContext(exec_id))
    assert handler({}, LambdaContext(exec_id)) == "ok"

    invocations = f"{es_prefix}-invocations-*"
    by_id = {"term": {"faas.execution": exec_id}}

    def both() -> list[Any] | None:
        found = search(es_url, invocations, by_id)
        return found if len(found) == 2 else None

    docs = await _wait_for(both, "two attempts")
    docs.sort(key=lambda d: d.get("faas.attempt", 1))
    assert [(d.get("faas.attempt", 1), d["event.outcome"]) for d in docs] == [
        (1, "failure"),
        (2, "success"),
    ]
    assert [d["_id"] for d in docs] == [exec_id, f"{exec_id}~2"]
    lines = await _wait_for(lambda: lines_of(es_url, es_prefix, exec_id, 2), "both lines")
    assert sorted((d.get("faas.attempt", 1), d["labels"]["n"]) for d in lines) == [(1, 1), (2, 2)]
    with QueryClient(es_url, es_prefix, timeout_s=10) as client:
        view = client.invocation(exec_id)
    assert [a.get("faas.attempt", 1) for a in view.attempts] == [1, 2]
    assert view.record is not None and view.record["event.outcome"] == "success"
    assert [line["labels"]["n"] for line in view.logs] == [1, 2]
    # Nothing was taken for a duplicate, and the aggregates count both attempts.
    assert worker.registry.get_sample_value("faaslens_docs_duplicate_total") in (None, 0.0)
    by_outcome: dict[str, float] = {}
    for family in worker.registry.collect():
        for sample in family.samples:
            if sample.name == "faas_invocations_total":
                outcome = sample.labels["outcome"]
                by_outcome[outcome] = by_outcome.get(outcome, 0) + sample.value
    assert by_outcome == {"failure": 1, "success": 1}
    assert rejections(worker.registry) == 0


async def test_tcp_record_after_a_worker_restart_is_delivered(
    es_url: str, es_prefix: str, tmp_path: Path
) -> None:
    """The worker restarts between two invocations: the second record goes to the new
    worker before the handler returns, and nothing is counted as sent that was not."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        tcp_port = probe.getsockname()[1]

    def config(run: str) -> Any:
        return worker_test_config(
            es_url, es_prefix, tmp_path / run, tcp_listen=f"127.0.0.1:{tcp_port}"
        )

    sh = Shipper(ShipperConfig(endpoint=f"tcp://127.0.0.1:{tcp_port}"), environ=AWS_ENV)

    @sh.instrument
    def handler(event: dict[str, Any], context: LambdaContext) -> str:
        return "ok"

    async with Worker(config("first"), registry=CollectorRegistry()):
        await asyncio.to_thread(handler, {}, LambdaContext("tcp-before-restart"))
        await _wait_for(
            lambda: count(es_url, f"{es_prefix}-invocations-*") == 1, "the first record"
        )
    async with Worker(config("second"), registry=CollectorRegistry()) as second:
        await asyncio.to_thread(handler, {}, LambdaContext("tcp-after-restart"))
        stats = sh.snapshot()
        # A start event and a record per invocation, all written.
        assert stats["send_errors"] == 0 and stats["frames_sent"] == 4
        found = await _wait_for(
            lambda: search(
                es_url, f"{es_prefix}-invocations-*", {"ids": {"values": ["tcp-after-restart"]}}
            ),
            "the record sent after the restart",
        )
        assert found[0]["faas.execution"] == "tcp-after-restart"
        assert rejections(second.registry) == 0
    sh.close()
