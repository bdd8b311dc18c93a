"""Groups documents into bulk batches by count and size. Pure: no I/O, no clock.

The runner drives the time-based flush (``batch_max_wait_s``) by calling
:meth:`Batcher.flush` from a timer, so this module stays trivially testable.
"""

from __future__ import annotations

from faaslens.ingest.events import Doc

# Bytes a bulk action line adds to a document, roughly: {"create":{"_index":..,"_id":..}}\n + \n
ACTION_OVERHEAD = 64


class Batcher:
    """Accumulates documents; hands back a full batch when a limit is reached."""

    __slots__ = ("_bytes", "_docs", "max_bytes", "max_docs")

    def __init__(self, max_docs: int, max_bytes: int) -> None:
        if max_docs < 1 or max_bytes < 1:
            raise ValueError("batch limits must be positive")
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self._docs: list[Doc] = []
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._docs)

    @property
    def pending_bytes(self) -> int:
        """Estimated bulk body size of the documents held."""
        return self._bytes

    def add(self, doc: Doc) -> list[Doc] | None:
        """Add one document; return a batch if a limit was reached, else None."""
        size = len(doc.source) + len(doc.doc_id) + ACTION_OVERHEAD
        if self._docs and self._bytes + size > self.max_bytes:
            # The held documents go out; this one starts the next batch (and leaves
            # with the next add or flush, even if it alone is over the limit).
            out = self._docs
            self._docs = [doc]
            self._bytes = size
            return out
        self._docs.append(doc)
        self._bytes += size
        if len(self._docs) >= self.max_docs or self._bytes >= self.max_bytes:
            out = self._docs
            self._docs = []
            self._bytes = 0
            return out
        return None

    def extend(self, docs: list[Doc]) -> list[list[Doc]]:
        """Add many documents; return the batches they completed (often none)."""
        full: list[list[Doc]] = []
        for doc in docs:
            batch = self.add(doc)
            if batch is not None:
                full.append(batch)
        return full

    def flush(self) -> list[Doc] | None:
        """Hand back whatever is held (None if nothing)."""
        if not self._docs:
            return None
        out = self._docs
        self._docs = []
        self._bytes = 0
        return out
