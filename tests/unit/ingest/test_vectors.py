"""The worker's validator against the protocol's test vectors (tests/vectors/)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from faaslens.ingest.validate import Validator

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def check(frame_path: Path) -> list[str]:
    """Problems found with one vector (empty when the validator agrees with it)."""
    want: dict[str, Any] = orjson.loads(frame_path.with_suffix(".json").read_bytes())
    # A vector may carry the worker settings it needs.
    v = Validator(
        hmac_keys=want.get("hmac_keys") or {},
        require_signature=bool(want.get("require_signature", False)),
        max_frame_bytes=int(want.get("max_frame_bytes", 1 << 20)),
        clock_ms=lambda: int(want["now_ms"]),
    )  # fmt: skip
    got = v.validate(frame_path.read_bytes())
    problems = []
    if got.rejected != want.get("rejected"):
        problems.append(f"rejected {got.rejected!r} != {want.get('rejected')!r}")
    docs = [
        {"_index": d.index_name("faaslens"), "_id": d.doc_id, "_source": orjson.loads(d.source)}
        for d in got.docs
    ]
    if docs != want.get("docs", []):
        problems.append(f"docs differ:\n got  {docs}\n want {want.get('docs')}")
    starts = [{**res, **start} for res, start in got.starts]
    if starts != want.get("starts", []):
        problems.append(f"starts differ:\n got  {starts}\n want {want.get('starts')}")
    if dict(Counter(got.event_rejections)) != (want.get("event_rejections") or {}):
        problems.append(f"event_rejections {dict(Counter(got.event_rejections))}")
    if got.unknown_fields != want.get("unknown_fields", 0):
        problems.append(f"unknown_fields {got.unknown_fields}")
    return problems


def test_every_vector_validates_as_documented() -> None:
    frames = sorted(VECTORS.glob("*.frame"))
    assert frames, f"no test vectors in {VECTORS}"
    failures = {p.name: msg for p in frames if (msg := check(p))}
    assert not failures, failures
