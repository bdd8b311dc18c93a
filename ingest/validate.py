"""Frame validation: the protocol's rules, bytes in, accepted events out.

Pure and synchronous (no I/O, no metrics) so it can run on any thread and be
checked against the test vectors byte for byte. The rules are those of
``docs/protocol.md``; every rejection carries one of the bounded reasons of
:mod:`faaslens.ingest.events`. What an accepted event is stored as is decided
by :mod:`faaslens.ingest.documents`.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from faaslens import protocol as P
from faaslens.ingest.documents import (
    DAY_CACHE,
    LOG_HEAD,
    LOG_TAIL,
    MS_PER_DAY,
    SHORT_ID,
    bounded_id,
    day_of,
    error_source,
    invocation_docs,
    log_doc_id,
    log_docs,
    mark_frame,
)
from faaslens.ingest.events import Doc
from faaslens.ingest.signature import Verifier
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
_METRIC_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
_HEX_RE: Final = {
    32: re.compile(r"[0-9a-f]{32}").fullmatch,
    16: re.compile(r"[0-9a-f]{16}").fullmatch,
}
_METRIC_KEYS: Final = frozenset({"name", "kind", "value", "labels", "unit", "count", "sum"})


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Duplicate(Exception):
    """A JSON object with a key twice (raised by the pairs hook, never escapes)."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Duplicate
    return d


def has_duplicate_keys(body: bytes) -> bool:
    """True if some object of the JSON text ``body`` holds a key twice.

    JSON parsers keep the last value of a repeated key; the protocol refuses
    such frames (``duplicate_key``), since which value counts would depend on
    the reader. Raises ValueError or RecursionError for text that is not JSON
    or nested past the stdlib parser's depth.
    """
    try:
        json.loads(body, object_pairs_hook=_unique_pairs)
    except _Duplicate:
        return True
    return False


# The shortest member a repeated key adds to a frame: '"k":1,'.
_DUPLICATE_MIN: Final = 6


def keys_in(text: bytes) -> int | None:
    """How many object keys the JSON ``text`` holds, when that is certain from its bytes:
    each key ends with ``":``, and no string can hold that pair unless it contains an
    escaped quote or a ``\\u`` escape (None then)."""
    # One byte is found with memchr; the two-byte searches only run when it is there.
    if b"\\" in text and (b"\\u" in text or b'\\":' in text):
        return None
    return text.count(b'":')


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
    dropped: list[str] = field(default_factory=list)  # "<part>:<reason>" of kept events
    src: str | None = None
    seq: int | None = None


class _Reject(Exception):  # control flow inside the validator, never escapes
    """Raised inside the validator to reject the current event with a reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


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


def _key_problem(key: str) -> str | None:
    if len(key) > P.MAX_LABEL_KEY:
        return "too_large"
    if "\x00" in key:
        return "bad_value"
    return None


def _nested_problem(value: Any, budget: int) -> str | None:
    """Why a log label's value cannot be stored (too deep, a bad key inside), or None."""
    tv = type(value)
    if tv is dict:
        if budget <= 0:
            return "too_large"
        for k, v in value.items():
            problem = _key_problem(k) or _nested_problem(v, budget - 1)
            if problem is not None:
                return problem
    elif tv is list:
        if budget <= 0:
            return "too_large"
        for v in value:
            problem = _nested_problem(v, budget - 1)
            if problem is not None:
                return problem
    return None


def _label_problem(key: str, value: Any, code: int) -> str | None:
    """Why one label cannot be kept, or None."""
    problem = _key_problem(key)
    if problem is not None:
        return problem
    if code == _INV_LABELS:
        if type(value) is not str:
            return "wrong_type"
        return "too_large" if len(value) > P.MAX_INV_LABEL_VALUE else None
    return _nested_problem(value, P.LOG_LABELS_DEPTH - 1)


def _clean_labels(labels: Any, code: int, dropped: list[str]) -> dict[str, Any] | None:
    """The labels that can be kept (None: the field goes), each dropped one noted."""
    if type(labels) is not dict:
        dropped.append("labels:wrong_type")
        return None
    cap = P.MAX_INV_LABELS if code == _INV_LABELS else P.MAX_LOG_LABELS
    kept: dict[str, Any] = {}
    for k, v in labels.items():
        problem = _label_problem(k, v, code)
        if problem is None and len(kept) >= cap:
            problem = "too_large"
        if problem is None:
            kept[k] = v
        else:
            dropped.append("labels:" + problem)
    return kept


