"""Frame validation: the protocol's rules, bytes in, accepted events out.

Pure and synchronous (no I/O, no metrics) so it can run on any thread and be
checked against the test vectors byte for byte. The rules are those of
``docs/protocol.md``; every rejection carries one of the bounded reasons of
:mod:`faaslens.ingest.events`. What an accepted event is stored as is decided
by :mod:`faaslens.ingest.documents`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from faaslens import protocol as P
from faaslens.ingest.documents import (
    DAY_CACHE,
    LOG_HEAD,
    LOG_TAIL,
    MS_PER_DAY,
    day_of,
    error_source,
    invocation_docs,
    log_doc_id,
    log_docs,
    mark_frame,
)
from faaslens.ingest.events import Doc
from faaslens.ingest.validate_fast import UNSET, FastDecoder, dumps_members, to_dict

__all__ = ["FrameResult", "Validator"]

# Field kinds. Small ints compared with `is`-free `==` keep the per-field loop cheap.
_SKIP: Final = 0  # "t": already dispatched on
_STR: Final = 1  # string, length <= limit
_UINT: Final = 2  # integer (not bool), 0 <= value <= limit
_NUM: Final = 3  # finite number (not bool), >= 0
_BOOL: Final = 4
_ENUM: Final = 5  # string in a set
_HEX: Final = 6  # lowercase hex string of exactly `limit` digits
_EXEC: Final = 7  # string of 1..128 chars
_INV_LABELS: Final = 8
_LOG_LABELS: Final = 9
_METRICS: Final = 10

_MAX_INT: Final = (1 << 63) - 1
# 9999-12-31T23:59:59.999Z: the last millisecond a YYYY.MM.DD day name can hold.
_MAX_TS: Final = 253_402_300_799_999

_OUTCOMES: Final = frozenset({"success", "failure", "unknown"})
_TRIGGERS: Final = frozenset({"http", "pubsub", "datasource", "timer", "other"})

_Spec = tuple[int, Any]

RESOURCE_FIELDS: Final[dict[str, _Spec]] = {
    "service.name": (_STR, 256),
    "service.version": (_STR, 256),
    "service.environment": (_STR, 256),
    "service.node.name": (_STR, 256),
    "faas.name": (_STR, 256),
    "faas.version": (_STR, 256),
    "faas.id": (_STR, 256),
    "faas.max_memory": (_UINT, _MAX_INT),
    "cloud.provider": (_STR, 32),
    "cloud.region": (_STR, 128),
    "cloud.account.id": (_STR, 128),
    "host.architecture": (_STR, 32),
}

_ERROR_FIELDS: Final[dict[str, _Spec]] = {
    "error.type": (_STR, P.MAX_ERROR_TYPE),
    "error.message": (_STR, P.MAX_ERROR_MESSAGE),
    "error.stack_trace": (_STR, P.MAX_STACK),
    "error.grouping_key": (_STR, 64),
}
_TRACE_FIELDS: Final[dict[str, _Spec]] = {"trace.id": (_HEX, 32), "span.id": (_HEX, 16)}

INV_FIELDS: Final[dict[str, _Spec]] = {
    **RESOURCE_FIELDS,
    "t": (_SKIP, None),
    "faas.execution": (_EXEC, 128),
    "@timestamp": (_UINT, _MAX_TS),
    "event.duration": (_UINT, _MAX_INT),
    "event.outcome": (_ENUM, _OUTCOMES),
    "faas.coldstart": (_BOOL, None),
    "faas.coldstart_duration": (_UINT, _MAX_INT),
    "faas.trigger.type": (_ENUM, _TRIGGERS),
    "faas.mem_usage": (_UINT, _MAX_INT),
    "faas.billed_duration": (_UINT, _MAX_INT),
    "faas.cost.usd": (_NUM, None),
    "faas.cost.gb_seconds": (_NUM, None),
    "faas.cost.price_id": (_STR, 64),
    "faas.attempt": (_UINT, P.MAX_ATTEMPT),
    "faas.metrics_dropped": (_UINT, _MAX_INT),
    "http.response.status_code": (_UINT, 999),
    **_TRACE_FIELDS,
    **_ERROR_FIELDS,
    "labels": (_INV_LABELS, None),
    "metrics": (_METRICS, None),
}
INV_REQUIRED: Final = (
    "faas.execution",
    "@timestamp",
    "event.duration",
    "event.outcome",
    "faas.coldstart",
)

LOG_FIELDS: Final[dict[str, _Spec]] = {
    **RESOURCE_FIELDS,
    "t": (_SKIP, None),
    "@timestamp": (_UINT, _MAX_TS),
    "event.sequence": (_UINT, _MAX_INT),
    "log.level": (_ENUM, P.LEVELS),
    "message": (_STR, P.MAX_MESSAGE),
    "faas.execution": (_EXEC, 128),
    "log.logger": (_STR, P.MAX_LOGGER),
    "faas.attempt": (_UINT, P.MAX_ATTEMPT),
    **_TRACE_FIELDS,
    **_ERROR_FIELDS,
    "labels": (_LOG_LABELS, None),
}
LOG_REQUIRED: Final = ("@timestamp", "event.sequence", "log.level", "message")

START_FIELDS: Final[dict[str, _Spec]] = {
    **RESOURCE_FIELDS,
    "t": (_SKIP, None),
    "faas.execution": (_EXEC, 128),
    "@timestamp": (_UINT, _MAX_TS),
    "faas.timeout": (_UINT, _MAX_INT),
    "faas.coldstart": (_BOOL, None),
    "faas.attempt": (_UINT, P.MAX_ATTEMPT),
    "faas.trigger.type": (_ENUM, _TRIGGERS),
    **_TRACE_FIELDS,
}
START_REQUIRED: Final = ("faas.execution", "@timestamp")
_START_REQUIRED_SET: Final = frozenset(START_REQUIRED)
_INV_REQUIRED_SET: Final = frozenset(INV_REQUIRED)
_LOG_REQUIRED_SET: Final = frozenset(LOG_REQUIRED)

_ENVELOPE_KEYS: Final = frozenset({"v", "src", "seq", "res", "ev"})

_SRC_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_KEY_ID_RE: Final = re.compile(rb"[A-Za-z0-9_.\-]{1,32}")
_SIG_RE: Final = re.compile(rb"[0-9a-f]{64}")
_METRIC_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
_HEX_RE: Final = {
    32: re.compile(r"[0-9a-f]{32}").fullmatch,
    16: re.compile(r"[0-9a-f]{16}").fullmatch,
}
_METRIC_KEYS: Final = frozenset({"name", "kind", "value", "labels", "unit", "count", "sum"})


@dataclass(slots=True)
class FrameResult:
    """What one frame became."""

    rejected: str | None  # frame-level reason (events.FRAME_REASONS) or None
    docs: list[Doc] = field(default_factory=list)  # per event: its doc, then its error doc
    invocations: list[dict[str, Any]] = field(default_factory=list)  # res + inv, with "metrics"
    # (resource, start event without "t"): the resource dict may be shared, never modify it
    starts: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    event_rejections: list[str] = field(default_factory=list)  # one reason per rejected event
    unknown_fields: int = 0
    src: str | None = None
    seq: int | None = None


class _Reject(Exception):  # control flow inside the validator, never escapes
    """Raised inside the validator to reject the current event with a reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _depth_ok(value: Any, budget: int) -> bool:
    """True if ``value`` nests at most ``budget`` levels of objects/arrays (scalars: 0)."""
    tv = type(value)
    if tv is dict:
        return budget > 0 and all(_depth_ok(v, budget - 1) for v in value.values())
    if tv is list:
        return budget > 0 and all(_depth_ok(v, budget - 1) for v in value)
    return True


