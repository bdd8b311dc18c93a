"""Regenerate the protocol test vectors: ``python -m tests.vectors.generate``.

Two kinds of vectors (docs/protocol.md, "Test vectors"):

* frames produced by the real shipper with a fixed clock, ids, source id,
  memory reading and resource block, so that they are the same on any machine;
* hand-made hostile frames, one per rejection reason and edge case.

Each ``<name>.frame`` holds the frame's bytes; ``<name>.json`` what the worker
must make of it. The expected documents are derived here from the rules of
docs/protocol.md ("Documents"), independently of the worker's code, so the
vectors check the worker rather than repeat it.

Besides the fields of the format, a ``.json`` may hold ``require_signature``
and ``max_frame_bytes``: the worker settings the vector needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import sys
from collections import Counter as Tally
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson

from shipper.config import ShipperConfig
from shipper.core import Clock, Shipper
from shipper.logs import Logger
from shipper.metrics import Counter, Gauge, Histogram
from shipper.transport import Transport

HERE = Path(__file__).resolve().parent
TS = 1_764_028_800_123  # 2025-11-25T00:00:00.123Z
SRC = "vec-src-01"
KEYS = {"k1": "secret"}
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
RESOURCE = {
    "service.name": "checkout",
    "service.version": "1.4.2",
    "service.environment": "prod",
    "service.node.name": "2025/11/25/[$LATEST]0123456789abcdef",
    "faas.name": "checkout",
    "faas.version": "$LATEST",
    "faas.max_memory": 512 * 1024 * 1024,
    "cloud.provider": "aws",
    "cloud.region": "eu-west-1",
    "host.architecture": "x86_64",
}

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


# ------------------------------------------------------------------ deterministic shipper


class _Capture(Transport):
    """Keeps the frames instead of sending them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frames: Any) -> None:
        self.frames.extend(frames)

    def close(self) -> None:
        pass


class _Clock(Clock):
    """Wall clock from TS, +1 ms per reading; monotonic +2.5 ms per reading."""

    def __init__(self) -> None:
        self._wall = TS
        self._perf = 0

    def time_ns(self) -> int:
        now = self._wall
        self._wall += 1
        return now * 1_000_000

    def perf_ns(self) -> int:
        self._perf += 2_500_000
        return self._perf

    def process_age_ns(self) -> int:
        return 412_000_000


def _shipper(**settings: Any) -> tuple[Shipper, _Capture]:
    settings.setdefault("max_datagram", 8000)  # one frame each, but where packing is shown
    capture = _Capture()
    ids = iter(f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 1000))
    sh = Shipper(
        ShipperConfig(**settings),
        environ={},
        resource=RESOURCE,
        transport=capture,
        clock=_Clock(),
        src=SRC,
        rss=lambda: 96 * 1024 * 1024,
        new_id=lambda: next(ids),
    )
    return sh, capture


class _LambdaContext:
    function_name = "checkout"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:checkout"
    aws_request_id = "8f3c2a1e-5b7d-4c1e-9f2a-6d8e0b1c3a5f"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 0  # no watchdog in vectors


class _AzureTrace:
    trace_parent = TP


class _AzureContext:
    invocation_id = "5f0a4b0e-1111-4e1e-9d1e-000000000001"
    function_name = "HttpTrigger1"
    trace_context = _AzureTrace()


class HttpRequest:  # named like azure.functions.HttpRequest
    method = "GET"
    headers: ClassVar[dict[str, str]] = {}


class _CloudEvent:
    def get_attributes(self) -> dict[str, str]:
        return {
            "id": "1234567890123456",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/orders",
        }


# Handlers compiled under a fixed file name, so stack traces are the same everywhere.
_HANDLERS = """
def failing_handler(event, context):
    return charge(event["amount"])

def charge(amount):
    raise ValueError(f"card declined for amount {amount}")

def flaky_handler(log):
    log.debug("cache miss", key="user:1")
    log.info("calling upstream")
    call_upstream()

def call_upstream():
    raise TimeoutError("upstream took too long")
"""


def _compiled() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(_HANDLERS, "/var/task/handler.py", "exec"), namespace)
    return namespace


