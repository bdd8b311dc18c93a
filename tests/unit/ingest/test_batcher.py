"""The batcher: pure count/size batching."""

from __future__ import annotations

import pytest

from faaslens.ingest.batcher import ACTION_OVERHEAD, Batcher
from faaslens.ingest.events import Doc


def doc(i: int, size: int = 10) -> Doc:
    return Doc("logs", f"id{i}", "2025.11.25", b"x" * size)


def test_batches_by_count_in_order() -> None:
    b = Batcher(max_docs=3, max_bytes=1 << 20)
    out = [b.add(doc(i)) for i in range(7)]
    assert [o is not None for o in out] == [False, False, True, False, False, True, False]
    first = out[2]
    assert first is not None and [d.doc_id for d in first] == ["id0", "id1", "id2"]
    assert len(b) == 1
    rest = b.flush()
    assert rest is not None and [d.doc_id for d in rest] == ["id6"]
    assert b.flush() is None and len(b) == 0


def test_batches_by_bytes_without_exceeding() -> None:
    per_doc = 100 + len("id0") + ACTION_OVERHEAD
    b = Batcher(max_docs=1000, max_bytes=per_doc * 3 - 1)
    out = [b.add(doc(i, 100)) for i in range(5)]
    # the third doc would cross the limit: the first two go out, it starts the next batch
    full = [o for o in out if o is not None]
    assert [[d.doc_id for d in batch] for batch in full] == [["id0", "id1"], ["id2", "id3"]]
    assert b.pending_bytes == per_doc


def test_oversized_document_goes_out_alone() -> None:
    b = Batcher(max_docs=10, max_bytes=100)
    assert b.add(doc(0, 10)) is None
    held = b.add(doc(1, 500))
    assert held is not None and [d.doc_id for d in held] == ["id0"]
    alone = b.add(doc(2, 10))
    assert alone is not None and [d.doc_id for d in alone] == ["id1"]
    big_first = Batcher(max_docs=10, max_bytes=100)
    out = big_first.add(doc(3, 500))
    assert out is not None and [d.doc_id for d in out] == ["id3"]


def test_extend_returns_completed_batches() -> None:
    b = Batcher(max_docs=2, max_bytes=1 << 20)
    batches = b.extend([doc(i) for i in range(5)])
    assert [len(x) for x in batches] == [2, 2] and len(b) == 1


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Batcher(0, 10)