def _check_metric(m: Any) -> tuple[dict[str, Any], int]:
    """Validate one custom metric object; return it without unknown keys and their count."""
    if type(m) is not dict:
        raise _Reject("wrong_type")
    unknown = 0
    for req in ("name", "kind", "value"):
        if req not in m:
            raise _Reject("missing_field")
    name = m["name"]
    kind = m["kind"]
    value = m["value"]
    if type(name) is not str or type(kind) is not str:
        raise _Reject("wrong_type")
    if _METRIC_NAME_RE.fullmatch(name) is None:
        raise _Reject("too_large" if len(name) > 64 else "bad_value")
    if kind not in P.METRIC_KINDS:
        raise _Reject("bad_value")
    tv = type(value)
    if tv is not int and tv is not float:
        raise _Reject("wrong_type")
    if (tv is float and not math.isfinite(value)) or (kind == "counter" and value < 0):
        raise _Reject("bad_value")
    labels = m.get("labels")
    if labels is not None or "labels" in m:
        if type(labels) is not dict:
            raise _Reject("wrong_type")
        if len(labels) > P.MAX_METRIC_LABELS:
            raise _Reject("too_large")
        for lk, lv in labels.items():
            if _METRIC_NAME_RE.fullmatch(lk) is None:
                raise _Reject("bad_value")
            if type(lv) is not str:
                raise _Reject("wrong_type")
            if len(lv) > P.MAX_METRIC_LABEL_VALUE:
                raise _Reject("too_large")
    if "unit" in m:
        unit = m["unit"]
        if type(unit) is not str:
            raise _Reject("wrong_type")
        if len(unit) > P.MAX_METRIC_UNIT:
            raise _Reject("too_large")
    aggregated = ("count" in m) + ("sum" in m)
    if aggregated:
        _check_histogram_aggregate(m, kind)
    if len(m) > 3 + ("labels" in m) + ("unit" in m) + aggregated:
        extra = [k for k in m if k not in _METRIC_KEYS]
        unknown = len(extra)
        m = {k: v for k, v in m.items() if k in _METRIC_KEYS}
    return m, unknown


