"""Pure helpers for the bulk API: the request body, and what each item's answer means.

No I/O here: :mod:`ingest.sink_es` sends the body and acts on the outcome.
Sources are already serialized (:class:`~ingest.events.Doc`), so the body is
built by concatenating bytes; only the small action line is encoded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

import orjson

from faaslens.ingest.events import BulkOp, Doc, IndexKind

Disposition = Literal["indexed", "duplicate", "retry", "dead"]

# Bounded values of the `reason` label of faaslens_docs_failed_total (dead letters);
# "retries_exhausted": refused (403, 5xx) on every attempt until its deadline.
DEAD_LETTER_REASONS: tuple[str, ...] = ("mapping", "validation", "other", "retries_exhausted")
# Bounded values of the `reason` label of faaslens_bulk_retries_total.
RETRY_REASONS: tuple[str, ...] = (
    "too_many_requests",
    "server_error",
    "authentication",  # 401: wrong or expired credentials
    "forbidden",  # 403: a missing privilege, or a cluster block
    "connection",
    "timeout",
)

_MAPPING_ERRORS = frozenset(
    {
        "mapper_parsing_exception",
        "document_parsing_exception",
        "strict_dynamic_mapping_exception",
        "mapper_exception",
        "illegal_state_exception",  # e.g. "Can't get text on a START_OBJECT" for a wrong shape
    }
)
_VALIDATION_ERRORS = frozenset(
    {
        "action_request_validation_exception",
        "illegal_argument_exception",
        "invalid_index_name_exception",
        "index_not_found_exception",
        "x_content_parse_exception",
        "parse_exception",
    }
)


def _action_head(index: str, op: BulkOp = "create") -> bytes:
    """The action line up to its id: the same for every document of an index and op."""
    return b'{"' + op.encode() + b'":{"_index":' + orjson.dumps(index) + b',"_id":'


def action_line(index: str, doc_id: str, op: BulkOp = "create") -> bytes:
    """``{"create":{"_index":...,"_id":...}}`` + newline. ``create`` makes a retry answer 409;
    ``index`` (a record replacing an unfinished document) overwrites, so a retry is harmless."""
    return _action_head(index, op) + encode_basestring_ascii(doc_id).encode() + b"}}\n"


def build_body(docs: Sequence[Doc], prefix: str) -> bytes:
    """The NDJSON bulk body for ``docs``: one action line and one source line each."""
    parts: list[bytes] = []
    append = parts.append
    heads: dict[tuple[str, str, str], bytes] = {}  # (kind, day, op) -> _action_head
    json_string = encode_basestring_ascii  # C; for a short str cheaper than orjson.dumps
    for doc in docs:
        kind, doc_id, day, source, op = doc
        head = heads.get((kind, day, op))
        if head is None:
            head = heads[(kind, day, op)] = _action_head(f"{prefix}-{kind}-{day}", op)
        # action_line()'s bytes, appended in parts.
        append(head)
        append(json_string(doc_id).encode())
        append(b"}}\n")
        append(source)
        append(b"\n")
    return b"".join(parts)


def classify_status(status: int) -> Disposition:
    """What to do with one bulk item, from its HTTP status."""
    if 200 <= status < 300:
        return "indexed"
    if status == 409:  # op_type=create on an id already indexed: an earlier attempt won
        return "duplicate"
    # 401/403: credentials or a cluster block (e.g. disk flood stage); 408: timeout.
    # Both are fixed on the server side, so the documents wait instead of being dropped.
    if status in (401, 403, 408, 429) or status >= 500:
        return "retry"
    return "dead"


def retry_reason(status: int) -> str:
    """The bounded retry reason for a retryable HTTP status."""
    if status == 429:
        return "too_many_requests"
    if status == 401:
        return "authentication"
    if status == 403:
        return "forbidden"
    if status == 408:
        return "timeout"
    return "server_error"


def dead_letter_reason(error_type: str) -> str:
    """Bound an Elasticsearch error type to ``mapping`` / ``validation`` / ``other``."""
    if error_type in _MAPPING_ERRORS:
        return "mapping"
    if error_type in _VALIDATION_ERRORS:
        return "validation"
    return "other"


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """A document Elasticsearch refused for good, with its reason."""

    doc: Doc
    status: int
    error_type: str
    error_reason: str
    exhausted: bool = False  # refused on every attempt until its deadline

    @property
    def reason(self) -> str:
        """Bounded label value (``mapping`` / ``validation`` / ``other`` /
        ``retries_exhausted``)."""
        return "retries_exhausted" if self.exhausted else dead_letter_reason(self.error_type)


@dataclass(slots=True)
class BulkOutcome:
    """Every document of a bulk request, sorted by what happens to it next."""

    indexed: Counter[IndexKind] = field(default_factory=Counter)
    duplicates: int = 0
    retry: list[Doc] = field(default_factory=list)
    retry_reasons: Counter[str] = field(default_factory=Counter)
    # Why each retried document was refused, in the order of ``retry``.
    retry_failures: list[ItemFailure] = field(default_factory=list)
    dead: list[ItemFailure] = field(default_factory=list)

    def merge(self, other: BulkOutcome) -> None:
        """Add the documents of another request (a part of the same batch)."""
        self.indexed.update(other.indexed)
        self.duplicates += other.duplicates
        self.retry += other.retry
        self.retry_reasons.update(other.retry_reasons)
        self.retry_failures += other.retry_failures
        self.dead += other.dead


class BulkResponseError(ValueError):
    """The response does not line up with the request (never expected from a real server)."""


def _error_fields(error: Any) -> tuple[str, str]:
    if isinstance(error, Mapping):
        error_type = str(error.get("type", "unknown"))
        reason = str(error.get("reason", ""))
        caused_by = error.get("caused_by")
        if isinstance(caused_by, Mapping) and caused_by.get("reason"):
            reason = f"{reason}: {caused_by.get('type', '')}: {caused_by['reason']}"
        return error_type, reason
    return "unknown", "" if error is None else str(error)


def classify(response: Mapping[str, Any], docs: Sequence[Doc]) -> BulkOutcome:
    """Sort the documents of a request by the bulk response's items (same order as sent)."""
    outcome = BulkOutcome()
    items = response.get("items")
    if not isinstance(items, list) or len(items) != len(docs):
        got = len(items) if isinstance(items, list) else None
        raise BulkResponseError(f"bulk response has {got} items for {len(docs)} documents")
    if response.get("errors") is False:
        outcome.indexed.update(doc.kind for doc in docs)
        return outcome
    for doc, item in zip(docs, items, strict=True):
        # Each item is {"<op>": {...}}: "create" or "index"; read whatever key it has.
        result: Any = next(iter(item.values()), None) if isinstance(item, Mapping) else None
        if not isinstance(result, Mapping) or not isinstance(result.get("status"), int):
            raise BulkResponseError(f"bulk item without a status: {item!r}")
        status: int = result["status"]
        disposition = classify_status(status)
        if disposition == "indexed":
            outcome.indexed[doc.kind] += 1
        elif disposition == "duplicate":
            outcome.duplicates += 1
        elif disposition == "retry":
            outcome.retry.append(doc)
            outcome.retry_reasons[retry_reason(status)] += 1
            error_type, reason = _error_fields(result.get("error"))
            outcome.retry_failures.append(ItemFailure(doc, status, error_type, reason))
        else:
            error_type, reason = _error_fields(result.get("error"))
            outcome.dead.append(ItemFailure(doc, status, error_type, reason))
    return outcome