def _clean_metrics(metrics: Any, dropped: list[str]) -> tuple[list[dict[str, Any]] | None, int]:
    """The metrics that can be kept (None: the field goes) and their unknown keys."""
    if type(metrics) is not list:
        dropped.append("metrics:wrong_type")
        return None, 0
    kept: list[dict[str, Any]] = []
    unknown = 0
    for m in metrics:
        if len(kept) >= P.MAX_METRICS:
            dropped.append("metrics:too_large")
            continue
        try:
            cm, n = _check_metric(m)
        except _Reject as rej:
            dropped.append("metrics:" + rej.reason)
            continue
        kept.append(cm)
        unknown += n
    return kept, unknown


def _check_fields(
    ev: dict[str, Any], spec: Mapping[str, _Spec], dropped: list[str] | None = None
) -> int:
    """Check every known key of ``ev`` in place; remove unknown keys and return their count.

    A label or custom metric that cannot be kept is removed and noted in ``dropped``
    as ``"<part>:<reason>"`` (the rest of the event is kept). Raises :class:`_Reject`
    with the first problem found in any other field.
    """
    unknown: list[str] | None = None
    gone: list[str] = []  # known keys whose whole value was dropped
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
            continue
        if dropped is None:
            dropped = []
        if code in (_INV_LABELS, _LOG_LABELS):
            before = len(dropped)
            labels = _clean_labels(val, code, dropped)
            if labels is None:
                gone.append(key)
            elif len(dropped) > before:
                ev[key] = labels  # same key: safe while iterating
        elif code == _METRICS:
            before = len(dropped)
            metrics, extra = _clean_metrics(val, dropped)
            if metrics is None:
                gone.append(key)
            elif extra or len(dropped) > before:
                ev[key] = metrics
            if extra:
                if unknown is None:
                    unknown = []
                unknown.extend([""] * extra)
    for key in gone:
        del ev[key]
    if unknown is None:
        return 0
    for key in unknown:
        if key:
            del ev[key]
    return len(unknown)


# Where an event says which of its parts were dropped (labels, custom metrics).
DROPPED_KEY: Final = "faaslens.dropped"


def _mark_dropped(ev: dict[str, Any], dropped: list[str], result: FrameResult) -> None:
    if dropped:
        result.dropped += dropped
        ev[DROPPED_KEY] = sorted(set(dropped))


