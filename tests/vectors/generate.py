"""Regenerate the protocol test vectors: ``python -m tests.vectors.generate``.

Two kinds of vectors (docs/protocol.md, "Test vectors"):

* frames produced by the real shipper from the scenarios in ``scenarios/`` (data:
  clock, ids, resource block, platform shapes and calls), so that they are the same
  on any machine and for a shipper in any language;
* hand-made hostile frames, one per rejection reason and edge case.

Each ``<name>.frame`` holds the frame's bytes; ``<name>.json`` what the worker
must make of it. The expected documents are derived here from the rules of
docs/protocol.md ("Documents"), independently of the worker's code, so the
vectors check the worker rather than repeat it.

Besides the fields of the format, a ``.json`` may hold ``require_signature``,
``max_frame_bytes`` and ``now_ms`` (the worker's clock, epoch ms): the worker
settings the vector needs.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from collections import Counter as Tally
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.vectors import scenario

HERE = Path(__file__).resolve().parent
TS = 1_764_028_800_123  # 2025-11-25T00:00:00.123Z
KEYS = {"k1": "secret"}

RESOURCE_FIELDS = frozenset(
    {
        "service.name", "service.version", "service.environment", "service.node.name",
        "faas.name", "faas.version", "faas.id", "faas.max_memory", "cloud.provider",
        "cloud.region", "cloud.account.id", "host.architecture",
    }
)  # fmt: skip
ERROR_DOC_EVENT_FIELDS = frozenset(
    {
        "@timestamp", "faas.execution", "faas.coldstart", "event.outcome", "log.level",
        "log.logger", "message", "trace.id", "span.id", "labels", "error.type",
        "error.message", "error.stack_trace", "error.grouping_key",
    }
)  # fmt: skip


# ------------------------------------------------------------------ shipper scenarios


def frame_names(name: str, count: int) -> list[str]:
    """Vector names of a scenario's frames: its own name, or ``<name>_<i>`` for several."""
    return [name] if count == 1 else [f"{name}_{i}" for i in range(1, count + 1)]


def shipper_frames() -> dict[str, bytes]:
    """Frames of the real shipper for each scenario (tests/vectors/scenarios), by vector name."""
    out: dict[str, bytes] = {}
    for name in scenario.names():
        frames = scenario.run(scenario.load(name))
        out.update(zip(frame_names(name, len(frames)), frames, strict=True))
    return out


# ------------------------------------------------------------------ hand-made frames


def _sign(body: bytes, key_id: str = "k1", key: str = "secret") -> bytes:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return b"s1 " + key_id.encode() + b" " + digest.encode() + b" " + body


def _sign_stamped(body: bytes, ms: int, key_id: str = "k1", key: str = "secret") -> bytes:
    stamp = str(ms).encode()
    digest = hmac.new(key.encode(), stamp + b" " + body, hashlib.sha256).hexdigest()
    return b"s2 " + key_id.encode() + b" " + stamp + b" " + digest.encode() + b" " + body


