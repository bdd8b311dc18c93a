"""The Elasticsearch sink against a real Elasticsearch.

Documents come from real frames through the real validator, so these tests
also prove that what the pipeline builds fits the strict templates. Faults
are injected by wrapping the real client (connection refused, 429 items).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from elastic_transport import (
    ApiResponse,
    ApiResponseMeta,
    ConnectionError,
    HttpHeaders,
    NodeConfig,
    ObjectApiResponse,
)
from elasticsearch import ApiError, AsyncElasticsearch
from prometheus_client import CollectorRegistry

from faaslens.commandline import EXIT_ELASTICSEARCH
from faaslens.ingest.config import REPO_ROOT, ConfigError, IngestConfig
from faaslens.ingest.events import Doc
from faaslens.ingest.setup import main as setup_main
from faaslens.ingest.sink_es.bulk import classify
from faaslens.ingest.sink_es.client import make_client
from faaslens.ingest.sink_es.deadletter import iter_lines
from faaslens.ingest.sink_es.sink import ElasticsearchSink
from faaslens.ingest.validate import Validator
from tests.support import apoll_until, es_request, http_json

pytestmark = pytest.mark.integration

REPO_TEMPLATES = REPO_ROOT / "es-templates"


# ---------------------------------------------------------------- realistic documents


def frame(src: str, seq: int, events: list[dict[str, Any]]) -> bytes:
    """A protocol v1 frame as a shipper sends it."""
    res = {
        "service.name": "shop",
        "service.environment": "test",
        "faas.name": "checkout",
        "faas.version": "12",
        "faas.max_memory": 536_870_912,
        "cloud.provider": "aws",
        "cloud.region": "eu-west-1",
        "host.architecture": "arm64",
    }
    return orjson.dumps({"v": 1, "src": src, "seq": seq, "res": res, "ev": events})


def invocation_events(exec_id: str, ts: int, logs: int, failed: bool) -> list[dict[str, Any]]:
    """One invocation record and its log lines (an error on failures)."""
    trace = uuid.uuid4().hex
    inv: dict[str, Any] = {
        "t": "inv",
        "faas.execution": exec_id,
        "@timestamp": ts,
        "event.duration": 123_456_789,
        "event.outcome": "failure" if failed else "success",
        "faas.coldstart": False,
        "faas.trigger.type": "http",
        "faas.mem_usage": 98_765_432,
        "faas.billed_duration": 124,
        "faas.cost.usd": 0.0000021,
        "faas.cost.gb_seconds": 0.062,
        "faas.cost.price_id": "aws-arm64-2025-01",
        "trace.id": trace,
        "span.id": trace[:16],
        "labels": {"tenant": "t-42", "route": "/cart"},
    }
    if failed:
        inv |= {
            "error.type": "builtins.ValueError",
            "error.message": "cart is empty",
            "error.stack_trace": 'File "handler.py", line 10, in handler\n  raise ValueError',
            "error.grouping_key": "3f2a9c",
        }
    events = [inv]
    for seq in range(logs):
        level = "error" if failed and seq == logs - 1 else "info"
        line: dict[str, Any] = {
            "t": "log",
            "@timestamp": ts + seq,
            "event.sequence": seq,
            "log.level": level,
            "log.logger": "shop.checkout",
            "message": f"step {seq} of the checkout for cart {exec_id[:8]}",
            "faas.execution": exec_id,
            "trace.id": trace,
            "labels": {"step": seq, "cart": {"items": 3}},
        }
        if level == "error":
            line |= {"error.type": "builtins.ValueError", "error.message": "cart is empty"}
        events.append(line)
    return events


def make_docs(
    invocations: int, logs: int = 2, failed_every: int = 5, ts: int | None = None
) -> list[Doc]:
    """Documents of ``invocations`` invocations, through the real validator."""
    validator = Validator()
    start = ts if ts is not None else int(time.time() * 1000)
    docs: list[Doc] = []
    src = uuid.uuid4().hex[:12]
    for i in range(invocations):
        events = invocation_events(uuid.uuid4().hex, start + i, logs, i % failed_every == 0)
        result = validator.validate(frame(src, i + 1, events))
        assert result.rejected is None and not result.event_rejections, result
        docs += result.docs
    return docs


# ---------------------------------------------------------------- fault injection


DocKey = tuple[str, str]  # (kind, id): an invocation and its error share the id


def key_of(doc: Doc) -> DocKey:
    return (doc.kind, doc.doc_id)


class Faults:
    """Decides, per request, to fail it before it leaves or to reject some bulk items."""

    def __init__(self) -> None:
        self.down = False
        self.refused = 0
        self.reject_once: set[DocKey] = set()  # answered 429 (not sent) the first time
        self.held: set[DocKey] = set()  # answered 429 on every attempt until released
        self.held_answers = 0  # how many 429s the held documents got
        self.bulk_status: list[int] = []  # whole-request answers for the next bulk requests


def faulty_client_factory(faults: Faults) -> Callable[[IngestConfig], AsyncElasticsearch]:
    """A factory of real clients wrapped to obey ``faults``."""

    class FaultyClient(AsyncElasticsearch):
        async def perform_request(self, method: str, path: str, **kwargs: Any) -> ApiResponse[Any]:
            if faults.down:
                faults.refused += 1
                raise ConnectionError("injected: connection refused")
            body = kwargs.get("body")
            if path == "/_bulk" and faults.bulk_status:
                status = faults.bulk_status.pop(0)
                meta = ApiResponseMeta(
                    status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "127.0.0.1", 9200)
                )
                raise ApiError("injected", meta, {"error": {"type": "injected"}})
            rejecting = faults.reject_once or faults.held
            if path == "/_bulk" and rejecting and isinstance(body, bytes):
                return await self._bulk_rejecting(method, path, body, kwargs)
            return await super().perform_request(method, path, **kwargs)

        async def _bulk_rejecting(
            self, method: str, path: str, body: bytes, kwargs: dict[str, Any]
        ) -> ApiResponse[Any]:
            lines = body.split(b"\n")[:-1]
            pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]
            rejected = []
            kept = []
            for pos, (action, source) in enumerate(pairs):
                head = orjson.loads(action)["create"]
                # Index names are <prefix>-<kind>-<yyyy.mm.dd>.
                key = (head["_index"].rsplit("-", 2)[1], head["_id"])
                if key in faults.reject_once:
                    faults.reject_once.discard(key)
                    rejected.append(pos)
                elif key in faults.held:
                    faults.held_answers += 1
                    rejected.append(pos)
                else:
                    kept.append(action + b"\n" + source + b"\n")
            if not kept:  # nothing left to send: answer for the server
                items: list[Any] = []
                meta = ApiResponseMeta(
                    200, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "127.0.0.1", 9200)
                )
            else:
                kwargs["body"] = b"".join(kept)
                response = await super().perform_request(method, path, **kwargs)
                items, meta = list(response.body["items"]), response.meta
            for pos in rejected:
                items.insert(
                    pos,
                    {
                        "create": {
                            "status": 429,
                            "error": {
                                "type": "es_rejected_execution_exception",
                                "reason": "injected: write queue full",
                            },
                        }
                    },
                )
            return ObjectApiResponse(body={"errors": True, "items": items}, meta=meta)

    return lambda config: make_client(config, FaultyClient)


# ---------------------------------------------------------------- fixtures and helpers

SinkFactory = Callable[..., Awaitable[ElasticsearchSink]]


@pytest.fixture
async def make_sink(es_url: str, es_prefix: str, tmp_path: Path) -> AsyncIterator[SinkFactory]:
    """Started sinks on the test's prefix (closed after), fast retries."""
    sinks: list[ElasticsearchSink] = []

    async def factory(
        client_factory: Callable[[IngestConfig], AsyncElasticsearch] | None = None,
        retry_window_s: float = 1.0,
        **overrides: Any,
    ) -> ElasticsearchSink:
        settings: dict[str, Any] = {
            "es_url": es_url,
            "es_index_prefix": es_prefix,
            "spool_dir": str(tmp_path / "spool"),
            "dead_letter_path": str(tmp_path / "dead-letter.ndjson"),
            "retry_base_s": 0.02,
            "retry_max_s": 0.2,
        }
        settings.update(overrides)
        sink = ElasticsearchSink(
            IngestConfig(**settings),
            CollectorRegistry(),
            client_factory,
            retry_window_s=retry_window_s,
        )
        await sink.start()
        sinks.append(sink)
        return sink

    yield factory
    for sink in sinks:
        await sink.close()