class Validator:
    """Turns frames into documents and invocation records, per ``docs/protocol.md``.

    Stateless apart from its configuration, so one instance serves any thread.
    """

    __slots__ = ("_clock_ms", "_fast", "_max_age_ms", "_max_ahead_ms", "_max_frame", "_verifier")

    def __init__(
        self,
        *,
        hmac_keys: Mapping[str, str] | None = None,
        require_signature: bool = False,
        max_frame_bytes: int = 1 << 20,
        signature_max_age_s: float = 60.0,
        max_age_s: float | None = None,
        max_ahead_s: float | None = None,
        clock_ms: Callable[[], int] | None = None,
        fast: bool = True,
    ) -> None:
        """``max_age_s`` / ``max_ahead_s``: events whose ``@timestamp`` lies further in
        the past / future than that from ``clock_ms()`` (epoch ms, default the wall
        clock) are rejected as ``bad_timestamp`` (None: no bound)."""
        self._clock_ms = clock_ms or _wall_ms
        self._max_age_ms = None if max_age_s is None else int(max_age_s * 1000)
        self._max_ahead_ms = None if max_ahead_s is None else int(max_ahead_s * 1000)
        self._verifier = Verifier(
            hmac_keys,
            require=require_signature,
            max_age_s=signature_max_age_s,
            clock_ms=self._clock_ms,
        )
        self._max_frame = max_frame_bytes
        self._fast: FastDecoder | None = _fast_decoder() if fast else None

    def _unwrap(self, frame: bytes) -> bytes | str:
        """Check size and signature; return the JSON bytes or a frame-level reason."""
        if frame[-1:] == b"\n":  # framing, not part of the JSON (nor of what was signed)
            frame = frame[:-1]
        if len(frame) > self._max_frame:
            return "too_large"
        return self._verifier.unwrap(frame)

    def validate(self, frame: bytes) -> FrameResult:
        """Validate one frame (without its transport framing, a trailing LF allowed)."""
        body = self._unwrap(frame)
        if type(body) is str:
            return FrameResult(body)
        if self._fast is not None:
            decoded = self._fast.decode(body)  # type: ignore[arg-type]  # bytes here
            if decoded is not None:
                return self._accept(*decoded, self._fast, body)  # type: ignore[arg-type]
        return self.validate_reference(body)  # type: ignore[arg-type]

    def validate_reference(self, body: bytes) -> FrameResult:
        """The reference path on an unwrapped body: decides every rejection and its reason."""
        try:
            env = orjson.loads(body)
            if type(env) is not dict:
                return FrameResult("bad_json")
            if has_duplicate_keys(body):
                return FrameResult("duplicate_key")
        except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
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
        lo, hi = self._window()
        for ev in evs:
            try:
                if type(ev) is not dict:
                    raise _Reject("wrong_type")
                t = ev.get("t")
                if t == "inv":
                    if not ev.keys() >= _INV_REQUIRED_SET:
                        raise _Reject("missing_field")
                    dropped: list[str] = []
                    result.unknown_fields += _check_fields(ev, INV_FIELDS, dropped)
                    if not lo <= ev["@timestamp"] <= hi:
                        raise _Reject("bad_timestamp")
                    _mark_dropped(ev, dropped, result)
                    result.invocations.append(invocation_docs(res, ev, docs))
                elif t == "log":
                    if not ev.keys() >= _LOG_REQUIRED_SET:
                        raise _Reject("missing_field")
                    dropped = []
                    result.unknown_fields += _check_fields(ev, LOG_FIELDS, dropped)
                    if not lo <= ev["@timestamp"] <= hi:
                        raise _Reject("bad_timestamp")
                    _mark_dropped(ev, dropped, result)
                    if res_json is None:
                        res_json = dumps_members(res)
                    log_docs(res, res_json, ev, src, docs)
                elif t == "start":
                    if not ev.keys() >= _START_REQUIRED_SET:
                        raise _Reject("missing_field")
                    result.unknown_fields += _check_fields(ev, START_FIELDS)
                    if not lo <= ev["@timestamp"] <= hi:
                        raise _Reject("bad_timestamp")
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

    def _accept(self, env: Any, slack: int, fast: FastDecoder, body: bytes) -> FrameResult:
        """Documents of a frame the fast path found valid (same output as the reference).

        A key given twice leaves no trace in the decoded structs (the last value wins),
        so the frame is measured against its re-encoding: the same length (less than
        a repeated member's worth of number ``slack``) proves every key was decoded;
        otherwise the keys are counted (:func:`keys_in`), and when even that cannot
        tell, the reference path decides.
        """
        src: str = env.src
        seq: int = env.seq
        result = FrameResult(None, src=src, seq=seq)
        raw_res = env.res
        resource = fast.resource(raw_res)
        if resource is None:
            return self.validate_reference(body)
        res, res_json = resource
        events: list[Any] = env.ev
        # '{"v":1,"src":"' src '","seq":' seq ',"ev":[' events joined by ',' ']}'
        canonical = 30 + len(src) + len(str(seq)) + len(events)
        if raw_res is not UNSET:
            canonical += 7 + len(raw_res)  # ',"res":' and the object as sent...
            if len(raw_res) != (len(res_json) + 1 if res else 2):
                slack = _DUPLICATE_MIN  # ...which is not as short as it could be: count
        encodings: list[bytes] = []
        head = b"{" + res_json
        docs = result.docs
        log_type: Any = fast.log_type
        encode = fast.encode
        overrides = fast.overrides if res else None
        days = DAY_CACHE
        lo, hi = self._window()
        start_type: Any = fast.start_type
        for ev in events:
            ts = ev.f__timestamp
            if not lo <= ts <= hi:
                return self.validate_reference(body)  # which rejects that event
            encoded = encode(ev)
            canonical += len(encoded)
            encodings.append(encoded)
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
            if len(doc_id) > SHORT_ID:
                doc_id = bounded_id(doc_id)
            day = days.get(ts // MS_PER_DAY) or day_of(ts)
            # encode() gives '{"t":"log",' then the members: keep the members only.
            source = head + encoded[LOG_HEAD:-1] + LOG_TAIL
            docs.append(Doc("logs", doc_id, day, source))
            if ev.f_error_type is not UNSET and ev.f_log_level in P.ERROR_LEVELS:
                docs.append(Doc("errors", doc_id, day, error_source(res, to_dict(ev))))
        if len(body) != canonical or slack >= _DUPLICATE_MIN:
            text_keys = keys_in(body)
            decoded = 4 + (raw_res is not UNSET) + len(res)  # v, src, seq, ev, res
            decoded += sum(e.count(b'":') for e in encodings)
            if text_keys != decoded:
                return self.validate_reference(body)
        mark_frame(docs, src, seq)
        return result

    def _window(self) -> tuple[int, int]:
        """The accepted ``@timestamp`` range now, epoch ms (inclusive)."""
        if self._max_age_ms is None and self._max_ahead_ms is None:
            return 0, _MAX_TS
        now = self._clock_ms()
        lo = 0 if self._max_age_ms is None else now - self._max_age_ms
        hi = _MAX_TS if self._max_ahead_ms is None else now + self._max_ahead_ms
        return lo, hi


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
