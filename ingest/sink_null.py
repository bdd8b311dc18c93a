"""A sink that keeps nothing: for benchmarks, and for running without Elasticsearch.

With ``build_body`` it still builds the bulk request body, so a benchmark
pays the same per-document serialisation the Elasticsearch sink does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.bulk import build_body

__all__ = ["NullSink"]


class NullSink:
    """Counts documents (and optionally builds their bulk body), then forgets them."""

    def __init__(self, prefix: str = "faaslens", *, build_body: bool = True, keep: bool = False):
        self.prefix = prefix
        self.build_body = build_body
        self.keep = keep  # keep the documents (tests)
        self.docs: list[Doc] = []
        self.count = 0
        self.batches = 0
        self.body_bytes = 0
        self.closed = False
        self._changed = asyncio.Condition()

    @property
    def ready(self) -> bool:
        """Always ready once started."""
        return not self.closed

    async def start(self) -> None:
        """Nothing to connect to."""

    async def write(self, batch: Sequence[Doc]) -> None:
        """Account for every document of the batch."""
        if self.build_body:
            self.body_bytes += len(build_body(batch, self.prefix))
        if self.keep:
            self.docs.extend(batch)
        self.count += len(batch)
        self.batches += 1
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_count(self, n: int) -> int:
        """Wait until at least ``n`` documents have been written; return the count."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.count >= n)
        return self.count

    async def close(self) -> None:
        """Mark closed."""
        self.closed = True
