"""The loss ledger: frames each sender sent that never reached Elasticsearch.

Every frame the worker stores marks its first document (an invocation or a log
line) with the frame's ``faas.frame.src`` and ``faas.frame.seq``; document ids
are deterministic, so a frame is stored at most once whichever worker took it,
and however often it was retried or replayed. Per sender, the frames stored
between the lowest and the highest sequence number seen in the window are
counted from Elasticsearch; the numbers in between that are missing are lost.

Why from Elasticsearch and not from the workers' counters: a late frame fills
its gap here by itself; the figure survives worker restarts (a SIGKILLed
worker's counters are gone, its documents are not); one sender's frames spread
over several workers (round robin, a rolling restart re-hashing SO_REUSEPORT)
add up correctly, where each worker alone sees phantom gaps. The worker's
``faaslens_frames_lost_total`` stays exact only while each sender always
reaches the same worker (sender affinity).

What it cannot know, and says so: frames before the first or after the last
sequence number seen in the window (a sender whose last frames were lost looks
like one that stopped), and senders with a single frame in the window. A
missing frame was lost in transit, dropped by a worker (queue full, spool full),
rejected whole, or had its first document dead-lettered: the workers' counters
of those reasons tell them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

#: Senders per page of the composite aggregation.
PAGE = 1000
UNKNOWN_FUNCTION = "(unknown)"


@dataclass(frozen=True, slots=True)
class SenderLoss:
    """One sender (``src``) in the window: what was stored and what is missing."""

    src: str
    function: str
    first_seq: int
    last_seq: int
    stored: int

    @property
    def expected(self) -> int:
        """Frames sent from the first to the last seen (both included)."""
        return self.last_seq - self.first_seq + 1

    @property
    def missing(self) -> int:
        return max(0, self.expected - self.stored)

    def as_json(self) -> Json:
        return {
            "src": self.src,
            "function": self.function,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "frames_stored": self.stored,
            "frames_missing": self.missing,
        }


@dataclass(frozen=True, slots=True)
class LossReport:
    """Senders of the window, and the totals per function."""

    senders: list[SenderLoss]

    def by_function(self) -> dict[str, tuple[int, int]]:
        """function -> (frames stored, frames missing)."""
        out: dict[str, tuple[int, int]] = {}
        for s in self.senders:
            stored, missing = out.get(s.function, (0, 0))
            out[s.function] = (stored + s.stored, missing + s.missing)
        return out

    @property
    def missing(self) -> int:
        return sum(s.missing for s in self.senders)

    @property
    def stored(self) -> int:
        return sum(s.stored for s in self.senders)

    def as_json(self) -> Json:
        return {
            "frames_stored": self.stored,
            "frames_missing": self.missing,
            "functions": {
                name: {"frames_stored": stored, "frames_missing": missing}
                for name, (stored, missing) in sorted(self.by_function().items())
            },
            "senders": [s.as_json() for s in self.senders],
            "not_judged": (
                "frames before the first or after the last sequence number seen per sender "
                "in the window"
            ),
        }


def loss_search(
    *,
    since_ms: int | None,
    until_ms: int | None,
    function: str | None,
    after: Json | None = None,
) -> Json:
    """One page of the ledger's search: per sender, min/max sequence and a count."""
    filters: list[Json] = [{"exists": {"field": "faas.frame.seq"}}]
    bounds: Json = {}
    if since_ms is not None:
        bounds["gte"] = since_ms
    if until_ms is not None:
        bounds["lte"] = until_ms
    if bounds:
        filters.append({"range": {"@timestamp": {**bounds, "format": "epoch_millis"}}})
    if function:
        filters.append({"term": {"faas.name": function}})
    composite: Json = {"size": PAGE, "sources": [{"src": {"terms": {"field": "faas.frame.src"}}}]}
    if after is not None:
        composite["after"] = after
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": filters}},
        "aggs": {
            "senders": {
                "composite": composite,
                "aggs": {
                    "first": {"min": {"field": "faas.frame.seq"}},
                    "last": {"max": {"field": "faas.frame.seq"}},
                    "function": {"terms": {"field": "faas.name", "size": 1, "missing": ""}},
                },
            }
        },
    }


def parse_page(body: Json) -> tuple[list[SenderLoss], Json | None]:
    """The senders of one page and the key to ask for the next (None: last page)."""
    agg = body.get("aggregations", {}).get("senders")
    if agg is None:  # no index matched
        return [], None
    out = []
    for bucket in agg["buckets"]:
        names = bucket["function"]["buckets"]
        out.append(
            SenderLoss(
                src=str(bucket["key"]["src"]),
                function=str(names[0]["key"]) if names and names[0]["key"] else UNKNOWN_FUNCTION,
                first_seq=int(bucket["first"]["value"]),
                last_seq=int(bucket["last"]["value"]),
                stored=int(bucket["doc_count"]),
            )
        )
    after = agg.get("after_key") if len(agg["buckets"]) == PAGE else None
    return out, after


def pages(search: Callable[[Json], Json], **filters: Any) -> Iterator[SenderLoss]:
    """Every sender, page after page; ``search(body)`` runs one search."""
    after: Json | None = None
    while True:
        senders, after = parse_page(search(loss_search(after=after, **filters)))
        yield from senders
        if after is None:
            return
