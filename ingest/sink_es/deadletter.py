"""The dead-letter file: documents Elasticsearch refused for good (4xx other than 409/429).

One JSON object per line, appended and fsynced per batch::

    {"time": "2026-11-25T13:05:12.345Z", "index": "faaslens-logs-2026.11.25",
     "id": "abc-3", "status": 400, "reason": "mapping",
     "error": {"type": "document_parsing_exception", "reason": "..."},
     "source": {...the document exactly as sent...}}

``source`` is the serialized document spliced in unchanged, so a line can be
fixed and re-sent with the bulk API. ``reason`` is the bounded label value
also used by ``faaslens_docs_failed_total``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from faaslens.ingest.sink_es.bulk import ItemFailure
from faaslens.ingest.sink_es.metrics import SinkMetrics

log = structlog.get_logger("faaslens.sink_es")


def encode_line(failure: ItemFailure, prefix: str, now: datetime) -> bytes:
    """One dead-letter line (newline-terminated)."""
    head = orjson.dumps(
        {
            "time": now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "index": failure.doc.index_name(prefix),
            "id": failure.doc.doc_id,
            "status": failure.status,
            "reason": failure.reason,
            "error": {"type": failure.error_type, "reason": failure.error_reason},
        }
    )
    # Splice the already-serialized source in rather than parsing and re-encoding it.
    return head[:-1] + b',"source":' + failure.doc.source + b"}\n"


def iter_lines(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Parsed entries of a dead-letter file (for tools and tests)."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                entry: dict[str, Any] = orjson.loads(line)
                yield entry


class DeadLetterFile:
    """Appends refused documents to an NDJSON file. Blocking, thread-safe."""

    def __init__(self, path: str | os.PathLike[str], prefix: str) -> None:
        self.path = Path(path)
        self.prefix = prefix
        self._lock = threading.Lock()

    def write(self, failures: Sequence[ItemFailure], now: datetime | None = None) -> None:
        """Append one line per failure and fsync. Raises OSError if the disk refuses."""
        if not failures:
            return
        stamp = now or datetime.now(UTC)
        data = b"".join(encode_line(f, self.prefix, stamp) for f in failures)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fdatasync(fh.fileno())


class DeadLetters:
    """The sink's side of the dead-letter file: counts each failure by reason, writes
    them off the event loop, and logs the first one so the cause is visible."""

    def __init__(self, path: str | os.PathLike[str], prefix: str, metrics: SinkMetrics) -> None:
        self.file = DeadLetterFile(path, prefix)
        self.prefix = prefix
        self.metrics = metrics

    async def write(self, failures: list[ItemFailure]) -> None:
        """Count and append ``failures``; a disk that refuses is logged, not raised."""
        for failure in failures:
            self.metrics.failed_by_reason[failure.reason].inc()
        first = failures[0]
        detail = {
            "docs": len(failures),
            "path": str(self.file.path),
            "first_id": first.doc.doc_id,
            "first_error": f"{first.error_type}: {first.error_reason}",
        }
        try:
            await asyncio.to_thread(self.file.write, failures, datetime.now(UTC))
        except OSError as exc:
            log.error("es_dead_letter_write_failed", error=str(exc), **detail)
            return
        self.metrics.dead_letter.inc(len(failures))
        log.error(
            "es_documents_dead_lettered",
            first_index=first.doc.index_name(self.prefix),
            first_status=first.status,
            **detail,
        )
