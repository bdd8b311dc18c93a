"""Typed events shared by the pipeline stages.

Validation turns frames into :class:`Doc` objects whose source is already
serialized, so batching and the bulk body never touch the JSON again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple, Protocol

# The typed form of faaslens.protocol.INDEX_KINDS (a test keeps the two equal).
IndexKind = Literal["invocations", "logs", "errors"]
# Bulk operation: "create" (a resend answers 409: nothing is indexed twice), or "index"
# for a record that replaces the worker's own "unfinished" document of the same id.
BulkOp = Literal["create", "index"]

# Bounded rejection reasons: these are the only values of the `reason` label.
FRAME_REASONS: tuple[str, ...] = (
    "too_large",
    "bad_signature",
    "unknown_key",
    "unsigned",
    "bad_json",
    "bad_envelope",
    "bad_version",
    "truncated",  # a TCP connection ended in the middle of a frame
    "stale",  # signed too long ago (or too far ahead): a replay, or a clock far off
    "duplicate_key",  # an object holds a key twice: which value counts is ambiguous
)
EVENT_REASONS: tuple[str, ...] = (
    "unknown_type",
    "missing_field",
    "wrong_type",
    "bad_value",
    "too_large",
    "bad_timestamp",  # @timestamp outside the accepted window (max_age_s / max_ahead_s)
)


class Doc(NamedTuple):
    """One Elasticsearch document ready for the bulk API.

    A named tuple, not a frozen dataclass: the validator makes several per frame
    and a tuple is built ~10x faster.
    """

    kind: IndexKind
    doc_id: str
    day: str  # UTC day of @timestamp, "YYYY.MM.DD"
    source: bytes  # orjson-serialized _source
    op: BulkOp = "create"

    def index_name(self, prefix: str) -> str:
        """The daily index this document belongs to."""
        return f"{prefix}-{self.kind}-{self.day}"


class Sink(Protocol):
    """Where batches of documents go.

    ``write`` returns only when every document of the batch is accounted
    for: indexed (2xx or 409), dead-lettered (400), or durably spooled.
    """

    async def start(self) -> None: ...

    async def write(self, batch: Sequence[Doc]) -> None: ...

    async def close(self) -> None: ...
