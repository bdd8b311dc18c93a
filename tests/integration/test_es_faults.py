"""Faults that single documents cause, and overload, against a real Elasticsearch:
a request refused whole is split until the guilty documents stand alone; a document
an index refuses for good is retried a bounded number of times, then dead-lettered,
and never holds up the spool behind it; a sink slower than the input overflows to
the spool and loses nothing; whatever passes validation is indexed."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import AsyncElasticsearch
from prometheus_client import CollectorRegistry

from faaslens.ingest.config import IngestConfig
from faaslens.ingest.events import Doc
from faaslens.ingest.runner import Worker
from faaslens.ingest.selfmetrics import totals
from faaslens.ingest.sink_es.client import make_client
from faaslens.ingest.sink_es.deadletter import iter_lines
from faaslens.ingest.sink_es.sink import ElasticsearchSink
from faaslens.ingest.validate import Validator
from tests.support import apoll_until, es_request, worker_test_config

pytestmark = pytest.mark.integration

NOW_MS = time.time_ns() // 1_000_000
TODAY = time.strftime("%Y.%m.%d", time.gmtime(NOW_MS / 1000))


def log_doc(doc_id: str, day: str = TODAY, **fields: Any) -> Doc:
    source = {
        "@timestamp": NOW_MS,
        "event.sequence": 0,
        "log.level": "info",
        "message": f"line of {doc_id}",
        "event.dataset": "faas.log",
        "event.kind": "event",
        **fields,
    }
    return Doc("logs", doc_id, day, orjson.dumps(source))


def count(es_url: str, prefix: str, day: str = "*") -> int:
    es_request(es_url, "POST", f"/{prefix}-*/_refresh")
    body = es_request(es_url, "GET", f"/{prefix}-logs-{day}*/_count")  # * : none yet is 0
    return int(body["count"])


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    return reg.get_sample_value(name, labels) or 0.0


def sink_config(es_url: str, prefix: str, tmp_path: Path, **over: Any) -> IngestConfig:
    config: IngestConfig = worker_test_config(
        es_url, prefix, tmp_path, retry_base_s=0.02, retry_max_s=0.1, **over
    )
    return config


@pytest.fixture
async def sinks() -> AsyncIterator[list[ElasticsearchSink]]:
    made: list[ElasticsearchSink] = []
    yield made
    for sink in made:
        await sink.close()


async def new_sink(
    sinks: list[ElasticsearchSink],
    config: IngestConfig,
    retry_window_s: float = 0.5,
    spool_segment_bytes: int | None = None,
) -> tuple[CollectorRegistry, ElasticsearchSink]:
    """A started sink on a registry of its own (closed by the ``sinks`` fixture)."""
    reg = CollectorRegistry()
    sink = ElasticsearchSink(
        config, reg, retry_window_s=retry_window_s, spool_segment_bytes=spool_segment_bytes
    )
    await sink.start()
    sinks.append(sink)
    return reg, sink


async def test_request_refused_whole_is_split_to_the_guilty_document(
    es_url: str, es_prefix: str, tmp_path: Path, sinks: list[ElasticsearchSink]
) -> None:
    config = sink_config(es_url, es_prefix, tmp_path)
    reg, sink = await new_sink(sinks, config)
    good = [log_doc(f"ok-{i}") for i in range(200)]
    # An _id Elasticsearch cannot take (over 512 bytes) makes it refuse the whole
    # request with 400 action_request_validation_exception.
    guilty = log_doc("x" * 600)
    await sink.write([*good[:77], guilty, *good[77:]])
    assert count(es_url, es_prefix) == 200
    dead = list(iter_lines(config.dead_letter_path))
    assert [d["id"] for d in dead] == [guilty.doc_id]
    assert dead[0]["status"] == 400 and dead[0]["reason"] == "validation"
    assert value(reg, "faaslens_docs_failed_total", reason="validation") == 1


async def test_ids_of_four_byte_characters_are_indexed(
    es_url: str, es_prefix: str, tmp_path: Path, sinks: list[ElasticsearchSink]
) -> None:
    config = sink_config(es_url, es_prefix, tmp_path)
    reg, sink = await new_sink(sinks, config)
    exec_id = "\U0001f600" * 128  # 512 bytes: the log lines' ids would be 514+
    events: list[dict[str, Any]] = [
        {
            "t": "inv",
            "faas.execution": exec_id,
            "@timestamp": NOW_MS,
            "event.duration": 1,
            "event.outcome": "success",
            "faas.coldstart": False,
        }
    ]
    events += [
        {
            "t": "log",
            "faas.execution": exec_id,
            "@timestamp": NOW_MS,
            "event.sequence": i,
            "log.level": "info",
            "message": "m",
        }
        for i in range(200)
    ]
    frame = orjson.dumps({"v": 1, "src": "s", "seq": 1, "ev": events})
    result = Validator().validate(frame)
    assert result.rejected is None and len(result.docs) == 201
    await sink.write(result.docs)
    assert count(es_url, es_prefix) == 200
    assert value(reg, "faaslens_dead_letter_total") == 0


async def test_document_refused_for_good_is_dead_lettered_and_holds_nothing_up(
    es_url: str, es_prefix: str, tmp_path: Path, sinks: list[ElasticsearchSink]
) -> None:
    config = sink_config(es_url, es_prefix, tmp_path, es_doc_max_attempts=3, es_doc_deadline_s=1.0)
    reg, sink = await new_sink(sinks, config, retry_window_s=0.2, spool_segment_bytes=1)
    blocked_day = "2020.01.01"  # an index that stays write-blocked: 403 for its documents
    es_request(
        es_url,
        "PUT",
        f"/{es_prefix}-logs-{blocked_day}",
        {"settings": {"index.blocks.write": True}},
    )
    poison = log_doc("poison", blocked_day)
    first = [log_doc(f"a-{i}") for i in range(50)]
    later = [log_doc(f"b-{i}") for i in range(50)]
    # Spooled as by an outage: the poison in the oldest segment, later documents after.
    await sink.spill([poison, *first])
    await sink.spill(later)
    assert sink.spool.segment_count >= 2

    async def later_indexed() -> bool:
        return count(es_url, es_prefix, TODAY) == 100

    await apoll_until(later_indexed, timeout=60, what="documents behind the refused one")

    async def dead_lettered() -> bool:
        return value(reg, "faaslens_docs_failed_total", reason="retries_exhausted") == 1

    await apoll_until(dead_lettered, timeout=60, what="the refused document dead-lettered")
    (dead,) = list(iter_lines(config.dead_letter_path))
    assert dead["id"] == "poison" and dead["status"] == 403
    assert dead["reason"] == "retries_exhausted"
    assert value(reg, "faaslens_docs_requeued_total") >= 1

    async def spool_empty() -> bool:
        return sink.spool.is_empty()

    await apoll_until(spool_empty, timeout=30, what="spool drained")
    assert count(es_url, es_prefix, TODAY) == 100


def gated_factory(gate: asyncio.Event) -> Callable[[IngestConfig], AsyncElasticsearch]:
    """Real clients whose bulk requests wait for ``gate``: an Elasticsearch slower
    than the input (nothing is indexed until the test opens the gate)."""

    class GatedClient(AsyncElasticsearch):
        async def perform_request(self, method: str, path: str, **kwargs: Any) -> Any:
            if path.endswith("/_bulk"):
                await gate.wait()
            return await super().perform_request(method, path, **kwargs)

    return lambda config: make_client(config, GatedClient)


async def test_overload_overflows_to_the_spool_and_loses_nothing(
    es_url: str, es_prefix: str, tmp_path: Path
) -> None:
    reg = CollectorRegistry()
    gate = asyncio.Event()
    config = worker_test_config(es_url, es_prefix, tmp_path, batch_max_docs=30, tcp_listen="")
    sink = ElasticsearchSink(config, reg, gated_factory(gate), retry_window_s=60)
    frames = 600  # 1,800 documents: 60 batches against room for 6 in memory
    async with Worker(config, registry=reg, sink=sink) as w:
        assert w.udp_address is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(frames):
                events = [
                    {
                        "t": "log",
                        "@timestamp": NOW_MS,
                        "event.sequence": k,
                        "log.level": "info",
                        "message": "m",
                        "faas.execution": f"ovl-{i}",
                    }
                    for k in range(3)
                ]
                tx.sendto(
                    orjson.dumps({"v": 1, "src": "o", "seq": i + 1, "ev": events}), w.udp_address
                )

        async def all_in() -> bool:
            return totals(reg)["docs_built"] == frames * 3

        await apoll_until(all_in, timeout=60, what="every frame validated")
        assert value(reg, "faaslens_batches_spilled_total") > 0
        gate.set()  # Elasticsearch catches up

        async def indexed() -> bool:
            return count(es_url, es_prefix) == frames * 3 and sink.spool.is_empty()

        await apoll_until(indexed, timeout=120, what="spool drained into Elasticsearch")
    assert value(reg, "faaslens_frames_dropped_total", reason="queue_full") == 0
    assert value(reg, "faaslens_docs_failed_total", reason="spool_full") == 0
    assert value(reg, "faaslens_datagrams_received_total") == frames


@pytest.mark.parametrize(
    ("labels", "dropped"),
    [
        ({"k" * 256: "v", "\U0001f600" * 256: "v", "a.b.c": 1, "": "empty key"}, []),
        ({"deep": {"a": {"b": [1, "x", None, True, 1.5]}}}, []),
        ({"long value": "v" * 40_000, "n": 2**63 - 1, "f": -1e300}, []),
        ({"nul\x00key": "v", "ok": "kept"}, ["labels:bad_value"]),
        ({"k" * 40_000: "v", "ok": "kept"}, ["labels:too_large"]),
        ({"a": {"b\x00": 1}, "ok": "kept"}, ["labels:bad_value"]),
    ],
    ids=["keys", "nesting", "values", "nul key", "long key", "nested nul key"],
)
async def test_what_passes_validation_is_indexed(
    *,
    es_url: str,
    es_prefix: str,
    tmp_path: Path,
    sinks: list[ElasticsearchSink],
    labels: dict[str, Any],
    dropped: list[str],
) -> None:
    config = sink_config(es_url, es_prefix, tmp_path)
    reg, sink = await new_sink(sinks, config)
    event = {
        "t": "log",
        "@timestamp": NOW_MS,
        "event.sequence": 0,
        "log.level": "error",
        "message": "m",
        "error.type": "E",
        "labels": labels,
    }
    result = Validator().validate(orjson.dumps({"v": 1, "src": "s", "seq": 1, "ev": [event]}))
    assert result.rejected is None and not result.event_rejections
    assert result.dropped == dropped
    await sink.write(result.docs)
    assert value(reg, "faaslens_dead_letter_total") == 0
    assert count(es_url, es_prefix) == 1
    got = es_request(es_url, "GET", f"/{es_prefix}-logs-{TODAY}/_doc/s-0")["_source"]
    assert got.get("faaslens.dropped", []) == dropped