def metric(sink: ElasticsearchSink, name: str, **labels: str) -> float:
    value = sink.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def refresh_and_count(es_url: str, prefix: str, kind: str = "*") -> int:
    es_request(es_url, "POST", f"/{prefix}-{kind}-*/_refresh?allow_no_indices=true")
    body = es_request(es_url, "GET", f"/{prefix}-{kind}-*/_count?allow_no_indices=true")
    count: int = body["count"]
    return count


def ids_in(es_url: str, prefix: str, kind: str) -> list[str]:
    es_request(es_url, "POST", f"/{prefix}-{kind}-*/_refresh")
    body = es_request(
        es_url, "POST", f"/{prefix}-{kind}-*/_search", {"size": 10_000, "_source": False}
    )
    return sorted(hit["_id"] for hit in body["hits"]["hits"])


def kinds(docs: list[Doc]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for doc in docs:
        out[doc.kind] = out.get(doc.kind, 0) + 1
    return out


# ---------------------------------------------------------------- tests


async def test_documents_indexed_once_with_ids_and_fields(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    sink = await make_sink()
    assert sink.ready
    docs = make_docs(40, logs=3)
    await sink.write(docs)
    per_kind = kinds(docs)
    assert refresh_and_count(es_url, es_prefix) == len(docs)
    for kind, n in per_kind.items():
        assert metric(sink, "faaslens_docs_indexed_total", index_kind=kind) == n
    assert ids_in(es_url, es_prefix, "logs") == sorted(d.doc_id for d in docs if d.kind == "logs")

    # Fields are where the templates put them: dotted keys became object paths.
    inv = next(d for d in docs if d.kind == "invocations")
    source = orjson.loads(inv.source)
    found = es_request(
        es_url,
        "POST",
        f"/{es_prefix}-invocations-*/_search",
        {
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"faas.execution": inv.doc_id}},
                        {"term": {"faas.name": "checkout"}},
                        {"range": {"event.duration": {"gte": 123_456_789}}},
                        {"term": {"faas.coldstart": False}},
                        {"term": {"labels.tenant": "t-42"}},
                    ]
                }
            }
        },
    )
    assert [h["_id"] for h in found["hits"]["hits"]] == [inv.doc_id]
    assert found["hits"]["hits"][0]["_source"] == source
    errors = es_request(
        es_url,
        "POST",
        f"/{es_prefix}-errors-*/_search",
        {"size": 0, "aggs": {"by": {"terms": {"field": "error.type"}}}},
    )
    buckets = errors["aggregations"]["by"]["buckets"]
    assert buckets == [{"key": "builtins.ValueError", "doc_count": per_kind["errors"]}]

    # The same batch again (a retry upstream): all 409, nothing indexed twice.
    await sink.write(docs)
    assert metric(sink, "faaslens_docs_duplicate_total") == len(docs)
    assert refresh_and_count(es_url, es_prefix) == len(docs)
    assert metric(sink, "faaslens_docs_failed_total", reason="mapping") == 0
    assert metric(sink, "faaslens_bulk_duration_seconds_count") == 2
    assert metric(sink, "faaslens_es_up") == 1


