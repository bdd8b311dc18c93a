"""Pieces of the sink that need no server: replay chunking, metric families, config checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from faaslens.ingest.config import ConfigError, IngestConfig
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es import replay
from faaslens.ingest.sink_es.sink import ElasticsearchSink


def _docs(n: int, size: int = 10) -> list[Doc]:
    return [Doc("logs", f"d-{i}", "2026.11.25", b"x" * size) for i in range(n)]


def test_replay_chunks_keep_order_and_respect_both_limits() -> None:
    records = [_docs(3), _docs(5)[3:], _docs(12)[5:]]
    chunks = list(replay.chunks(records, max_docs=4, max_bytes=1000))
    assert [len(c) for c in chunks] == [4, 4, 4]
    assert [d.doc_id for c in chunks for d in c] == [f"d-{i}" for i in range(12)]
    by_bytes = list(replay.chunks([_docs(5, size=40)], max_docs=100, max_bytes=100))
    assert [len(c) for c in by_bytes] == [2, 2, 1]
    assert list(replay.chunks([], 10, 10)) == []


def test_every_series_exists_before_the_first_write(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    ElasticsearchSink(IngestConfig(spool_dir=str(tmp_path)), registry)
    get = registry.get_sample_value
    for kind in ("invocations", "logs", "errors"):
        assert get("faaslens_docs_indexed_total", {"index_kind": kind}) == 0
    for reason in ("mapping", "validation", "other", "spool_full"):
        assert get("faaslens_docs_failed_total", {"reason": reason}) == 0
    assert get("faaslens_bulk_retries_total", {"reason": "too_many_requests"}) == 0
    for name in ("faaslens_es_up", "faaslens_spool_bytes", "faaslens_spool_segments"):
        assert get(name) == 0
    assert get("faaslens_dead_letter_total") == 0
    assert get("faaslens_docs_duplicate_total") == 0


def test_bad_prefix_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="es_index_prefix"):
        ElasticsearchSink(IngestConfig(es_index_prefix="Bad Prefix", spool_dir=str(tmp_path)))


async def test_write_before_start_is_a_programming_error(tmp_path: Path) -> None:
    sink = ElasticsearchSink(IngestConfig(spool_dir=str(tmp_path)))
    with pytest.raises(RuntimeError, match="start"):
        await sink.write(_docs(1))
    assert not sink.ready
