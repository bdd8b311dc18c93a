"""The whole worker with the real Elasticsearch sink and a real Prometheus.

Frames go in over real UDP and TCP sockets; assertions read Elasticsearch
(counts, ids, fields), ``/metrics``, and Prometheus's query API after it
scraped the worker. The last test runs ``faaslens ingest`` as a process and
stops it with SIGTERM: everything sent before must be in Elasticsearch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from faaslens.ingest.runner import Worker
from tests.support import (
    Prometheus,
    apoll_until,
    es_request,
    http_json,
    poll_until,
    worker_test_config,
)

pytestmark = pytest.mark.integration

TS = 1_764_028_800_000  # 2025-11-25T00:00:00Z
REPO = Path(__file__).resolve().parent.parent.parent


def invocation(fn: str, i: int, *, failed: bool = False, logs: int = 2) -> list[dict[str, Any]]:
    ex = f"{fn}-{i:05d}"
    trace = f"{i + 1:032x}"
    inv: dict[str, Any] = {
        "t": "inv",
        "faas.execution": ex,
        "@timestamp": TS + i * 1000,
        "event.duration": 40_000_000 + i * 1_000_000,
        "faas.coldstart": i == 0,
        "event.outcome": "failure" if failed else "success",
        "faas.trigger.type": "http",
        "faas.mem_usage": 90_000_000,
        "faas.billed_duration": 41 + i,
        "faas.cost.usd": 0.000001,
        "faas.cost.gb_seconds": 0.02,
        "trace.id": trace,
        "span.id": trace[:16],
        "labels": {"tenant": "t1"},
        "metrics": [{"name": "orders", "kind": "counter", "value": 1, "labels": {"shop": "eu"}}],
    }
    if failed:
        inv |= {
            "error.type": "app.Declined",
            "error.message": "card declined",
            "error.grouping_key": "a1b2",
        }
    out = [inv]
    for k in range(logs):
        out.append(
            {
                "t": "log",
                "@timestamp": TS + i * 1000 + k,
                "event.sequence": k,
                "log.level": "info",
                "message": f"step {k}",
                "faas.execution": ex,
                "trace.id": trace,
                "labels": {"step": k},
            }
        )
    return out


def frame(src: str, seq: int, events: list[dict[str, Any]], fn: str = "checkout") -> bytes:
    res = {
        "service.name": "shop",
        "service.environment": "test",
        "faas.name": fn,
        "faas.version": "3",
        "cloud.provider": "aws",
        "cloud.region": "eu-west-1",
    }
    return orjson.dumps({"v": 1, "src": src, "seq": seq, "res": res, "ev": events})


def count(es_url: str, prefix: str, kind: str = "*", query: dict[str, Any] | None = None) -> int:
    es_request(es_url, "POST", f"/{prefix}-{kind}-*/_refresh?allow_no_indices=true")
    body = {"query": query} if query else None
    status, res = http_json(
        "POST", f"{es_url}/{prefix}-{kind}-*/_count?allow_no_indices=true", body
    )
    if status == 503:
        return -1  # shard of a just-created index not started yet; callers poll
    assert status == 200, res
    return int(res["count"])


def get_doc(es_url: str, index: str, doc_id: str) -> dict[str, Any]:
    res: dict[str, Any] = es_request(es_url, "GET", f"/{index}/_doc/{doc_id}")
    return res


@pytest.fixture
async def worker(es_url: str, es_prefix: str, tmp_path: Path) -> AsyncIterator[Worker]:
    # The frames are dated TS, whatever today is.
    w = Worker(worker_test_config(es_url, es_prefix, tmp_path, timestamp_max_age_s=0))
    async with w:
        yield w


async def _val(value: Any) -> Any:
    return value


async def test_udp_and_tcp_into_elasticsearch(worker: Worker, es_url: str, es_prefix: str) -> None:
    assert worker.udp_address is not None and worker.tcp_address is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(40):
            s.sendto(
                frame("u1", i + 1, invocation("checkout", i, failed=i % 10 == 3)),
                worker.udp_address,
            )
    _, writer = await asyncio.open_connection(*worker.tcp_address)
    writer.write(
        b"".join(
            frame("t1", i + 1, invocation("billing", i), fn="billing") + b"\n" for i in range(25)
        )
    )
    await writer.drain()
    total = 65 * 3 + 4  # inv + 2 logs each, plus 4 error docs
    await apoll_until(
        lambda: _val(count(es_url, es_prefix) >= total), timeout=60, what="docs in ES"
    )
    assert count(es_url, es_prefix) == total
    assert count(es_url, es_prefix, "invocations") == 65
    assert count(es_url, es_prefix, "logs") == 130
    assert count(es_url, es_prefix, "errors") == 4
    day = "2025.11.25"
    inv = get_doc(es_url, f"{es_prefix}-invocations-{day}", "checkout-00003")["_source"]
    assert inv["faas.name"] == "checkout" and inv["event.outcome"] == "failure"
    assert inv["event.end"] == TS + 3000 + 43 and inv["event.dataset"] == "faas.invocation"
    assert "metrics" not in inv and "t" not in inv
    log = get_doc(es_url, f"{es_prefix}-logs-{day}", "billing-00024-1")["_source"]
    assert log["message"] == "step 1" and log["faas.name"] == "billing"
    err = get_doc(es_url, f"{es_prefix}-errors-{day}", "checkout-00013")["_source"]
    assert err["error.type"] == "app.Declined" and err["event.dataset"] == "faas.error"
    # aggregates and self-metrics
    reg = worker.registry
    assert reg.get_sample_value("faaslens_events_accepted_total", {"type": "inv"}) == 65
    labels = {
        "function": "checkout",
        "version": "3",
        "environment": "test",
        "outcome": "failure",
        "coldstart": "false",
        "provider": "aws",
        "region": "eu-west-1",
        "trigger": "http",
    }
    assert reg.get_sample_value("faas_errors_total", labels) == 4
    assert (
        reg.get_sample_value("faas_custom_orders_total", {"function": "billing", "shop": "eu"})
        == 25
    )
    assert worker.ready()
    writer.close()


async def test_resent_frames_are_not_indexed_twice(
    worker: Worker, es_url: str, es_prefix: str
) -> None:
    assert worker.udp_address is not None
    frames = [frame("r1", i + 1, invocation("dup", i)) for i in range(10)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for f in frames + frames:  # a retrying shipper
            s.sendto(f, worker.udp_address)
    await apoll_until(
        lambda: _val(
            worker.registry.get_sample_value("faaslens_events_accepted_total", {"type": "inv"})
            == 20
        ),
        timeout=30,
    )
    await worker.stop()  # flushes everything to ES
    assert count(es_url, es_prefix) == 30


async def test_prometheus_scrapes_aggregates_and_exemplars(
    worker: Worker, prometheus: Prometheus
) -> None:
    assert worker.udp_address is not None and worker.http_address is not None
    fn = f"prom{os.getpid()}x{id(worker) % 100000}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(12):
            s.sendto(frame("p1", i + 1, invocation(fn, i, failed=i < 2), fn=fn), worker.udp_address)
    await apoll_until(
        lambda: _val(
            worker.registry.get_sample_value("faaslens_events_accepted_total", {"type": "inv"})
            == 12
        ),
        timeout=30,
    )
    target = f"{worker.http_address[0]}:{worker.http_address[1]}"
    prometheus.add_target(target)
    try:
        await asyncio.to_thread(prometheus.wait_for_target_up, target, 60)

        def queried() -> list[dict[str, Any]] | None:
            res = prometheus.query(f'sum(faas_invocations_total{{function="{fn}"}})')
            return res if res and float(res[0]["value"][1]) == 12 else None

        await asyncio.to_thread(poll_until, queried, 60, 0.2, "faas_invocations_total")
        errors = await asyncio.to_thread(
            prometheus.query, f'sum(faas_errors_total{{function="{fn}"}})'
        )
        assert float(errors[0]["value"][1]) == 2
        up = await asyncio.to_thread(
            prometheus.query, f'faaslens_tcp_connections{{instance="{target}"}}'
        )
        assert up and float(up[0]["value"][1]) == 0

        def exemplars() -> list[dict[str, Any]] | None:
            import time

            now = time.time()
            res = prometheus.query_exemplars(
                f'faas_invoke_duration_seconds_bucket{{function="{fn}"}}', now - 600, now + 60
            )
            return res or None

        found = await asyncio.to_thread(poll_until, exemplars, 60, 0.2, "exemplars")
        ids = {e["labels"]["invocation_id"] for series in found for e in series["exemplars"]}
        assert ids and all(i.startswith(f"{fn}-") for i in ids)
    finally:
        prometheus.remove_target(target)


def _read_addresses(proc: subprocess.Popen[bytes], lines: list[dict[str, Any]]) -> None:
    assert proc.stderr is not None
    for raw in proc.stderr:
        try:
            lines.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            lines.append({"raw": raw.decode(errors="replace")})


def test_sigterm_drains_everything_into_elasticsearch(
    es_url: str, es_prefix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "FAASLENS_UDP_LISTEN": "127.0.0.1:0",
        "FAASLENS_TCP_LISTEN": "127.0.0.1:0",
        "FAASLENS_HTTP_LISTEN": "127.0.0.1:0",
        "FAASLENS_ES_URL": es_url,
        "FAASLENS_ES_INDEX_PREFIX": es_prefix,
        "FAASLENS_SPOOL_DIR": str(tmp_path / "spool"),
        "FAASLENS_DEAD_LETTER_PATH": str(tmp_path / "dl.ndjson"),
        # long waits and big batches: the documents are still held when SIGTERM comes
        "FAASLENS_BATCH_MAX_WAIT_S": "60",
        "FAASLENS_BATCH_MAX_DOCS": "100000",
        "FAASLENS_TIMESTAMP_MAX_AGE_S": "0",  # the frames are dated TS, whatever today is
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "faaslens.cli", "ingest"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        cwd=REPO,
    )
    lines: list[dict[str, Any]] = []
    reader = threading.Thread(target=_read_addresses, args=(proc, lines), daemon=True)
    reader.start()
    try:
        started = poll_until(
            lambda: next((x for x in lines if x.get("event") == "worker started"), None),
            timeout=60,
            what="worker started",
        )
        udp = (started["udp"][0], started["udp"][1])
        tcp = (started["tcp"][0], started["tcp"][1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(200):
                s.sendto(frame("sig", i + 1, invocation("sig", i)), udp)
        with socket.create_connection(tcp) as c:
            c.sendall(
                b"".join(
                    frame("sigt", i + 1, invocation("sigt", i), fn="sigt") + b"\n"
                    for i in range(100)
                )
            )
        http = started["http"]

        def received() -> tuple[float, float]:
            status, text = http_json("GET", f"http://{http[0]}:{http[1]}/metrics")
            assert status == 200
            values = dict(
                line.rsplit(" ", 1)
                for line in text.splitlines()
                if line.startswith(
                    ("faaslens_datagrams_received_total ", "faaslens_tcp_frames_received_total ")
                )
            )
            return (
                float(values["faaslens_datagrams_received_total"]),
                float(values["faaslens_tcp_frames_received_total"]),
            )

        poll_until(lambda: received() == (200.0, 100.0), timeout=30, what=f"received {received()}")
        assert count(es_url, es_prefix) == 0  # held in the batcher: nothing flushed yet
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    assert any(x.get("event") == "worker stopped" for x in lines), lines[-5:]
    assert count(es_url, es_prefix) == 300 * 3
    assert count(es_url, es_prefix, "invocations") == 300
