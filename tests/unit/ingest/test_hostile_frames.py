"""Frames the decoders cannot take become bounded rejections, whatever the path:
nesting at any depth and place, keys given twice at any level, timestamps of any
era, ids of any byte length. Fast and reference paths give the same answer."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from faaslens.ingest.documents import ID_MAX_BYTES, bounded_id
from faaslens.ingest.events import EVENT_REASONS, FRAME_REASONS
from faaslens.ingest.validate import FrameResult, Validator, has_duplicate_keys

NOW = 1_764_028_800_000
DAY = 86_400_000


def inv(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "t": "inv",
        "faas.execution": "e-1",
        "@timestamp": NOW,
        "event.duration": 5_000_000,
        "event.outcome": "success",
        "faas.coldstart": False,
    }
    ev.update(over)
    return ev


def log(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "t": "log",
        "@timestamp": NOW,
        "event.sequence": 0,
        "log.level": "info",
        "message": "m",
        "faas.execution": "e-1",
    }
    ev.update(over)
    return ev


def env(*events: dict[str, Any], **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "v": 1,
        "src": "s",
        "seq": 1,
        "res": {"faas.name": "f"},
        "ev": list(events),
    }
    e.update(over)
    return e


def validators(**settings: Any) -> list[Validator]:
    return [
        Validator(clock_ms=lambda: NOW, **settings),
        Validator(clock_ms=lambda: NOW, fast=False, **settings),
    ]


def outcome(r: FrameResult) -> tuple[Any, ...]:
    return (r.rejected, r.event_rejections, [tuple(d) for d in r.docs], r.unknown_fields)


def same_answer(frame: bytes, **settings: Any) -> FrameResult:
    """Both paths' result (they must agree), with only bounded reasons in it."""
    fast, ref = (v.validate(frame) for v in validators(**settings))
    assert outcome(fast) == outcome(ref)
    assert fast.rejected is None or fast.rejected in FRAME_REASONS
    assert set(fast.event_rejections) <= set(EVENT_REASONS)
    return fast


DEEP = "__deep__"


def nested_text(depth: int) -> bytes:
    """JSON text nesting objects and arrays ``depth`` levels deep (no parser built it)."""
    opens = "".join('{"k":' if i % 2 == 0 else "[" for i in range(depth))
    closes = "".join("}" if i % 2 == 0 else "]" for i in reversed(range(depth)))
    return (opens + "1" + closes).encode()


def _deep_frames(depth: int) -> dict[str, bytes]:
    metric = {"name": "m", "kind": "gauge", "value": 1, "labels": DEEP}
    frames = {
        "inv labels": env(inv(labels={"a": DEEP})),
        "log labels": env(log(labels={"a": DEEP})),
        "metric labels": env(inv(metrics=[metric])),
        "unknown event key": env(inv(**{"x.future": DEEP})),
        "resource": env(inv(), res={"faas.name": DEEP}),
        "envelope": env(inv(), extra=DEEP),
        "event": env(DEEP),  # type: ignore[arg-type]
    }
    deep = nested_text(depth)
    return {k: orjson.dumps(f).replace(b'"__deep__"', deep) for k, f in frames.items()}


@pytest.mark.parametrize("depth", [5, 64, 600, 1000, 1023, 1100, 5000])
def test_nesting_anywhere_is_a_bounded_rejection(depth: int) -> None:
    for where, frame in _deep_frames(depth).items():
        r = same_answer(frame)
        if r.rejected is None:
            # the event rejected, or the deep part dropped from it (the rest kept)
            assert r.event_rejections or r.dropped or where == "unknown event key", where
    # 2,141 bytes: the array nested 1,000 deep of the report, in an invocation's labels.
    frame = orjson.dumps(env(inv(labels={"a": DEEP}))).replace(
        b'"__deep__"', b"[" * 1000 + b"]" * 1000
    )
    r = same_answer(frame)
    assert r.rejected == "bad_json" or r.dropped == ["labels:wrong_type"]


# -- duplicate keys ----------------------------------------------------------------------


def with_duplicate(obj: dict[str, Any], key: str, first: Any) -> str:
    """``obj`` as JSON text with ``key`` given twice: ``first``, then its own value."""
    inner = json.dumps(obj, separators=(",", ":"))
    return "{" + json.dumps(key) + ":" + json.dumps(first) + "," + inner[1:]


