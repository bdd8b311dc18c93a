"""Spool replay: the oldest segment is re-sent in bulk-sized chunks and deleted
only once every one of its documents is accounted for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence

import structlog

from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.metrics import SinkMetrics
from faaslens.ingest.sink_es.spool import Spool

log = structlog.get_logger("faaslens.sink_es")

# Sends a chunk; returns the documents still not accounted for.
Deliver = Callable[[Sequence[Doc]], Awaitable[list[Doc]]]


def chunks(records: list[list[Doc]], max_docs: int, max_bytes: int) -> Iterator[list[Doc]]:
    """Regroup spooled records into bulk-sized chunks, keeping their order."""
    chunk: list[Doc] = []
    size = 0
    for record in records:
        for doc in record:
            if chunk and (len(chunk) >= max_docs or size + len(doc.source) > max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(doc)
            size += len(doc.source)
    if chunk:
        yield chunk


async def replay_oldest(
    spool: Spool,
    deliver: Deliver,
    metrics: SinkMetrics,
    max_docs: int,
    max_bytes: int,
    *,
    reachable: Callable[[], bool] = lambda: False,
    requeue: Callable[[list[Doc]], Awaitable[bool]] | None = None,
) -> bool:
    """Replay the oldest segment. Returns True when it is done (or there is none) and
    made progress; False when the caller should back off before the next one.

    Documents Elasticsearch still refuses while it answers (``reachable()``) do not
    hold the segment: they are appended at the spool's tail (``requeue``, which
    returns False when it cannot take them) and the segment is removed, so later
    segments get their turn; the sink bounds how often one document comes back. When
    Elasticsearch stops answering, the segment stays and replay pauses.
    """
    segment = await asyncio.to_thread(spool.oldest)
    if segment is None:
        return True
    records, corrupt = await asyncio.to_thread(spool.load, segment)
    if corrupt is not None:
        metrics.spool_corrupt.inc()
        log.error("es_spool_segment_corrupt", segment=str(segment.path), error=corrupt)
    total = 0
    refused: list[Doc] = []
    for chunk in chunks(records, max_docs, max_bytes):
        left = await deliver(chunk)
        if left and (requeue is None or not reachable()):
            log.warning("es_spool_replay_paused", segment=str(segment.path), left=len(left))
            return False
        total += len(chunk)
        refused += left
    if refused:
        assert requeue is not None
        if not await requeue(refused):
            return False
        metrics.requeued.inc(len(refused))
        log.warning("es_spool_documents_requeued", segment=str(segment.path), docs=len(refused))
    await asyncio.to_thread(spool.remove, segment)
    metrics.replayed.inc(total - len(refused))
    metrics.spool_bytes.set(spool.total_bytes)
    metrics.spool_segments.set(spool.segment_count)
    log.info("es_spool_segment_replayed", segment=str(segment.path), docs=total - len(refused))
    return len(refused) < total
