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

import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from faaslens.ingest.bulk import ItemFailure


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