async def test_mapping_conflicts_go_to_the_dead_letter_file_without_retry(
    make_sink: SinkFactory, es_url: str, es_prefix: str, tmp_path: Path
) -> None:
    sink = await make_sink(retry_window_s=30.0)
    good = make_docs(5, logs=1)
    day = good[0].day
    wrong_type = Doc(
        "invocations",
        "bad-duration",
        day,
        orjson.dumps({"@timestamp": 1764072000000, "event.duration": "slow"}),
    )
    unknown_field = Doc(
        "logs", "bad-field-0", day, orjson.dumps({"@timestamp": 1, "message": "x", "x.y": 1})
    )
    wrong_shape = Doc(
        "logs", "bad-shape-0", day, orjson.dumps({"@timestamp": 1, "faas": "not an object"})
    )
    started = time.monotonic()
    await sink.write([*good[:3], wrong_type, unknown_field, *good[3:], wrong_shape])
    assert time.monotonic() - started < 10  # refused for good: no retry window spent

    assert refresh_and_count(es_url, es_prefix) == len(good)
    entries = {e["id"]: e for e in iter_lines(tmp_path / "dead-letter.ndjson")}
    assert set(entries) == {"bad-duration", "bad-field-0", "bad-shape-0"}
    entry = entries["bad-duration"]
    assert entry["index"] == f"{es_prefix}-invocations-{day}"
    assert entry["status"] == 400 and entry["reason"] == "mapping"
    assert entry["error"]["type"] == "document_parsing_exception"
    assert "event.duration" in entry["error"]["reason"]
    assert entry["source"] == orjson.loads(wrong_type.source)
    assert entries["bad-field-0"]["error"]["type"] == "strict_dynamic_mapping_exception"
    assert metric(sink, "faaslens_docs_failed_total", reason="mapping") == 3
    assert metric(sink, "faaslens_dead_letter_total") == 3
    assert (
        sum(
            metric(sink, "faaslens_bulk_retries_total", reason=r)
            for r in ("too_many_requests", "server_error", "connection", "timeout", "forbidden")
        )
        == 0
    )