def _check_histogram_aggregate(m: dict[str, Any], kind: str) -> None:
    """A histogram object standing for ``count`` observations summing to ``sum``."""
    if kind != "histogram":
        raise _Reject("bad_value")
    count = m.get("count", 1)
    if type(count) is not int:
        raise _Reject("wrong_type")
    if not 1 <= count <= P.MAX_HISTOGRAM_COUNT:
        raise _Reject("bad_value")
    total = m.get("sum", 0)
    tt = type(total)
    if tt is not int and tt is not float:
        raise _Reject("wrong_type")
    if tt is float and not math.isfinite(total):
        raise _Reject("bad_value")


def _check_fields(ev: dict[str, Any], spec: Mapping[str, _Spec]) -> int:
    """Check every known key of ``ev`` in place; remove unknown keys and return their count.

    Raises :class:`_Reject` with the first problem found.
    """
    unknown: list[str] | None = None
    for key, val in ev.items():
        s = spec.get(key)
        if s is None:
            if unknown is None:
                unknown = [key]
            else:
                unknown.append(key)
            continue
        code, lim = s
        tv = type(val)
        # Fast paths first: valid values of the common kinds cost one test each.
        if code == _STR:
            if tv is str and len(val) <= lim:
                continue
            raise _Reject("wrong_type" if tv is not str else "too_large")
        if code == _UINT:
            if tv is int and 0 <= val <= lim:
                continue
            raise _Reject("wrong_type" if tv is not int else "bad_value")
        if code == _ENUM:
            if tv is str and val in lim:
                continue
            raise _Reject("wrong_type" if tv is not str else "bad_value")
        if code == _HEX:
            if tv is str and _HEX_RE[lim](val) is not None:
                continue
            raise _Reject("wrong_type" if tv is not str else "bad_value")
        if code == _EXEC:
            if tv is str and 0 < len(val) <= lim:
                continue
            if tv is not str:
                raise _Reject("wrong_type")
            raise _Reject("too_large" if val else "bad_value")
        if code == _BOOL:
            if tv is bool:
                continue
            raise _Reject("wrong_type")
        if code == _NUM:
            if tv is not int and tv is not float:
                raise _Reject("wrong_type")
            if val < 0 or (tv is float and not math.isfinite(val)):
                raise _Reject("bad_value")
        elif code == _INV_LABELS:
            if tv is not dict:
                raise _Reject("wrong_type")
            if len(val) > P.MAX_INV_LABELS:
                raise _Reject("too_large")
            for lv in val.values():
                if type(lv) is not str:
                    raise _Reject("wrong_type")
                if len(lv) > P.MAX_INV_LABEL_VALUE:
                    raise _Reject("too_large")
        elif code == _LOG_LABELS:
            if tv is not dict:
                raise _Reject("wrong_type")
            if len(val) > P.MAX_LOG_LABELS:
                raise _Reject("too_large")
            for lv in val.values():
                tl = type(lv)
                if (tl is dict or tl is list) and not _depth_ok(lv, P.LOG_LABELS_DEPTH - 1):
                    raise _Reject("too_large")
        elif code == _METRICS:
            if tv is not list:
                raise _Reject("wrong_type")
            if len(val) > P.MAX_METRICS:
                raise _Reject("too_large")
            cleaned = []
            extra = 0
            for m in val:
                cm, n = _check_metric(m)
                cleaned.append(cm)
                extra += n
            if extra:
                ev[key] = cleaned  # same key: safe while iterating
                if unknown is None:
                    unknown = []
                unknown.extend([""] * extra)
    if unknown is None:
        return 0
    for key in unknown:
        if key:
            del ev[key]
    return len(unknown)


