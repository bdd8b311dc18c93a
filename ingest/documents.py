"""Shaping Elasticsearch documents from validated events.

Validation (:mod:`faaslens.ingest.validate`) decides what the protocol accepts;
this module decides what is stored: the ECS ``event.*`` fields the worker adds
(``event.dataset``, ``event.kind``, ``event.start``, ``event.end``), the
document ids, the daily index each document goes to, the error document
projected from an invocation or log line that carries an error, and the
*unfinished* invocation document made from a start event whose record never
came (:mod:`faaslens.ingest.settle` decides when).

Sources leave here serialized (:class:`~faaslens.ingest.events.Doc`), so
batching and the bulk body never touch the JSON again.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from faaslens.ingest.events import Doc
from faaslens.protocol import ERROR_LEVELS, RESOURCE_KEYS

MS_PER_DAY: Final = 86_400_000

# A log event serialized by the typed decoder starts with '{"t":"log",'; its members
# follow. The stored document is the resource members, those members, then this tail.
LOG_HEAD: Final = len(b'{"t":"log",')
LOG_TAIL: Final = b',"event.dataset":"faas.log","event.kind":"event"}'

# The keys an error document keeps: the resource fields (from the resource block or
# an event that overrides them) and these of the event.
ERROR_DOC_EVENT_FIELDS: Final = frozenset(
    {
        "@timestamp",
        "faas.execution",
        "faas.coldstart",
        "event.outcome",
        "log.level",
        "log.logger",
        "message",
        "trace.id",
        "span.id",
        "labels",
        "error.type",
        "error.message",
        "error.stack_trace",
        "error.grouping_key",
    }
)
ERROR_DOC_FIELDS: Final = ERROR_DOC_EVENT_FIELDS | RESOURCE_KEYS

# Day number -> "YYYY.MM.DD"; the validator's hot loop reads it before calling day_of.
DAY_CACHE: dict[int, str] = {}


def day_of(ts_ms: int) -> str:
    """UTC day of an epoch-milliseconds timestamp as ``YYYY.MM.DD`` (cached per day)."""
    n = ts_ms // MS_PER_DAY
    day = DAY_CACHE.get(n)
    if day is None:
        if len(DAY_CACHE) > 4096:  # a flood of distinct days must not grow the cache forever
            DAY_CACHE.clear()
        day = datetime.fromtimestamp(n * 86_400, UTC).strftime("%Y.%m.%d")
        DAY_CACHE[n] = day
    return day


# Elasticsearch refuses an _id over 512 bytes (UTF-8), failing the whole bulk request.
ID_MAX_BYTES: Final = 512
# An id of at most this many characters fits whatever they are (4 bytes each at most).
SHORT_ID: Final = ID_MAX_BYTES // 4
_HASHED_HEAD: Final = 200  # bytes of the original id kept in front of its hash


def bounded_id(doc_id: str) -> str:
    """``doc_id`` if Elasticsearch takes it, else its first bytes and a hash of it all:
    ``<head>~<sha256 hex>``, at most 266 bytes, the same for the same id (so a
    retry still answers 409)."""
    if len(doc_id) <= SHORT_ID:
        return doc_id
    raw = doc_id.encode("utf-8", "surrogatepass")
    if len(raw) <= ID_MAX_BYTES:
        return doc_id
    head = raw[:_HASHED_HEAD].decode("utf-8", "ignore")  # never cut a character in two
    return f"{head}~{hashlib.sha256(raw).hexdigest()}"


def attempt_id(exec_id: str, attempt: int | None) -> str:
    """An invocation's document id: its id, then ``~<attempt>`` for an attempt after
    the first (platforms redeliver with the same id: each attempt is its own record)."""
    return exec_id if attempt is None or attempt <= 1 else f"{exec_id}~{attempt}"


def log_doc_id(exec_id: str | None, src: str, seq: int, attempt: int | None = None) -> str:
    """A log line's id: its invocation attempt's id (else its sender's) and its sequence
    number, bounded in bytes (:func:`bounded_id`)."""
    owner = attempt_id(exec_id, attempt) if exec_id is not None else src
    doc_id = f"{owner}-{seq}"
    return bounded_id(doc_id) if len(doc_id) > SHORT_ID else doc_id


# The value of event.reason on every unfinished invocation document (bounded).
UNFINISHED_REASON: Final = "no invocation record received within its timeout plus grace period"


def unfinished_doc(exec_id: str, res: dict[str, Any], start: dict[str, Any]) -> Doc:
    """The unfinished invocation document of a start event (docs/protocol.md, "Settling
    started invocations"): under the record's id and day, so the record can replace it."""
    doc = res.copy()
    doc.update(start)
    doc["event.dataset"] = "faas.invocation"
    doc["event.kind"] = "event"
    doc["event.outcome"] = "unknown"
    doc["event.reason"] = UNFINISHED_REASON
    ts: int = doc["@timestamp"]
    doc["event.start"] = ts
    return Doc("invocations", exec_id, day_of(ts), orjson.dumps(doc))


def error_source(res: dict[str, Any], ev: dict[str, Any]) -> bytes:
    """The error document's source: the resource, then the event's error-document keys
    (an event key that overrides a resource key wins, as in the main document)."""
    doc = res.copy()
    for key, value in ev.items():
        if key in ERROR_DOC_FIELDS:
            doc[key] = value
    doc["event.dataset"] = "faas.error"
    doc["event.kind"] = "event"
    return orjson.dumps(doc)


def invocation_docs(res: dict[str, Any], ev: dict[str, Any], docs: list[Doc]) -> dict[str, Any]:
    """Append the invocation document (and its error document) of a validated ``inv``
    event; return the merged record (resource + event, with ``metrics``) for the
    aggregates."""
    merged = res.copy()
    merged.update(ev)
    del merged["t"]
    metrics = merged.pop("metrics", None)
    ts: int = merged["@timestamp"]
    exec_id = attempt_id(merged["faas.execution"], merged.get("faas.attempt"))
    if len(exec_id) > SHORT_ID:
        exec_id = bounded_id(exec_id)
    day = day_of(ts)
    merged["event.dataset"] = "faas.invocation"
    merged["event.kind"] = "event"
    merged["event.start"] = ts
    merged["event.end"] = ts + merged["event.duration"] // 1_000_000
    docs.append(Doc("invocations", exec_id, day, orjson.dumps(merged)))
    if "error.type" in merged:
        event = {k: v for k, v in ev.items() if k != "metrics"}
        docs.append(Doc("errors", exec_id, day, error_source(res, event)))
    if metrics is not None:
        merged["metrics"] = metrics
    return merged


def log_docs(
    res: dict[str, Any], res_json: bytes, ev: dict[str, Any], src: str, docs: list[Doc]
) -> None:
    """Append the log document (and its error document) of a validated ``log`` event.

    ``res_json`` is the resource's members serialized (no braces), spliced in
    front of the event's so the merged dict is never built in the common case.
    """
    del ev["t"]
    ts: int = ev["@timestamp"]
    doc_id = log_doc_id(ev.get("faas.execution"), src, ev["event.sequence"], ev.get("faas.attempt"))
    day = day_of(ts)
    if res_json and not res.keys().isdisjoint(ev):
        # An event field overrides the resource's: merge (the rare, slower path).
        merged = res.copy()
        merged.update(ev)
        merged["event.dataset"] = "faas.log"
        merged["event.kind"] = "event"
        source = orjson.dumps(merged)
    else:
        source = b"{" + res_json + orjson.dumps(ev)[1:-1] + LOG_TAIL
    docs.append(Doc("logs", doc_id, day, source))
    if "error.type" in ev and ev["log.level"] in ERROR_LEVELS:
        docs.append(Doc("errors", doc_id, day, error_source(res, ev)))


def mark_frame(docs: list[Doc], src: str, seq: int) -> None:
    """Put the frame's ``src`` and ``seq`` on its first document (an invocation or a log
    line, never an error document): the loss ledger counts stored frames from them
    (``faaslens query loss``). One document per frame, so a count of documents is a
    count of frames. ``src`` matched ``[A-Za-z0-9_.-]``: nothing to escape.
    """
    if docs:
        first = docs[0]
        tail = b',"faas.frame.src":"%s","faas.frame.seq":%d}' % (src.encode(), seq)
        docs[0] = Doc(first.kind, first.doc_id, first.day, first.source[:-1] + tail)
