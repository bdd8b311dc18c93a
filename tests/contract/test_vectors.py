"""The protocol test vectors (tests/vectors/) against the worker and the shipper.

1. Every ``<name>.frame`` goes through the worker's validator; its documents and
   rejections must be exactly those of ``<name>.json``.
2. The shipper scenarios (``tests/vectors/scenarios/*.json``, data) are run again by
   the Python shipper: its frames must match the stored ones under the comparison
   rules of docs/protocol.md. The NodeJS shipper runs the same scenarios
   (nodejs/test/scenarios.test.ts).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from faaslens.ingest.validate import Validator
from faaslens.shipper.errors import fingerprint_of
from tests.vectors import scenario
from tests.vectors.generate import all_vectors

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.frame"))


def test_there_are_enough_vectors() -> None:
    assert len(NAMES) >= 12
    kinds = {name.split("_", 1)[0] for name in NAMES}
    # shipper_: made by the shipper from a shared scenario; worker_: valid hand-made frames
    # for worker features; hostile_: hand-made frames the worker must refuse.
    assert kinds == {"shipper", "worker", "hostile"}


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


@pytest.mark.parametrize("name", scenario.names())
def test_shipper_produces_the_scenario_frames(name: str) -> None:
    """The Python shipper, run on the scenario's data, sends the stored frames (by the rules)."""
    spec = scenario.load(name)
    expected = [(VECTORS / f"{n}.frame").read_bytes() for n in spec["expect_frames"]]
    assert scenario.frames_match(spec, expected, scenario.run(spec)) == []


def test_every_shipper_vector_comes_from_a_scenario() -> None:
    named = {n for name in scenario.names() for n in scenario.load(name)["expect_frames"]}
    assert named == {n for n in NAMES if n.startswith("shipper_")}


def test_comparison_rules_catch_differences() -> None:
    """Exact fields must match exactly; stack traces and floats by their rules."""
    spec = scenario.load("shipper_error")
    (frame,) = [(VECTORS / f"{n}.frame").read_bytes() for n in spec["expect_frames"]]
    body = orjson.loads(frame)

    def variant(**changes: Any) -> list[bytes]:
        ev = {**body["ev"][0], **changes}
        return [orjson.dumps({**body, "ev": [ev]})]

    usd = body["ev"][0]["faas.cost.usd"]
    close = variant(**{"faas.cost.usd": usd * (1 + 1e-12)})
    assert scenario.frames_match(spec, [frame], close) == []
    other_stack = "Traceback: ValueError in failing_handler <- charge (another runtime's text)"
    assert scenario.frames_match(spec, [frame], variant(**{"error.stack_trace": other_stack})) == []
    assert scenario.frames_match(spec, [frame], variant(**{"faas.cost.usd": usd * 1.001}))
    assert scenario.frames_match(spec, [frame], variant(**{"error.stack_trace": "ValueError"}))
    assert scenario.frames_match(spec, [frame], variant(**{"error.grouping_key": "0" * 16}))
    assert scenario.frames_match(spec, [frame], variant(**{"faas.coldstart": 1}))
    assert scenario.frames_match(spec, [frame], [frame, frame])


def test_fingerprint_vectors() -> None:
    cases = orjson.loads((VECTORS / "fingerprints.json").read_bytes())["cases"]
    assert len(cases) >= 5
    for case in cases:
        frames = [(file, func) for file, func in case["frames"]]
        assert fingerprint_of(case["type"], frames) == case["grouping_key"], case["text"]


def test_the_generator_rewrites_vectors_only() -> None:
    """Regenerating removes every vector's files first (so a renamed scenario leaves no
    stale frames), and nothing else kept next to them."""
    from tests.vectors.generate import stale_vector_files

    stale = {p.name for p in stale_vector_files()}
    assert stale == {f"{n}.frame" for n in NAMES} | {f"{n}.json" for n in NAMES}
    assert (VECTORS / "fingerprints.json").exists() and "fingerprints.json" not in stale


def test_stored_expectations_match_the_generator() -> None:
    """The .json files are the generator's output (nobody edited one by hand)."""
    for name, (_, spec) in all_vectors().items():
        stored = orjson.loads((VECTORS / f"{name}.json").read_bytes())
        assert stored == orjson.loads(orjson.dumps(spec)), name