def shipper_frames() -> dict[str, bytes]:
    """Frames of the real shipper for fixed inputs, by vector name."""
    out: dict[str, bytes] = {}

    # An AWS invocation: 3 lines, a counter, a gauge, a histogram, a trace from the headers.
    sh, cap = _shipper()
    log = Logger("orders", shipper=sh)
    orders, depth = Counter("orders", shipper=sh), Gauge("queue_depth", shipper=sh)
    size = Histogram("payload_bytes", unit="bytes", shipper=sh)

    @sh.instrument
    def handler(event: Any, context: Any) -> Any:
        log.info("order received", order_id="o-1", password="hunter2")
        log.warning("slow downstream", service="payments", ms=812)
        log.info("order stored", items=[1, 2], meta={"region": "eu"})
        orders.inc(region="eu")
        depth.set(4)
        size.observe(2048)
        return {"statusCode": 201}

    event = {"httpMethod": "POST", "headers": {"traceparent": TP}, "body": "{}"}
    handler(event, _LambdaContext())
    (out["shipper_aws_invocation"],) = cap.frames

    # A failing invocation: error fields with a fixed-path stack trace.
    sh, cap = _shipper()
    failing = sh.instrument(_compiled()["failing_handler"])
    with contextlib.suppress(ValueError):
        failing({"amount": 42}, _LambdaContext())
    (out["shipper_error"],) = cap.frames

    # Azure HTTP function with its trace context.
    sh, cap = _shipper()
    sh.instrument(lambda req, context: None)(HttpRequest(), _AzureContext())
    (out["shipper_azure_http"],) = cap.frames

    # GCP CloudEvent (Pub/Sub) function.
    sh, cap = _shipper()
    sh.instrument(lambda cloud_event: None)(_CloudEvent())
    (out["shipper_gcp_cloudevent"],) = cap.frames

    # A line logged outside any invocation (at import time of the function).
    sh, cap = _shipper()
    Logger("init", shipper=sh).info("model loaded", ms=120)
    (out["shipper_log_outside"],) = cap.frames

    # An invocation with 40 lines: several frames, each with the resource block.
    sh, cap = _shipper(max_datagram=1400)
    log = Logger("batch", shipper=sh)
    with sh.invocation(execution_id="batch-0001", name="nightly-batch", trigger="timer"):
        for i in range(40):
            log.info("processed record", record=i, status="ok")
    for i, frame in enumerate(cap.frames, start=1):
        out[f"shipper_multi_frame_{i}"] = frame

    # A signed frame.
    sh, cap = _shipper(hmac_key=KEYS["k1"], hmac_key_id="k1")
    sh.instrument(lambda: None)()
    (out["shipper_signed"],) = cap.frames

    # Debug buffer: debug lines kept aside, shipped because the invocation failed.
    sh, cap = _shipper(log_level="info")
    log = Logger("worker", shipper=sh)
    with contextlib.suppress(TimeoutError):
        sh.instrument(_compiled()["flaky_handler"], name="worker")(log)
    (out["shipper_debug_buffer_on_failure"],) = cap.frames

    # Over-long message cut by the shipper to the protocol limit.
    sh, cap = _shipper(max_datagram=65_000)
    with sh.invocation(execution_id="long-0001"):
        Logger(shipper=sh).info("x" * 40_000)
    (out["shipper_truncated_message"],) = cap.frames
    return out


# ------------------------------------------------------------------ hand-made frames


def _sign(body: bytes, key_id: str = "k1", key: str = "secret") -> bytes:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return b"s1 " + key_id.encode() + b" " + digest.encode() + b" " + body


def _inv(**fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "t": "inv",
        "faas.execution": "hand-0001",
        "@timestamp": TS,
        "event.duration": 5_000_000,
        "event.outcome": "success",
        "faas.coldstart": False,
    }
    ev.update(fields)
    return ev


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


def expected_docs(frame: bytes, prefix: str = "faaslens") -> list[dict[str, Any]]:
    """Documents a valid frame becomes, per docs/protocol.md "Documents"."""
    body = frame.split(b" ", 3)[3] if frame.startswith(b"s1 ") else frame
    env = orjson.loads(body)
    res = env.get("res", {})
    docs: list[dict[str, Any]] = []
    for ev in env["ev"]:
        merged = {**res, **ev}
        del merged["t"]
        merged.pop("metrics", None)
        day = _day(merged["@timestamp"])
        if ev["t"] == "inv":
            doc_id = merged["faas.execution"]
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


def _hostile_expectation(name: str, frame: bytes) -> dict[str, Any]:
    """What the worker must answer, reasoned from the protocol for each hand-made frame."""
    frame_level = {
        "hostile_bad_json": "bad_json",
        "hostile_not_an_object": "bad_json",
        "hostile_bad_signature": "bad_signature",
        "hostile_unknown_key_id": "unknown_key",
        "hostile_unsigned_when_required": "unsigned",
        "hostile_bad_version": "bad_version",
        "hostile_unknown_envelope_key": "bad_envelope",
        "hostile_too_large": "too_large",
    }
    if name in frame_level:
        return {
            "rejected": frame_level[name],
            "docs": [],
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
        "event_rejections": dict(reasons),
        "unknown_fields": unknown,
    }


def all_vectors() -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Every vector: name -> (frame bytes, expectation as stored in the .json)."""
    vectors: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for name, frame in shipper_frames().items():
        spec: dict[str, Any] = {"hmac_keys": KEYS} if name == "shipper_signed" else {}
        spec.update(
            {
                "rejected": None,
                "docs": expected_docs(frame),
                "event_rejections": {},
                "unknown_fields": 0,
            }
        )
        vectors[name] = (frame, spec)
    for name, (frame, settings) in hostile_frames().items():
        vectors[name] = (frame, {**settings, **_hostile_expectation(name, frame)})
    return vectors


def main() -> int:
    for old in list(HERE.glob("*.frame")) + list(HERE.glob("*.json")):
        old.unlink()
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