async def test_429_items_are_retried_alone_and_indexed_once(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    faults = Faults()
    sink = await make_sink(faulty_client_factory(faults))
    docs = make_docs(20, logs=2)
    faults.reject_once = {key_of(docs[1]), key_of(docs[7]), key_of(docs[-1])}
    await sink.write(docs)
    assert not faults.reject_once  # the injection happened
    assert refresh_and_count(es_url, es_prefix) == len(docs)
    assert metric(sink, "faaslens_bulk_retries_total", reason="too_many_requests") == 1
    assert metric(sink, "faaslens_docs_duplicate_total") == 0  # only the 3 items were re-sent
    assert sum(kinds(docs).values()) == sum(
        metric(sink, "faaslens_docs_indexed_total", index_kind=k) for k in kinds(docs)
    )
    assert metric(sink, "faaslens_docs_spooled_total") == 0


async def test_whole_request_5xx_is_retried(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    faults = Faults()
    sink = await make_sink(faulty_client_factory(faults))
    docs = make_docs(10)
    faults.bulk_status = [503, 502]
    await sink.write(docs)
    assert faults.bulk_status == []
    assert metric(sink, "faaslens_bulk_retries_total", reason="server_error") == 2
    assert refresh_and_count(es_url, es_prefix) == len(docs)
    assert metric(sink, "faaslens_docs_duplicate_total") == 0


async def test_429_past_the_retry_window_is_spooled_then_indexed(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    faults = Faults()
    sink = await make_sink(faulty_client_factory(faults), retry_window_s=0.2)
    docs = make_docs(10)
    faults.held = {key_of(d) for d in docs[:3]}  # an invocation, its error, a log line
    await sink.write(docs)  # returns after the window: the 3 are spooled, not lost
    assert metric(sink, "faaslens_docs_spooled_total") == 3
    # How many retries fit in the window depends on the machine's speed; the refusals don't.
    assert faults.held_answers >= 3
    assert refresh_and_count(es_url, es_prefix) == len(docs) - 3

    answered_during_write = faults.held_answers

    async def replay_tried() -> bool:  # the supervisor keeps trying while they are refused
        return faults.held_answers >= answered_during_write + 2 * 3

    await apoll_until(replay_tried, timeout=30, what="replay attempts of the refused documents")
    assert metric(sink, "faaslens_docs_replayed_total") == 0
    faults.held.clear()  # Elasticsearch has room again

    async def drained() -> bool:
        return metric(sink, "faaslens_docs_replayed_total") == 3

    await apoll_until(drained, timeout=30, what="rejected documents replayed")
    assert refresh_and_count(es_url, es_prefix) == len(docs)
    assert metric(sink, "faaslens_spool_bytes") == 0


async def test_outage_spools_and_replays_every_doc_exactly_once(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    faults = Faults()
    sink = await make_sink(faulty_client_factory(faults), retry_window_s=0.3)
    before = make_docs(10)
    await sink.write(before)

    faults.down = True  # Elasticsearch goes away mid-stream
    during = [make_docs(10) for _ in range(5)]
    for batch in during:
        await sink.write(batch)
    assert not sink.ready
    assert metric(sink, "faaslens_es_up") == 0
    spooled = sum(len(b) for b in during)
    assert metric(sink, "faaslens_docs_spooled_total") == spooled
    assert metric(sink, "faaslens_spool_bytes") > 0
    assert metric(sink, "faaslens_bulk_retries_total", reason="connection") >= 1
    assert refresh_and_count(es_url, es_prefix) == len(before)

    faults.down = False  # back: the supervisor's probe notices and replays in order
    after = make_docs(10)
    total = len(before) + spooled + len(after)

    async def replayed() -> bool:
        return metric(sink, "faaslens_spool_bytes") == 0 and sink.ready

    await apoll_until(replayed, timeout=30, what="spool replayed")
    await sink.write(after)
    assert refresh_and_count(es_url, es_prefix) == total
    assert metric(sink, "faaslens_docs_replayed_total") == spooled
    assert metric(sink, "faaslens_spool_segments") == 0
    assert list(Path(sink.config.spool_dir).glob("segment-*")) == []
    everything = [*before, *(d for b in during for d in b), *after]
    assert ids_in(es_url, es_prefix, "invocations") == sorted(
        d.doc_id for d in everything if d.kind == "invocations"
    )
    indexed = sum(
        metric(sink, "faaslens_docs_indexed_total", index_kind=k)
        for k in ("invocations", "logs", "errors")
    )
    assert indexed + metric(sink, "faaslens_docs_duplicate_total") == total
    assert indexed == total  # nothing was sent twice


async def test_down_at_start_spools_then_installs_templates_and_replays(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    faults = Faults()
    faults.down = True
    sink = await make_sink(faulty_client_factory(faults))  # must not raise
    assert not sink.ready
    docs = make_docs(15)
    await sink.write(docs)  # known down: straight to the spool, no retry window
    assert metric(sink, "faaslens_docs_spooled_total") == len(docs)
    status, _ = http_json("GET", f"{es_url}/_index_template/{es_prefix}-*")
    assert status == 404  # not installed yet

    faults.down = False

    async def ready() -> bool:
        return sink.ready and metric(sink, "faaslens_spool_bytes") == 0

    await apoll_until(ready, timeout=30, what="templates installed and spool replayed")
    templates = es_request(es_url, "GET", f"/_index_template/{es_prefix}-*")["index_templates"]
    assert len(templates) == 3
    assert refresh_and_count(es_url, es_prefix) == len(docs)
    mapping = es_request(es_url, "GET", f"/{es_prefix}-logs-*/_mapping")
    (only,) = mapping.values()
    assert only["mappings"]["dynamic"] == "strict"  # created by our template, not dynamically


async def test_spool_full_is_a_counted_drop(make_sink: SinkFactory, tmp_path: Path) -> None:
    faults = Faults()
    faults.down = True
    sink = await make_sink(faulty_client_factory(faults), spool_max_bytes=20_000)
    first = make_docs(5)
    await sink.write(first)
    assert metric(sink, "faaslens_docs_spooled_total") == len(first)
    big = make_docs(40)
    await sink.write(big)
    assert metric(sink, "faaslens_docs_failed_total", reason="spool_full") == len(big)
    assert metric(sink, "faaslens_spool_bytes") <= 20_000


async def test_close_right_after_spooling_returns_and_keeps_the_spool(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    """Spooling wakes the supervisor; a close() arriving in the same instant must not be lost."""
    faults = Faults()
    spooled = 0
    for _ in range(5):
        sink = await make_sink(faulty_client_factory(faults), retry_window_s=0.05)
        docs = make_docs(4)
        spooled += len(docs)
        faults.held = {key_of(d) for d in docs}
        await sink.write(docs)  # all refused: spooled, and the supervisor is woken
        closing = asyncio.create_task(sink.close())
        done, _ = await asyncio.wait({closing}, timeout=10)
        assert done, "close() did not return"
        closing.result()
        assert not sink.ready
        assert metric(sink, "faaslens_spool_bytes") > 0  # kept on disk for the next start

    faults.held.clear()
    after = await make_sink()

    async def drained() -> bool:
        return metric(after, "faaslens_spool_bytes") == 0

    await apoll_until(drained, timeout=30, what="spool of the closed sinks replayed")
    assert refresh_and_count(es_url, es_prefix) == spooled


async def test_spool_left_by_an_earlier_run_is_replayed_at_start(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    faults = Faults()
    faults.down = True
    first = await make_sink(faulty_client_factory(faults))
    docs = make_docs(12)
    await first.write(docs)
    await first.close()  # the worker stops while Elasticsearch is away

    second = await make_sink()

    async def drained() -> bool:
        return metric(second, "faaslens_docs_replayed_total") == len(docs)

    await apoll_until(drained, timeout=30, what="earlier spool replayed")
    assert refresh_and_count(es_url, es_prefix) == len(docs)


async def test_classifier_reads_a_real_bulk_response(es_url: str, es_prefix: str) -> None:
    """The pure classifier fed with what the real server answers."""
    config = IngestConfig(es_url=es_url, es_index_prefix=es_prefix)
    sink_docs = make_docs(2, logs=1)
    client = make_client(config)
    try:
        from faaslens.ingest.sink_es.bulk import build_body
        from faaslens.ingest.templates import install_templates, templates_for

        await install_templates(client, templates_for(config))
        bad = Doc("logs", "bad-0", sink_docs[0].day, b'{"event.sequence":"x"}')
        body = build_body([*sink_docs, bad, sink_docs[0]], es_prefix)
        response = await client.bulk(operations=body)  # type: ignore[arg-type]
    finally:
        await client.close()
    outcome = classify(response.body, [*sink_docs, bad, sink_docs[0]])
    assert sum(outcome.indexed.values()) == len(sink_docs)
    assert outcome.duplicates == 1
    assert [(f.doc.doc_id, f.reason) for f in outcome.dead] == [("bad-0", "mapping")]


def test_setup_command_installs_the_templates(es_url: str, es_prefix: str) -> None:
    code = setup_main(["--es-url", es_url, "--es-index-prefix", es_prefix, "--es-replicas", "0"])
    assert code == 0
    names = {
        t["name"]
        for t in es_request(es_url, "GET", f"/_index_template/{es_prefix}-*")["index_templates"]
    }
    assert names == {f"{es_prefix}-invocations", f"{es_prefix}-logs", f"{es_prefix}-errors"}
    # Idempotent.
    assert setup_main(["--es-url", es_url, "--es-index-prefix", es_prefix]) == 0


def test_setup_command_fails_clearly_when_es_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = setup_main(["--es-url", "http://127.0.0.1:1", "--es-index-prefix", "tnever"])
    assert code == EXIT_ELASTICSEARCH
    assert "127.0.0.1:1" in capsys.readouterr().err


async def test_retention_deletes_only_expired_daily_indices(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    from datetime import UTC, datetime, timedelta

    sink = await make_sink(retention_days=7)
    today = datetime.now(UTC)

    def day(delta: int) -> str:
        return (today - timedelta(days=delta)).strftime("%Y.%m.%d")

    old = [
        f"{es_prefix}-logs-{day(8)}",
        f"{es_prefix}-invocations-{day(30)}",
        f"{es_prefix}-errors-2020.01.01",
    ]
    kept = [
        f"{es_prefix}-logs-{day(7)}",
        f"{es_prefix}-invocations-{day(0)}",
        f"{es_prefix}-logs-archive",
        f"{es_prefix}-metrics-2020.01.01",
    ]
    for name in old + kept:
        es_request(es_url, "PUT", f"/{name}")
    deleted = await sink.apply_retention()
    assert sorted(deleted) == sorted(old)
    left = {
        row["index"]
        for row in es_request(es_url, "GET", f"/_cat/indices/{es_prefix}-*?format=json&h=index")
    }
    assert left == set(kept)
    assert metric(sink, "faaslens_retention_deleted_indices_total") == 3
    assert await sink.apply_retention() == []  # nothing left to do


async def test_templates_refused_by_the_server_fail_start_clearly(
    make_sink: SinkFactory, tmp_path: Path
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(REPO_TEMPLATES, broken)
    path = broken / "component" / "ecs-log.json"
    body = orjson.loads(path.read_bytes())
    body["template"]["mappings"]["properties"]["message"]["type"] = "no_such_type"
    path.write_bytes(orjson.dumps(body))
    with pytest.raises(ConfigError, match="refused the templates"):
        await make_sink(es_templates_dir=str(broken))


async def test_unusable_url_is_a_config_error(make_sink: SinkFactory) -> None:
    with pytest.raises(ConfigError, match="es_url"):
        await make_sink(es_url="not a url")


async def test_housekeeping_task_applies_retention_until_cancelled(
    make_sink: SinkFactory, es_url: str, es_prefix: str
) -> None:
    sink = await make_sink(retention_days=3, retention_interval_s=0.1)
    task = asyncio.create_task(sink.run_housekeeping())
    try:
        es_request(es_url, "PUT", f"/{es_prefix}-logs-2021.06.01")

        async def gone() -> bool:
            status, _ = http_json("GET", f"{es_url}/{es_prefix}-logs-2021.06.01")
            return status == 404

        await apoll_until(gone, timeout=30, what="old index deleted by housekeeping")
        # A second one created later is found by a later pass.
        es_request(es_url, "PUT", f"/{es_prefix}-errors-2021.06.02")

        async def second_gone() -> bool:
            status, _ = http_json("GET", f"{es_url}/{es_prefix}-errors-2021.06.02")
            return status == 404

        await apoll_until(second_gone, timeout=30, what="second old index deleted")

        # Elasticsearch may have deleted it before its answer reached the pass that asked:
        # the count follows the answer, so wait for it before cancelling that pass.
        async def both_counted() -> bool:
            return metric(sink, "faaslens_retention_deleted_indices_total") == 2

        await apoll_until(both_counted, timeout=30, what="both deletions counted")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()
    assert metric(sink, "faaslens_retention_deleted_indices_total") == 2
