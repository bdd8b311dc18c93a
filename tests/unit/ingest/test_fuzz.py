"""Fuzzing the worker's intake: hostile frames from the grammar and mutated valid frames
go through the pipeline; every frame is accepted or rejected with a bounded reason,
the counters add up, and nothing raises (internal errors stay 0)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from faaslens.ingest.config import IngestConfig
from faaslens.ingest.events import EVENT_REASONS, FRAME_REASONS, Doc
from faaslens.ingest.runner import Worker
from faaslens.ingest.sink_null import NullSink
from faaslens.ingest.validate import Validator
from tests.unit.ingest.fuzz import KEYS, corpus, frames, mutations
from tests.vectors.generate import json_of

# The corpus (the protocol's vectors) is dated 2025-11-25, signed then too: time
# windows are tested on their own (test_hostile_frames, test_replay).
SETTINGS = {"hmac_keys": KEYS, "timestamp_max_age_s": 0, "signature_max_age_s": 1e12}
VALIDATOR = {"hmac_keys": KEYS, "signature_max_age_s": 1e12}


def total(reg: CollectorRegistry, name: str) -> float:
    return sum(s.value for m in reg.collect() for s in m.samples if s.name == name)


async def through_worker(batch: list[bytes]) -> tuple[CollectorRegistry, NullSink]:
    reg = CollectorRegistry()
    sink = NullSink(keep=True)
    config = IngestConfig(
        udp_listen="",
        tcp_listen="",
        http_listen="",
        batch_max_wait_s=0.01,
        **SETTINGS,  # type: ignore[arg-type]
    )
    async with Worker(config, registry=reg, sink=sink) as w:
        assert w.pipeline is not None
        w.pipeline.offer(batch)
    return reg, sink


def check_accounting(batch: list[bytes], reg: CollectorRegistry, sink: NullSink) -> None:
    frames_rejected = {
        r: reg.get_sample_value("faaslens_frames_rejected_total", {"reason": r}) or 0
        for r in FRAME_REASONS
    }
    accepted = total(reg, "faaslens_frames_accepted_total")
    assert total(reg, "faaslens_internal_errors_total") == 0
    assert total(reg, "faaslens_frames_dropped_total") == 0
    # received = accepted + the sum of rejections by reason (blank frames are none)
    assert accepted + sum(frames_rejected.values()) == len(batch)
    assert total(reg, "faaslens_frames_rejected_total") == sum(frames_rejected.values())
    # events of accepted frames = accepted events + the sum of event rejections by reason
    validator = Validator(**VALIDATOR)
    results = [validator.validate(f) for f in batch]
    events = sum(
        len(orjson.loads(json_of(f.removesuffix(b"\n")))["ev"])
        for f, r in zip(batch, results, strict=True)
        if r.rejected is None
    )
    events_rejected = total(reg, "faaslens_events_rejected_total")
    assert total(reg, "faaslens_events_accepted_total") + events_rejected == events
    assert Counter(r.rejected for r in results if r.rejected) == {
        k: v for k, v in frames_rejected.items() if v
    }
    assert total(reg, "faaslens_docs_built_total") == len(sink.docs)


def parsed(docs: list[Doc]) -> list[tuple[Any, ...]]:
    return [(d.kind, d.doc_id, d.day, orjson.loads(d.source)) for d in docs]


def check_paths_agree(frame: bytes) -> None:
    fast = Validator(**VALIDATOR).validate(frame)
    ref = Validator(fast=False, **VALIDATOR).validate(frame)
    # The same documents; the fast path orders an event's keys as the protocol lists them.
    assert (fast.rejected, fast.event_rejections, parsed(fast.docs)) == (
        ref.rejected,
        ref.event_rejections,
        parsed(ref.docs),
    )
    assert fast.rejected is None or fast.rejected in FRAME_REASONS
    assert set(fast.event_rejections) <= set(EVENT_REASONS)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(frames(), min_size=1, max_size=40))
def test_grammar_fuzz_adds_up(batch: list[bytes]) -> None:
    batch = [f for f in batch if f.strip(b"\n")]  # a blank frame is no frame
    for f in batch:
        check_paths_agree(f)
    reg, sink = asyncio.run(through_worker(batch))
    if batch:
        check_accounting(batch, reg, sink)


def test_mutated_valid_frames_add_up() -> None:
    rng = random.Random(20261130)
    valid = corpus()
    batch: list[bytes] = list(valid)
    for seed in valid:
        batch += mutations(seed, rng, 60)
    batch = [f for f in batch if f.strip(b"\n") and b"\n" not in f[:-1]]
    for f in batch:
        check_paths_agree(f)
    reg, sink = asyncio.run(through_worker(batch))
    check_accounting(batch, reg, sink)
    # the valid ones are all in
    got = {d.doc_id for d in sink.docs}
    validator = Validator(**VALIDATOR)
    for f in valid:
        assert {d.doc_id for d in validator.validate(f).docs} <= got