class Validator:
    """Turns frames into documents and invocation records, per ``docs/protocol.md``.

    Stateless apart from its configuration, so one instance serves any thread.
    """

    __slots__ = ("_fast", "_keys", "_max_frame", "_require")

    def __init__(
        self,
        *,
        hmac_keys: Mapping[str, str] | None = None,
        require_signature: bool = False,
        max_frame_bytes: int = 1 << 20,
        fast: bool = True,
    ) -> None:
        self._keys: dict[bytes, bytes] = {
            k.encode(): v.encode() for k, v in (hmac_keys or {}).items()
        }
        self._require = require_signature
        self._max_frame = max_frame_bytes
        self._fast: FastDecoder | None = _fast_decoder() if fast else None

    def _unwrap(self, frame: bytes) -> bytes | str:
        """Check size and signature; return the JSON bytes or a frame-level reason."""
        if frame[-1:] == b"\n":  # framing, not part of the JSON (nor of what was signed)
            frame = frame[:-1]
        if len(frame) > self._max_frame:
            return "too_large"
        if frame[:3] != b"s1 ":
            return "unsigned" if self._require else frame
        parts = frame.split(b" ", 3)
        if len(parts) != 4:
            return "bad_signature"
        _, key_id, sig, body = parts
        if _KEY_ID_RE.fullmatch(key_id) is None or _SIG_RE.fullmatch(sig) is None:
            return "bad_signature"
        secret = self._keys.get(key_id)
        if secret is None:
            return "unknown_key"
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, sig):
            return "bad_signature"
        return body

    def validate(self, frame: bytes) -> FrameResult:
        """Validate one frame (without its transport framing, a trailing LF allowed)."""
        body = self._unwrap(frame)
        if type(body) is str:
            return FrameResult(body)
        if self._fast is not None:
            envelope = self._fast.decode(body)  # type: ignore[arg-type]  # bytes here
            if envelope is not None:
                return self._accept(envelope, self._fast, body)  # type: ignore[arg-type]
        return self.validate_reference(body)  # type: ignore[arg-type]

    def validate_reference(self, body: bytes) -> FrameResult:
        """The reference path on an unwrapped body: decides every rejection and its reason."""
        try:
            env = orjson.loads(body)
        except orjson.JSONDecodeError:
            return FrameResult("bad_json")
        if type(env) is not dict:
            return FrameResult("bad_json")
        v = env.get("v")
        if type(v) is int and v != 1:
            return FrameResult("bad_version")
        src = env.get("src")
        seq = env.get("seq")
        evs = env.get("ev")
        res = env.get("res")
        if (
            type(v) is not int
            or type(src) is not str
            or _SRC_RE.fullmatch(src) is None
            or type(seq) is not int
            or seq < 1
            or seq > _MAX_INT
            or type(evs) is not list
            or not 0 < len(evs) <= P.MAX_EVENTS
            or not _ENVELOPE_KEYS.issuperset(env)
        ):
            return FrameResult("bad_envelope")
        result = FrameResult(None, src=src, seq=seq)
        if res is None and "res" not in env:
            res = {}
        elif type(res) is not dict:
            result.rejected = "bad_envelope"
            return result
        elif res:
            try:
                result.unknown_fields += _check_fields(res, RESOURCE_FIELDS)
            except _Reject:
                result.rejected = "bad_envelope"
                return result
        docs = result.docs
        res_json: bytes | None = None  # the resource's members, serialized once per frame
        for ev in evs:
            try:
                if type(ev) is not dict:
                    raise _Reject("wrong_type")
                t = ev.get("t")
                if t == "inv":
                    if not ev.keys() >= _INV_REQUIRED_SET:
                        raise _Reject("missing_field")
                    result.unknown_fields += _check_fields(ev, INV_FIELDS)
                    result.invocations.append(invocation_docs(res, ev, docs))
                elif t == "log":
                    if not ev.keys() >= _LOG_REQUIRED_SET:
                        raise _Reject("missing_field")
                    result.unknown_fields += _check_fields(ev, LOG_FIELDS)
                    if res_json is None:
                        res_json = dumps_members(res)
                    log_docs(res, res_json, ev, src, docs)
                elif t == "start":
                    if not ev.keys() >= _START_REQUIRED_SET:
                        raise _Reject("missing_field")
                    result.unknown_fields += _check_fields(ev, START_FIELDS)
                    del ev["t"]
                    result.starts.append((res, ev))
                elif t is None and "t" not in ev:
                    raise _Reject("missing_field")
                else:
                    raise _Reject("unknown_type")
            except _Reject as rej:
                result.event_rejections.append(rej.reason)
        mark_frame(docs, src, seq)
        return result

    def _accept(self, env: Any, fast: FastDecoder, body: bytes) -> FrameResult:
        """Documents of a frame the fast path found valid (same output as the reference)."""
        src: str = env.src
        result = FrameResult(None, src=src, seq=env.seq)
        resource = fast.resource(env.res)
        if resource is None:
            return self.validate_reference(body)
        res, res_json = resource
        head = b"{" + res_json
        docs = result.docs
        log_type: Any = fast.log_type
        encode = fast.encode
        overrides = fast.overrides if res else None
        days = DAY_CACHE
        events: list[Any] = env.ev
        start_type: Any = fast.start_type
        for ev in events:
            if type(ev) is not log_type:
                if type(ev) is start_type:
                    start = to_dict(ev)
                    del start["t"]
                    result.starts.append((res, start))
                else:
                    result.invocations.append(invocation_docs(res, to_dict(ev), docs))
                continue
            if overrides is not None and overrides(ev):
                log_docs(res, res_json, to_dict(ev), src, docs)
                continue
            exec_id = ev.f_faas_execution
            attempt = ev.f_faas_attempt
            if exec_id is UNSET:
                doc_id = f"{src}-{ev.f_event_sequence}"
            elif attempt is UNSET or attempt <= 1:
                doc_id = f"{exec_id}-{ev.f_event_sequence}"
            else:
                doc_id = log_doc_id(exec_id, src, ev.f_event_sequence, attempt)
            ts = ev.f__timestamp
            day = days.get(ts // MS_PER_DAY) or day_of(ts)
            # encode() gives '{"t":"log",' then the members: keep the members only.
            source = head + encode(ev)[LOG_HEAD:-1] + LOG_TAIL
            docs.append(Doc("logs", doc_id, day, source))
            if ev.f_error_type is not UNSET and ev.f_log_level in P.ERROR_LEVELS:
                docs.append(Doc("errors", doc_id, day, error_source(res, to_dict(ev))))
        mark_frame(docs, src, env.seq)
        return result


@functools.cache
def _fast_decoder() -> FastDecoder:
    """The typed decoder for the rules above (built once per process)."""
    return FastDecoder(
        kinds={
            "str": _STR,
            "uint": _UINT,
            "num": _NUM,
            "bool": _BOOL,
            "enum": _ENUM,
            "hex": _HEX,
            "exec": _EXEC,
            "inv_labels": _INV_LABELS,
            "log_labels": _LOG_LABELS,
            "metrics": _METRICS,
        },
        resource=RESOURCE_FIELDS,
        inv=INV_FIELDS,
        inv_required=INV_REQUIRED,
        log=LOG_FIELDS,
        log_required=LOG_REQUIRED,
        start=START_FIELDS,
        start_required=START_REQUIRED,
        limits={
            "events": P.MAX_EVENTS,
            "inv_labels": P.MAX_INV_LABELS,
            "inv_label_value": P.MAX_INV_LABEL_VALUE,
            "log_labels": P.MAX_LOG_LABELS,
            "log_labels_depth": P.LOG_LABELS_DEPTH,
            "metrics": P.MAX_METRICS,
            "metric_labels": P.MAX_METRIC_LABELS,
            "metric_label_value": P.MAX_METRIC_LABEL_VALUE,
            "metric_unit": P.MAX_METRIC_UNIT,
            "histogram_count": P.MAX_HISTOGRAM_COUNT,
        },
    )
