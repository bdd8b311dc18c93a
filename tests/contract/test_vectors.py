"""The protocol test vectors (tests/vectors/) against the worker and the shipper.

1. Every ``<name>.frame`` goes through the worker's validator; its documents and
   rejections must be exactly those of ``<name>.json``.
2. The shipper-made vectors are made again (fixed clock and ids): the frames must
   parse to the same JSON as the stored ones. A shipper in another language is
   checked the same way, from the same inputs.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from faaslens.ingest.validate import Validator
from tests.vectors.generate import all_vectors, shipper_frames

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.frame"))


def _body(frame: bytes) -> Any:
    return orjson.loads(frame.split(b" ", 3)[3] if frame.startswith(b"s1 ") else frame)


def test_there_are_enough_vectors() -> None:
    assert len(NAMES) >= 12
    kinds = {name.split("_", 1)[0] for name in NAMES}
    assert kinds == {"shipper", "hostile"}


@pytest.mark.parametrize("name", NAMES)
def test_worker_turns_the_frame_into_the_expected_documents(name: str) -> None:
    frame = (VECTORS / f"{name}.frame").read_bytes()
    spec = orjson.loads((VECTORS / f"{name}.json").read_bytes())
    validator = Validator(
        hmac_keys=spec.get("hmac_keys") or {},
        require_signature=spec.get("require_signature", False),
        max_frame_bytes=spec.get("max_frame_bytes", 1 << 20),
    )
    result = validator.validate(frame)
    assert result.rejected == spec["rejected"]
    docs = [
        {"_index": d.index_name("faaslens"), "_id": d.doc_id, "_source": orjson.loads(d.source)}
        for d in result.docs
    ]
    assert docs == spec["docs"]
    assert [{**res, **start} for res, start in result.starts] == spec["starts"]
    assert dict(Counter(result.event_rejections)) == spec["event_rejections"]
    assert result.unknown_fields == spec["unknown_fields"]


@functools.cache
def _made() -> dict[str, bytes]:
    return shipper_frames()


@pytest.mark.parametrize("name", sorted(n for n in NAMES if n.startswith("shipper_")))
def test_shipper_produces_the_same_frames(name: str) -> None:
    made = _made()
    stored = (VECTORS / f"{name}.frame").read_bytes()
    assert name in made, f"{name} is no longer produced: run python -m tests.vectors.generate"
    fresh = made[name]
    assert _body(fresh) == _body(stored)
    assert fresh.startswith(b"s1 ") == stored.startswith(b"s1 ")
    if fresh.startswith(b"s1 "):
        assert fresh == stored  # same key, same bytes: same signature


def test_stored_expectations_match_the_generator() -> None:
    """The .json files are the generator's output (nobody edited one by hand)."""
    for name, (_, spec) in all_vectors().items():
        stored = orjson.loads((VECTORS / f"{name}.json").read_bytes())
        assert stored == orjson.loads(orjson.dumps(spec)), name