def _event(t: str, defaults: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """An event of type ``t`` of execution hand-0001 at TS: ``defaults``, ``fields`` over them."""
    return {"t": t, "faas.execution": "hand-0001", "@timestamp": TS, **defaults, **fields}


def _inv(**fields: Any) -> dict[str, Any]:
    outcome = {"event.duration": 5_000_000, "event.outcome": "success", "faas.coldstart": False}
    return _event("inv", outcome, fields)


def _start(**fields: Any) -> dict[str, Any]:
    return _event("start", {"faas.timeout": 3_000_000_000}, fields)


def _env(*events: dict[str, Any], **envelope: Any) -> bytes:
    env: dict[str, Any] = {"v": 1, "src": "hand-src", "seq": 1, "res": {"faas.name": "hand"}}
    env.update(envelope)
    env["ev"] = list(events)
    return orjson.dumps(env)


def hostile_frames() -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Hand-made frames and the worker settings they need."""
    good = _env(_inv())
    log_ok = {
        "t": "log",
        "@timestamp": TS,
        "event.sequence": 0,
        "log.level": "info",
        "message": "ok",
        "faas.execution": "hand-0001",
    }
    no_keys: dict[str, Any] = {}
    return {
        "hostile_bad_json": (b'{"v":1,"src":"x","seq":1,"ev":[{"t":"inv"', no_keys),
        "hostile_not_an_object": (b"[1,2,3]", no_keys),
        "hostile_bad_signature": (_sign(good, key="wrong"), {"hmac_keys": KEYS}),
        "hostile_unknown_key_id": (_sign(good, key_id="k9"), {"hmac_keys": KEYS}),
        # Signed 10 minutes before the worker's clock: a replay of a captured frame.
        "hostile_stale_signature": (_sign_stamped(good, TS - 600_000), {"hmac_keys": KEYS}),
        # A fresh time put on an old signed frame: the signature covers the time.
        "hostile_restamped": (
            _sign_stamped(good, TS - 600_000).replace(
                str(TS - 600_000).encode(), str(TS).encode(), 1
            ),
            {"hmac_keys": KEYS},
        ),
        "hostile_unsigned_when_required": (good, {"hmac_keys": KEYS, "require_signature": True}),
        "hostile_bad_version": (_env(_inv(), v=2), no_keys),
        "hostile_unknown_envelope_key": (_env(_inv(), extra=1), no_keys),
        "hostile_too_large": (_env(_inv(labels={"pad": "x" * 600})), {"max_frame_bytes": 512}),
        "hostile_unknown_field": (_env(_inv(**{"faas.future_field": 1}), log_ok), no_keys),
        "hostile_oversized_field": (
            _env(_inv(), {**log_ok, "event.sequence": 1, "message": "m" * (32 * 1024 + 1)}),
            no_keys,
        ),
        "hostile_wrong_type": (_env(_inv(**{"event.duration": "5ms"}), log_ok), no_keys),
        "hostile_missing_field": (
            _env({k: v for k, v in _inv().items() if k != "faas.execution"}, log_ok),
            no_keys,
        ),
        "hostile_bad_value": (_env(_inv(**{"event.outcome": "meh"}), log_ok), no_keys),
        "hostile_unknown_type": (_env({"t": "span", "@timestamp": TS}, log_ok), no_keys),
        "hostile_start_missing_field": (
            _env({"t": "start", "@timestamp": TS}, _start(**{"faas.execution": "hand-0002"})),
            no_keys,
        ),
        "hostile_start_bad_value": (
            _env(_start(**{"faas.timeout": -1}), _start(**{"faas.execution": "hand-0002"})),
            no_keys,
        ),
        "hostile_error_log_line": (
            _env(
                {
                    **log_ok,
                    "log.level": "error",
                    "message": "payment failed",
                    "error.type": "PaymentError",
                    "error.message": "declined",
                    "error.grouping_key": "a1b2c3d4e5f60718",
                    "labels": {"order": "o-9"},
                }
            ),
            no_keys,
        ),
    }


# ------------------------------------------------------------------ expected documents


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms // 1000, UTC).strftime("%Y.%m.%d")


def _error_doc(merged: dict[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in merged.items() if k in RESOURCE_FIELDS or k in ERROR_DOC_EVENT_FIELDS}
    doc["event.dataset"] = "faas.error"
    doc["event.kind"] = "event"
    return doc


def json_of(frame: bytes) -> bytes:
    """The JSON of a frame, without its signature prefix (``s1`` or ``s2``) if any."""
    if frame.startswith(b"s2 "):
        return frame.split(b" ", 4)[4]
    return frame.split(b" ", 3)[3] if frame.startswith(b"s1 ") else frame


def expected_docs(frame: bytes, prefix: str = "faaslens") -> list[dict[str, Any]]:
    """Documents a valid frame becomes, per docs/protocol.md "Documents"."""
    env = orjson.loads(json_of(frame))
    res = env.get("res", {})
    docs: list[dict[str, Any]] = []
    for ev in env["ev"]:
        merged = {**res, **ev}
        del merged["t"]
        merged.pop("metrics", None)
        day = _day(merged["@timestamp"])
        if ev["t"] == "start":
            continue  # no document: the worker waits for the record (expected_starts)
        attempt = merged.get("faas.attempt", 1)
        if ev["t"] == "inv":
            doc_id = merged["faas.execution"]
            if attempt > 1:  # a redelivered id: each attempt has documents of its own
                doc_id = f"{doc_id}~{attempt}"
            merged["event.dataset"] = "faas.invocation"
            merged["event.kind"] = "event"
            merged["event.start"] = merged["@timestamp"]
            merged["event.end"] = merged["@timestamp"] + merged["event.duration"] // 1_000_000
            docs.append({"_index": f"{prefix}-invocations-{day}", "_id": doc_id, "_source": merged})
            if "error.type" in merged:
                docs.append(
                    {
                        "_index": f"{prefix}-errors-{day}",
                        "_id": doc_id,
                        "_source": _error_doc(merged),
                    }
                )
        else:
            owner = merged.get("faas.execution", env["src"])
            if attempt > 1 and "faas.execution" in merged:
                owner = f"{owner}~{attempt}"
            doc_id = f"{owner}-{merged['event.sequence']}"
            merged["event.dataset"] = "faas.log"
            merged["event.kind"] = "event"
            docs.append({"_index": f"{prefix}-logs-{day}", "_id": doc_id, "_source": merged})
            if "error.type" in merged and merged["log.level"] in ("error", "critical"):
                docs.append(
                    {
                        "_index": f"{prefix}-errors-{day}",
                        "_id": doc_id,
                        "_source": _error_doc(merged),
                    }
                )
    if docs:  # the frame's first document carries its source and sequence (loss ledger)
        docs[0]["_source"] |= {"faas.frame.src": env["src"], "faas.frame.seq": env["seq"]}
    return docs


def worker_frames() -> dict[str, bytes]:
    """Valid hand-made frames for worker features no shared scenario shows yet."""
    retry = _inv(
        **{
            "faas.attempt": 2,
            "event.outcome": "failure",
            "http.response.status_code": 500,
            "faas.trigger.type": "http",
            "faas.metrics_dropped": 1,
            "metrics": [
                {"name": "latency", "kind": "histogram", "value": 0.02, "unit": "s"},
                {"name": "latency", "kind": "histogram", "value": 0.04, "unit": "s",
                 "count": 2, "sum": 0.07},
                {"name": "upstream_calls", "kind": "counter", "value": 3},
            ],
        }
    )  # fmt: skip
    line = {
        "t": "log",
        "@timestamp": TS + 1,
        "event.sequence": 0,
        "log.level": "info",
        "message": "calling upstream",
        "faas.execution": retry["faas.execution"],
        "faas.attempt": 2,
    }
    return {"worker_retry_attempt": _env(retry, line)}


def expected_starts(frame: bytes) -> list[dict[str, Any]]:
    """The start events of a valid frame, as the worker tracks them (resource merged in),
    per docs/protocol.md ("Settling started invocations")."""
    env = orjson.loads(json_of(frame))
    res = env.get("res", {})
    return [
        {k: v for k, v in {**res, **ev}.items() if k != "t"}
        for ev in env["ev"]
        if ev["t"] == "start"
    ]


def _hostile_expectation(name: str, frame: bytes) -> dict[str, Any]:
    """What the worker must answer, reasoned from the protocol for each hand-made frame."""
    frame_level = {
        "hostile_bad_json": "bad_json",
        "hostile_not_an_object": "bad_json",
        "hostile_bad_signature": "bad_signature",
        "hostile_unknown_key_id": "unknown_key",
        "hostile_stale_signature": "stale",
        "hostile_restamped": "bad_signature",
        "hostile_unsigned_when_required": "unsigned",
        "hostile_bad_version": "bad_version",
        "hostile_unknown_envelope_key": "bad_envelope",
        "hostile_too_large": "too_large",
    }
    if name in frame_level:
        return {
            "rejected": frame_level[name],
            "docs": [],
            "starts": [],
            "event_rejections": {},
            "unknown_fields": 0,
        }
    env = orjson.loads(frame)
    rejected_events = {
        "hostile_oversized_field": (1, "too_large"),
        "hostile_wrong_type": (0, "wrong_type"),
        "hostile_missing_field": (0, "missing_field"),
        "hostile_bad_value": (0, "bad_value"),
        "hostile_unknown_type": (0, "unknown_type"),
        "hostile_start_missing_field": (0, "missing_field"),
        "hostile_start_bad_value": (0, "bad_value"),
    }
    unknown = 0
    reasons: Tally[str] = Tally()
    if name in rejected_events:
        index, reason = rejected_events[name]
        del env["ev"][index]
        reasons[reason] += 1
    if name == "hostile_unknown_field":
        del env["ev"][0]["faas.future_field"]  # removed, counted, the event kept
        unknown = 1
    return {
        "rejected": None,
        "docs": expected_docs(orjson.dumps(env)),
        "starts": expected_starts(orjson.dumps(env)),
        "event_rejections": dict(reasons),
        "unknown_fields": unknown,
    }


def all_vectors() -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Every vector: name -> (frame bytes, expectation as stored in the .json)."""
    vectors: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for name, frame in shipper_frames().items():
        spec: dict[str, Any] = {"hmac_keys": KEYS} if name == "shipper_signed" else {}
        spec["now_ms"] = TS
        spec.update(
            {
                "rejected": None,
                "docs": expected_docs(frame),
                "starts": expected_starts(frame),
                "event_rejections": {},
                "unknown_fields": 0,
            }
        )
        vectors[name] = (frame, spec)
    for name, frame in worker_frames().items():
        vectors[name] = (
            frame,
            {"rejected": None, "docs": expected_docs(frame), "starts": expected_starts(frame),
             "event_rejections": {}, "unknown_fields": 0},
        )  # fmt: skip
    for name, (frame, settings) in hostile_frames().items():
        vectors[name] = (frame, {"now_ms": TS, **settings, **_hostile_expectation(name, frame)})
    return vectors


def _update_expected_frames() -> None:
    """Each scenario names the frames it must produce (``expect_frames``)."""
    for name in scenario.names():
        path = scenario.SCENARIOS / f"{name}.json"
        data = scenario.load(name)
        wanted = frame_names(name, len(scenario.run(data)))
        if data.get("expect_frames") != wanted:
            data["expect_frames"] = wanted
            path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def stale_vector_files() -> list[Path]:
    """Every vector's files (``<name>.frame`` and its ``<name>.json``), to be written anew.

    Only JSON files that pair with a frame are vectors: other data kept here
    (``fingerprints.json``) is not the generator's and stays.
    """
    frames = sorted(HERE.glob("*.frame"))
    return frames + [f.with_suffix(".json") for f in frames if f.with_suffix(".json").exists()]


def main() -> int:
    for old in stale_vector_files():
        old.unlink()
    _update_expected_frames()
    vectors = all_vectors()
    for name, (frame, spec) in vectors.items():
        (HERE / f"{name}.frame").write_bytes(frame)
        (HERE / f"{name}.json").write_bytes(
            orjson.dumps(spec, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    print(f"wrote {len(vectors)} vectors to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
