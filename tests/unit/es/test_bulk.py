"""Bulk body building and item classification (pure, no services)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from faaslens.backoff import backoff_delay
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.bulk import (
    BulkResponseError,
    action_line,
    build_body,
    classify,
    classify_status,
    dead_letter_reason,
    retry_reason,
)

CAPTURED = Path(__file__).with_name("bulk_response_mixed.json")


def _doc(doc_id: str, kind: Any = "logs", source: dict[str, Any] | None = None) -> Doc:
    return Doc(kind, doc_id, "2026.11.25", orjson.dumps(source or {"message": doc_id}))


def test_body_is_action_then_untouched_source_per_doc() -> None:
    docs = [_doc("a-0"), _doc("b-1", "invocations", {"faas.name": "x", "n": 1.5})]
    body = build_body(docs, "fl")
    lines = body.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5  # NDJSON: every line newline-terminated
    assert orjson.loads(lines[0]) == {"create": {"_index": "fl-logs-2026.11.25", "_id": "a-0"}}
    assert lines[1] == docs[0].source
    assert orjson.loads(lines[2]) == {
        "create": {"_index": "fl-invocations-2026.11.25", "_id": "b-1"}
    }
    assert lines[3] == docs[1].source


def test_replacing_documents_use_op_index_in_the_same_body() -> None:
    late = Doc("invocations", "a", "2026.11.25", b"{}", "index")
    body = build_body([_doc("a", "invocations"), late, _doc("b", "invocations")], "fl")
    ops = [next(iter(orjson.loads(line))) for line in body.split(b"\n")[0:6:2]]
    assert ops == ["create", "index", "create"]
    replace = {"index": {"_index": "fl-x", "_id": "a"}}
    assert orjson.loads(action_line("fl-x", "a", "index")) == replace


def test_action_line_escapes_ids() -> None:
    line = action_line("fl-logs-2026.11.25", 'we"ird\\id\n')
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line)["create"]["_id"] == 'we"ird\\id\n'


def test_empty_batch_builds_empty_body() -> None:
    assert build_body([], "fl") == b""


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "indexed"),
        (201, "indexed"),
        (409, "duplicate"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (403, "retry"),
        (400, "dead"),
        (404, "dead"),
        (413, "dead"),
    ],
)
def test_status_disposition(status: int, expected: str) -> None:
    assert classify_status(status) == expected


def test_retry_reasons_are_bounded() -> None:
    assert retry_reason(429) == "too_many_requests"
    assert retry_reason(503) == "server_error"
    assert retry_reason(403) == "forbidden"
    assert retry_reason(408) == "timeout"


def test_dead_letter_reasons_are_bounded() -> None:
    assert dead_letter_reason("document_parsing_exception") == "mapping"
    assert dead_letter_reason("strict_dynamic_mapping_exception") == "mapping"
    assert dead_letter_reason("mapper_parsing_exception") == "mapping"
    assert dead_letter_reason("illegal_argument_exception") == "validation"
    assert dead_letter_reason("something_new_exception") == "other"


def test_classify_real_captured_response() -> None:
    """A response captured from Elasticsearch 8.19: created, mapping errors, strict field, 409."""
    captured = orjson.loads(CAPTURED.read_bytes())
    docs = [Doc(d["kind"], d["id"], d["day"], orjson.dumps(d["source"])) for d in captured["docs"]]
    outcome = classify(captured["response"], docs)
    assert outcome.indexed == {"invocations": 1, "logs": 1}
    assert outcome.duplicates == 1
    assert outcome.retry == []
    assert [(f.doc.doc_id, f.status, f.reason) for f in outcome.dead] == [
        ("inv-2", 400, "mapping"),
        ("inv-1-0", 400, "mapping"),
    ]
    wrong_type, strict = outcome.dead
    assert wrong_type.error_type == "document_parsing_exception"
    assert "event.duration" in wrong_type.error_reason
    assert "For input string" in wrong_type.error_reason  # caused_by is kept
    assert strict.error_type == "strict_dynamic_mapping_exception"


def test_classify_retries_only_failed_items() -> None:
    docs = [_doc(f"d-{i}") for i in range(4)]
    response = {
        "errors": True,
        "items": [
            {"create": {"status": 201}},
            {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
            {"create": {"status": 503, "error": {"type": "unavailable_shards_exception"}}},
            {"create": {"status": 201}},
        ],
    }
    outcome = classify(response, docs)
    assert outcome.retry == [docs[1], docs[2]]
    assert outcome.retry_reasons == {"too_many_requests": 1, "server_error": 1}
    assert outcome.indexed == {"logs": 2}


def test_classify_fast_path_when_no_errors() -> None:
    docs = [_doc("a"), _doc("b", "errors")]
    response = {"errors": False, "items": [{"create": {"status": 201}}] * 2}
    outcome = classify(response, docs)
    assert outcome.indexed == {"logs": 1, "errors": 1}
    assert not outcome.dead and not outcome.retry and outcome.duplicates == 0


@pytest.mark.parametrize(
    "response",
    [
        {"errors": True, "items": [{"create": {"status": 201}}]},  # one item for two docs
        {"errors": True},
        {"errors": True, "items": [{"create": {}}, {"create": {"status": 201}}]},
    ],
)
def test_classify_rejects_responses_that_do_not_line_up(response: dict[str, Any]) -> None:
    with pytest.raises(BulkResponseError):
        classify(response, [_doc("a"), _doc("b")])


def test_backoff_is_capped_jittered_and_grows() -> None:
    assert backoff_delay(0, 0.1, 10, rand=lambda: 0.0) == pytest.approx(0.05)
    assert backoff_delay(0, 0.1, 10, rand=lambda: 1.0) == pytest.approx(0.1)
    assert backoff_delay(3, 0.1, 10, rand=lambda: 1.0) == pytest.approx(0.8)
    assert backoff_delay(50, 0.1, 10, rand=lambda: 1.0) == pytest.approx(10)
    assert backoff_delay(1000, 0.1, 10, rand=lambda: 0.0) == pytest.approx(5)
    delays = {backoff_delay(4, 0.1, 10) for _ in range(50)}
    assert len(delays) > 1 and all(0.8 <= d <= 1.6 for d in delays)


def test_client_ndjson_serializer_passes_our_body_through_unchanged() -> None:
    """``client.bulk(operations=<bytes>)`` sends our bytes as they are (no re-encoding)."""
    from elasticsearch.serializer import NdjsonSerializer

    body = build_body([_doc("a"), _doc("b", "errors", {"é": "\u2028"})], "fl")
    assert NdjsonSerializer().dumps(body) == body
