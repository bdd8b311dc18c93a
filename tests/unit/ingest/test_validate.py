"""Frame validation against docs/protocol.md: every reason, signatures, ids, error docs."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest

from faaslens.ingest.documents import day_of
from faaslens.ingest.events import EVENT_REASONS, FRAME_REASONS
from faaslens.ingest.validate import Validator

TS = 1_764_028_800_123  # 2025-11-25T00:00:00.123Z
EXEC = "8f3c2a1e-0000-4000-8000-000000000001"
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
RES = {"faas.name": "checkout", "faas.version": "7", "cloud.provider": "aws"}


def inv(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "t": "inv",
        "faas.execution": EXEC,
        "@timestamp": TS,
        "event.duration": 2_500_000_000,
        "event.outcome": "success",
        "faas.coldstart": False,
    }
    ev.update(over)
    return {k: v for k, v in ev.items() if v is not DROP}


def log(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "t": "log",
        "@timestamp": TS + 5,
        "event.sequence": 3,
        "log.level": "info",
        "message": "hello",
        "faas.execution": EXEC,
    }
    ev.update(over)
    return {k: v for k, v in ev.items() if v is not DROP}


DROP = object()


def frame(*events: Any, res: Any = RES, **env_over: Any) -> bytes:
    env: dict[str, Any] = {"v": 1, "src": "a1b2c3", "seq": 7, "res": res, "ev": list(events)}
    env.update(env_over)
    env = {k: v for k, v in env.items() if v is not DROP}
    return orjson.dumps(env)


def sign(body: bytes, key_id: str = "k1", secret: str = "s3cret") -> bytes:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"s1 {key_id} {sig} ".encode() + body


V = Validator()


def src(doc_source: bytes) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(doc_source)
    return out


# ---------------------------------------------------------------- accepted frames


def test_invocation_document_fields_and_id() -> None:
    r = V.validate(frame(inv(**{"faas.trigger.type": "http", "trace.id": TRACE})))
    assert r.rejected is None and r.event_rejections == [] and r.unknown_fields == 0
    assert (r.src, r.seq) == ("a1b2c3", 7)
    [doc] = r.docs
    assert (doc.kind, doc.doc_id, doc.day) == ("invocations", EXEC, "2025.11.25")
    assert doc.index_name("faaslens") == "faaslens-invocations-2025.11.25"
    assert src(doc.source) == {
        **RES,
        "faas.execution": EXEC,
        "@timestamp": TS,
        "event.duration": 2_500_000_000,
        "event.outcome": "success",
        "faas.coldstart": False,
        "faas.trigger.type": "http",
        "trace.id": TRACE,
        "event.dataset": "faas.invocation",
        "event.kind": "event",
        "event.start": TS,
        "event.end": TS + 2500,
        "faas.frame.src": "a1b2c3",  # the frame's first document: the loss ledger's mark
        "faas.frame.seq": 7,
    }


def test_only_the_first_document_of_a_frame_carries_its_source_and_sequence() -> None:
    log = {"t": "log", "@timestamp": TS, "event.sequence": 0, "log.level": "info", "message": "m"}
    failed = inv(**{"event.outcome": "failure", "error.type": "E", "error.message": "x"})
    for validate in (V.validate, V.validate_reference):
        r = validate(frame(log, failed))
        assert [d.kind for d in r.docs] == ["logs", "invocations", "errors"]
        sources = [src(d.source) for d in r.docs]
        marks = [(s.get("faas.frame.src"), s.get("faas.frame.seq")) for s in sources]
        assert marks == [("a1b2c3", 7), (None, None), (None, None)]


def test_event_end_uses_integer_division_of_nanoseconds() -> None:
    r = V.validate(frame(inv(**{"event.duration": 1_999_999})))
    assert src(r.docs[0].source)["event.end"] == TS + 1


def test_event_fields_win_over_resource_and_no_t_or_metrics_in_doc() -> None:
    metric = {"name": "orders", "kind": "counter", "value": 2}
    r = V.validate(frame(inv(**{"faas.version": "8", "metrics": [metric]})))
    body = src(r.docs[0].source)
    assert body["faas.version"] == "8"
    assert "t" not in body and "metrics" not in body
    [record] = r.invocations
    assert record["faas.version"] == "8" and record["faas.name"] == "checkout"
    assert record["metrics"] == [metric]


def test_log_document_id_with_and_without_execution() -> None:
    r = V.validate(frame(log(), log(**{"faas.execution": DROP, "event.sequence": 9})))
    assert [d.doc_id for d in r.docs] == [f"{EXEC}-3", "a1b2c3-9"]
    assert all(d.kind == "logs" for d in r.docs)
    body = src(r.docs[0].source)
    assert body["event.dataset"] == "faas.log" and body["event.kind"] == "event"
    assert body["message"] == "hello" and body["faas.name"] == "checkout"
    assert r.invocations == []


def test_inv_error_document() -> None:
    err = {
        "error.type": "ValueError",
        "error.message": "bad",
        "error.stack_trace": "File x, line 1",
        "error.grouping_key": "abc",
    }
    r = V.validate(
        frame(inv(**err, **{"event.outcome": "failure", "span.id": SPAN, "faas.mem_usage": 5}))
    )
    assert [(d.kind, d.doc_id) for d in r.docs] == [("invocations", EXEC), ("errors", EXEC)]
    assert src(r.docs[1].source) == {
        **RES,
        "@timestamp": TS,
        "faas.execution": EXEC,
        "faas.coldstart": False,
        "event.outcome": "failure",
        "span.id": SPAN,
        **err,
        "event.dataset": "faas.error",
        "event.kind": "event",
    }


@pytest.mark.parametrize(
    ("level", "with_error"), [("error", True), ("critical", True), ("warning", False)]
)
def test_log_error_document_only_at_error_levels(level: str, with_error: bool) -> None:
    r = V.validate(
        frame(log(**{"log.level": level, "error.type": "KeyError", "log.logger": "app"}))
    )
    kinds = [d.kind for d in r.docs]
    assert kinds == (["logs", "errors"] if with_error else ["logs"])
    if with_error:
        assert r.docs[1].doc_id == r.docs[0].doc_id == f"{EXEC}-3"
        body = src(r.docs[1].source)
        assert body["event.dataset"] == "faas.error"
        assert body["log.level"] == level and body["log.logger"] == "app"
        assert body["message"] == "hello" and body["error.type"] == "KeyError"
        assert "event.sequence" not in body


def test_docs_keep_event_order() -> None:
    r = V.validate(frame(log(**{"event.sequence": 1}), inv(), log(**{"event.sequence": 2})))
    assert [d.doc_id for d in r.docs] == [f"{EXEC}-1", EXEC, f"{EXEC}-2"]


@pytest.mark.parametrize(
    ("ts", "day"),
    [
        (1_764_028_799_999, "2025.11.24"),  # last ms of the day
        (1_764_028_800_000, "2025.11.25"),  # first ms of the next
        (0, "1970.01.01"),
        (253_402_300_799_999, "9999.12.31"),
    ],
)
def test_day_boundaries_are_utc(ts: int, day: str) -> None:
    assert day_of(ts) == day
    r = V.validate(frame(inv(**{"@timestamp": ts, "event.duration": 0})))
    assert r.docs[0].day == day


def test_trailing_newline_allowed() -> None:
    assert V.validate(frame(inv()) + b"\n").rejected is None


def test_unknown_fields_removed_and_counted() -> None:
    r = V.validate(frame(inv(extra=1, other="x"), log(**{"event.dataset": "spoofed"})))
    assert r.unknown_fields == 3 and r.event_rejections == []
    inv_body, log_body = (src(d.source) for d in r.docs)
    assert "extra" not in inv_body and "other" not in inv_body
    assert log_body["event.dataset"] == "faas.log"  # derived fields cannot be overridden


def test_unknown_resource_and_metric_keys_counted() -> None:
    metric = {"name": "m", "kind": "gauge", "value": 1.5, "color": "red"}
    r = V.validate(frame(inv(metrics=[metric]), res={**RES, "res.new": 1}))
    assert r.rejected is None and r.unknown_fields == 2
    assert "res.new" not in src(r.docs[0].source)
    assert r.invocations[0]["metrics"] == [{"name": "m", "kind": "gauge", "value": 1.5}]


def test_no_res_block_is_fine() -> None:
    r = V.validate(frame(log(), res=DROP))
    assert r.rejected is None and len(r.docs) == 1


# ---------------------------------------------------------------- frame rejections


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "bad_json"),
        (b"not json", "bad_json"),
        (b"[1,2]", "bad_json"),
        (b'"str"', "bad_json"),
        (b'{"v":1,"src":"a","seq":1,"ev":[{"t":"log"}]', "bad_json"),  # truncated
        (b'{"v":1,"src":"\xff\xfe","seq":1,"ev":[]}', "bad_json"),  # not UTF-8
        (frame(inv(), v=2), "bad_version"),
        (frame(inv(), v=0), "bad_version"),
        (frame(inv(), v="1"), "bad_envelope"),
        (frame(inv(), v=True), "bad_envelope"),
        (frame(inv(), v=DROP), "bad_envelope"),
        (frame(inv(), src=DROP), "bad_envelope"),
        (frame(inv(), src=""), "bad_envelope"),
        (frame(inv(), src="a" * 65), "bad_envelope"),
        (frame(inv(), src="has space"), "bad_envelope"),
        (frame(inv(), seq=0), "bad_envelope"),
        (frame(inv(), seq=1.5), "bad_envelope"),
        (frame(inv(), seq=DROP), "bad_envelope"),
        (frame(seq=1), "bad_envelope"),  # no events
        (frame(inv(), ev=DROP), "bad_envelope"),
        (frame(inv(), ev={"t": "inv"}), "bad_envelope"),
        (frame(*[log()] * 1001), "bad_envelope"),
        (frame(inv(), extra=1), "bad_envelope"),
        (frame(inv(), res=[1]), "bad_envelope"),
        (frame(inv(), res={"faas.name": 5}), "bad_envelope"),
        (frame(inv(), res={"faas.name": "x" * 257}), "bad_envelope"),
    ],
)
def test_frame_rejections(raw: bytes, reason: str) -> None:
    assert reason in FRAME_REASONS
    r = V.validate(raw)
    assert r.rejected == reason
    assert r.docs == [] and r.invocations == []


def test_too_large_checked_first() -> None:
    small = Validator(max_frame_bytes=100)
    raw = frame(inv())
    assert len(raw) > 100
    assert small.validate(raw).rejected == "too_large"
    assert small.validate(b"x" * 101).rejected == "too_large"  # before JSON
    assert small.validate(b"x" * 100).rejected == "bad_json"
    assert small.validate(b"x" * 100 + b"\n").rejected == "bad_json"  # LF is framing


def test_thousand_events_accepted() -> None:
    r = V.validate(frame(*[log(**{"event.sequence": i}) for i in range(1000)]))
    assert r.rejected is None and len(r.docs) == 1000


# ---------------------------------------------------------------- signatures

KEYS = {"k1": "s3cret", "k.2-x_": "other"}


def test_signed_frame_verified() -> None:
    v = Validator(hmac_keys=KEYS, require_signature=True)
    body = frame(inv())
    r = v.validate(sign(body))
    assert r.rejected is None and len(r.docs) == 1
    assert v.validate(sign(body, "k.2-x_", "other")).rejected is None
    assert v.validate(sign(body) + b"\n").rejected is None


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda b: sign(b, "k1", "wrong"), "bad_signature"),
        (lambda b: sign(b)[:-2] + b"}}", "bad_signature"),  # body altered after signing
        (lambda b: sign(b, "nokey", "s3cret"), "unknown_key"),
        (lambda b: b, "unsigned"),
        (lambda b: b"s1 k1 " + b"A" * 64 + b" " + b, "bad_signature"),  # uppercase hex
        (lambda b: b"s1 k1 abc " + b, "bad_signature"),  # short signature
        (lambda b: b"s1 k1", "bad_signature"),  # header only
        (lambda b: b"s1 " + b"k" * 33 + b" " + b"0" * 64 + b" " + b, "bad_signature"),
    ],
)
def test_signature_rejections(make: Any, reason: str) -> None:
    v = Validator(hmac_keys=KEYS, require_signature=True)
    assert v.validate(make(frame(inv()))).rejected == reason


def test_unsigned_accepted_when_not_required_and_signed_still_verified() -> None:
    v = Validator(hmac_keys=KEYS)
    assert v.validate(frame(inv())).rejected is None
    assert v.validate(sign(frame(inv()), "k1", "nope")).rejected == "bad_signature"


def test_signed_frame_without_any_keys_is_unknown_key() -> None:
    assert V.validate(sign(frame(inv()))).rejected == "unknown_key"


# ---------------------------------------------------------------- event rejections

LONG = "x" * 300


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"faas.execution": EXEC}, "missing_field"),  # no t
        (inv(t="span"), "unknown_type"),
        (inv(t=5), "unknown_type"),
        (inv(**{"faas.execution": DROP}), "missing_field"),
        (inv(**{"@timestamp": DROP}), "missing_field"),
        (inv(**{"event.duration": DROP}), "missing_field"),
        (inv(**{"event.outcome": DROP}), "missing_field"),
        (inv(**{"faas.coldstart": DROP}), "missing_field"),
        (inv(**{"faas.execution": 5}), "wrong_type"),
        (inv(**{"faas.execution": ""}), "bad_value"),
        (inv(**{"faas.execution": "x" * 129}), "too_large"),
        (inv(**{"@timestamp": "2025-11-25"}), "wrong_type"),
        (inv(**{"@timestamp": 1.5}), "wrong_type"),
        (inv(**{"@timestamp": -1}), "bad_value"),
        (inv(**{"@timestamp": 253_402_300_800_000}), "bad_value"),
        (inv(**{"event.duration": -1}), "bad_value"),
        (inv(**{"event.duration": True}), "wrong_type"),
        (inv(**{"event.outcome": "ok"}), "bad_value"),
        (inv(**{"faas.coldstart": "true"}), "wrong_type"),
        (inv(**{"faas.coldstart": 1}), "wrong_type"),
        (inv(**{"faas.trigger.type": "cron"}), "bad_value"),
        (inv(**{"faas.mem_usage": "1"}), "wrong_type"),
        (inv(**{"faas.cost.usd": -0.1}), "bad_value"),
        (inv(**{"faas.cost.usd": "0.1"}), "wrong_type"),
        (inv(**{"faas.cost.price_id": "p" * 65}), "too_large"),
        (inv(**{"trace.id": TRACE.upper()}), "bad_value"),
        (inv(**{"trace.id": TRACE[:-1]}), "bad_value"),
        (inv(**{"span.id": TRACE}), "bad_value"),
        (inv(**{"span.id": None}), "wrong_type"),
        (inv(**{"error.type": LONG}), "too_large"),
        (inv(**{"error.message": "m" * 8193}), "too_large"),
        (inv(**{"error.stack_trace": "s" * 32769}), "too_large"),
        (inv(**{"error.grouping_key": "g" * 65}), "too_large"),
        (inv(**{"faas.name": LONG}), "too_large"),
        (inv(**{"cloud.provider": "p" * 33}), "too_large"),
        (inv(**{"faas.max_memory": -5}), "bad_value"),
        (inv(labels=[]), "wrong_type"),
        (inv(labels={"a": 1}), "wrong_type"),
        (inv(labels={"a": "v" * 1025}), "too_large"),
        (inv(labels={f"k{i}": "v" for i in range(33)}), "too_large"),
        (inv(metrics={}), "wrong_type"),
        (inv(metrics=[{"name": "m", "kind": "counter", "value": 1}] * 65), "too_large"),
        (inv(metrics=[{"name": "m", "kind": "counter"}]), "missing_field"),
        (inv(metrics=[{"name": "1m", "kind": "counter", "value": 1}]), "bad_value"),
        (inv(metrics=[{"name": "m" * 65, "kind": "counter", "value": 1}]), "too_large"),
        (inv(metrics=[{"name": "m", "kind": "summary", "value": 1}]), "bad_value"),
        (inv(metrics=[{"name": "m", "kind": "counter", "value": -1}]), "bad_value"),
        (inv(metrics=[{"name": "m", "kind": "gauge", "value": "1"}]), "wrong_type"),
        (inv(metrics=[{"name": "m", "kind": "gauge", "value": 1, "unit": "u" * 17}]), "too_large"),
        (
            inv(metrics=[{"name": "m", "kind": "gauge", "value": 1, "labels": {"a-b": "x"}}]),
            "bad_value",
        ),
        (
            inv(metrics=[{"name": "m", "kind": "gauge", "value": 1, "labels": {"a": 1}}]),
            "wrong_type",
        ),
        (
            inv(metrics=[{"name": "m", "kind": "gauge", "value": 1, "labels": {"a": "v" * 65}}]),
            "too_large",
        ),
        (
            inv(
                metrics=[
                    {
                        "name": "m",
                        "kind": "gauge",
                        "value": 1,
                        "labels": {f"l{i}": "v" for i in range(6)},
                    }
                ]
            ),
            "too_large",
        ),
        (inv(metrics=["m"]), "wrong_type"),
        (log(**{"@timestamp": DROP}), "missing_field"),
        (log(**{"event.sequence": DROP}), "missing_field"),
        (log(**{"log.level": DROP}), "missing_field"),
        (log(message=DROP), "missing_field"),
        (log(**{"log.level": "warn"}), "bad_value"),
        (log(**{"event.sequence": -1}), "bad_value"),
        (log(message="m" * 32769), "too_large"),
        (log(message=None), "wrong_type"),
        (log(**{"log.logger": LONG}), "too_large"),
        (log(labels={f"k{i}": i for i in range(65)}), "too_large"),
        (log(labels={"a": {"b": {"c": {"d": {"e": 1}}}}}), "too_large"),  # depth 5
        (log(labels={"a": [[[[1]]]]}), "too_large"),  # arrays count as levels
        (log(labels="x"), "wrong_type"),
        ("not an object", "wrong_type"),
        (7, "wrong_type"),
    ],
)
def test_event_rejections(event: Any, reason: str) -> None:
    """A bad field rejects its event; a bad label or custom metric is dropped alone,
    counted by reason, and the event is kept saying what it lost."""
    assert reason in EVENT_REASONS
    r = V.validate(frame(event, log(**{"event.sequence": 99})))
    assert r.rejected is None
    part = next((k for k in ("labels", "metrics") if isinstance(event, dict) and k in event), None)
    if part is None:
        assert r.event_rejections == [reason]
        # the other event of the frame is kept
        assert [d.doc_id for d in r.docs] == [f"{EXEC}-99"]
        return
    assert r.event_rejections == []
    assert set(r.dropped) == {f"{part}:{reason}"}
    kept = orjson.loads(r.docs[0].source)
    assert kept["faaslens.dropped"] == [f"{part}:{reason}"]
    assert kept["@timestamp"] == event["@timestamp"] and len(r.docs) == 2


def test_limits_inclusive() -> None:
    ok = inv(
        **{
            "faas.execution": "x" * 128,
            "error.message": "m" * 8192,
            "error.stack_trace": "s" * 32768,
            "faas.name": "n" * 256,
            "cloud.provider": "p" * 32,
        },
        labels={f"k{i}": "v" * 1024 for i in range(32)},
        metrics=[
            {
                "name": "m" * 64,
                "kind": "counter",
                "value": 0,
                "labels": {f"l{i}": "v" * 64 for i in range(5)},
                "unit": "u" * 16,
            }
        ]
        * 64,
    )
    deep = {"a": {"b": {"c": [1]}}}  # 4 levels with the labels object itself
    r = V.validate(frame(ok, log(labels={**deep, **{f"k{i}": i for i in range(63)}})))
    assert r.event_rejections == [] and len(r.docs) == 2


def test_truncation_marker_counts_within_limit() -> None:
    msg = "m" * (8192 - len("…[truncated]")) + "…[truncated]"
    r = V.validate(frame(inv(**{"error.type": "E", "error.message": msg})))
    assert r.event_rejections == []


def test_several_rejections_in_one_frame() -> None:
    r = V.validate(frame(inv(t="x"), log(**{"log.level": 1}), inv()))
    assert r.event_rejections == ["unknown_type", "wrong_type"]
    assert len(r.docs) == 1 and len(r.invocations) == 1


def test_out_of_range_numbers_are_rejected_not_crashing() -> None:
    raw = b'{"v":1,"src":"a","seq":1,"ev":[{"t":"log","@timestamp":1e400}]}'
    assert V.validate(raw).rejected == "bad_json"  # infinity is not JSON
    raw2 = b'{"v":1,"src":"a","seq":99999999999999999999999,"ev":[{"t":"log"}]}'
    assert V.validate(raw2).rejected == "bad_envelope"
    raw3 = b'{"v":1,"src":"a","seq":18446744073709551615,"ev":[{"t":"log"}]}'
    assert V.validate(raw3).rejected == "bad_envelope"  # above 2**63-1


def test_fuzzed_frames_never_raise_and_reasons_stay_bounded() -> None:
    import random

    rng = random.Random(1234)
    base = frame(
        inv(labels={"a": "b"}, metrics=[{"name": "m", "kind": "counter", "value": 1}]),
        log(labels={"x": {"y": [1, 2]}}),
    )
    values: list[Any] = [None, True, -1, 0, 1.5, "", "x" * 300, [], {}, [1], {"a": {}}, 2**63]
    v = Validator(hmac_keys=KEYS)
    for _ in range(3000):
        if rng.random() < 0.5:  # byte-level damage
            raw = bytearray(base)
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            data = bytes(raw[: rng.randint(0, len(raw))] if rng.random() < 0.3 else raw)
        else:  # structure-level damage: a random key of a random event gets a random value
            env = orjson.loads(base)
            target = env if rng.random() < 0.2 else rng.choice(env["ev"])
            target[rng.choice([*target, "new"])] = rng.choice(values)
            data = orjson.dumps(env)
        r = v.validate(data)
        assert r.rejected is None or r.rejected in FRAME_REASONS
        assert all(reason in EVENT_REASONS for reason in r.event_rejections)
        for d in r.docs:
            assert d.kind in ("invocations", "logs", "errors") and d.doc_id
            orjson.loads(d.source)