@pytest.mark.parametrize(
    "text",
    [
        # the envelope: version 2, then 1
        '{"v":2,' + json.dumps(env(inv()), separators=(",", ":"))[1:],
        # an event's id given twice
        json.dumps(env(inv()), separators=(",", ":")).replace(
            '"faas.execution":"e-1"', '"faas.execution":"e-0","faas.execution":"e-1"'
        ),
        # the resource, labels, a metric, its labels, a log line's nested labels
        json.dumps(env(inv()), separators=(",", ":")).replace(
            '{"faas.name":"f"}', with_duplicate({"faas.name": "f"}, "faas.name", "g")
        ),
        json.dumps(env(inv(labels={"a": "1"})), separators=(",", ":")).replace(
            '{"a":"1"}', '{"a":"0","a":"1"}'
        ),
        json.dumps(
            env(inv(metrics=[{"name": "m", "kind": "gauge", "value": 1}])), separators=(",", ":")
        ).replace('"value":1', '"value":2,"value":1'),
        json.dumps(
            env(inv(metrics=[{"name": "m", "kind": "gauge", "value": 1, "labels": {"k": "v"}}])),
            separators=(",", ":"),
        ).replace('{"k":"v"}', '{"k":"w","k":"v"}'),
        json.dumps(env(log(labels={"a": {"b": {"c": 1}}})), separators=(",", ":")).replace(
            '{"c":1}', '{"c":0,"c":1}'
        ),
        # the same, written with whitespace and escapes (the reference path decides)
        '{ "v" : 1 , "v" : 1, "src": "s", "seq": 1, "ev": [{"t": "log", "@timestamp": '
        + str(NOW)
        + ', "event.sequence": 0, "log.level": "info", "message": "a\\u0022:b"}]}',
        # an escaped spelling of the same key
        '{"v":1,"src":"s","seq":1,"\\u0073eq":1,'
        + json.dumps(env(log()), separators=(",", ":"))[1:].replace('"v":1,"src":"s","seq":1,', ""),
        # a string holding '":' hides nothing
        json.dumps(env(log(message='x":y')), separators=(",", ":")).replace(
            '"event.sequence":0', '"event.sequence":1,"event.sequence":0'
        ),
    ],
)
def test_duplicate_keys_are_rejected_at_any_level(text: str) -> None:
    frame = text.encode()
    assert has_duplicate_keys(frame)
    assert same_answer(frame).rejected == "duplicate_key"


@pytest.mark.parametrize(
    "frame",
    [
        orjson.dumps(env(log(message='{"a":1,"a":2}'))),  # keys twice inside a string
        orjson.dumps(env(log(message='x":y', labels={"k": 'a":b'}))),
        orjson.dumps(env(log(labels={"a": {"a": {"a": 1}}}))),  # same name, other objects
        orjson.dumps(env(inv(labels={"faas.execution": "x"}))),
    ],
)
def test_same_names_in_other_objects_or_strings_are_fine(frame: bytes) -> None:
    r = same_answer(frame)
    assert r.rejected is None and not r.event_rejections


# -- timestamps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "ok"),
    [
        (NOW, True),
        (NOW - 7 * DAY, True),
        (NOW - 7 * DAY - 1, False),
        (NOW + 15 * 60_000, True),
        (NOW + 15 * 60_000 + 1, False),
        (86_400_000, False),  # 1970-01-02
        (4_102_444_800_000, False),  # 2100-01-01
        (0, False),
        (253_402_300_799_999, False),
    ],
)
def test_timestamps_outside_the_window_are_rejected(ts: int, ok: bool) -> None:
    frame = orjson.dumps(env(inv(**{"@timestamp": ts}), log(**{"@timestamp": ts}), log()))
    r = same_answer(frame, max_age_s=7 * 86_400, max_ahead_s=900)
    assert r.event_rejections == ([] if ok else ["bad_timestamp", "bad_timestamp"])
    assert r.docs  # the good line is kept either way


def test_days_of_accepted_documents_are_bounded() -> None:
    """Whatever times arrive, the documents fall on a bounded set of days (indices)."""
    v = Validator(clock_ms=lambda: NOW, max_age_s=7 * 86_400, max_ahead_s=900)
    days = set()
    for bit in range(64):
        ts = NOW ^ (1 << bit)  # bit flips of a valid time, as a fuzzer makes them
        for r in (v.validate(orjson.dumps(env(inv(**{"@timestamp": ts})))),):
            days |= {d.day for d in r.docs}
    assert len(days) <= 9


# -- document ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exec_id",
    ["\U0001f600" * 128, "é" * 128, "x" * 128, "\U0001f600" * 127 + "x", "\u0800" * 128],
)
def test_document_ids_fit_elasticsearch_whatever_the_characters(exec_id: str) -> None:
    frame = orjson.dumps(
        env(
            inv(**{"faas.execution": exec_id}),
            log(**{"faas.execution": exec_id, "event.sequence": 123456789}),
        )
    )
    r = same_answer(frame)
    assert r.rejected is None and not r.event_rejections
    ids = [d.doc_id for d in r.docs]
    assert all(len(i.encode()) <= ID_MAX_BYTES for i in ids)
    assert len(set(ids)) == len(ids) == 2
    assert same_answer(frame).docs == r.docs  # deterministic: a retry answers 409


def test_bounded_id_keeps_short_ids_and_distinguishes_long_ones() -> None:
    assert bounded_id("abc-1") == "abc-1"
    a, b = bounded_id("\U0001f600" * 128 + "-1"), bounded_id("\U0001f600" * 128 + "-2")
    assert a != b and a.startswith("\U0001f600") and len(a.encode()) <= ID_MAX_BYTES
