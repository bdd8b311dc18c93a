"""Settling started invocations: each ends with its record, or as *unfinished*.

Sits between validation and the batcher (the pipeline calls it per frame and
on its timer). A ``start`` event enters the :class:`~ingest.pending.Pending`
table; the ``inv`` record of the same id takes it out. An invocation whose
record has not come by its timeout plus the grace period becomes an
*unfinished* invocation document (``event.outcome: unknown``, with
``event.reason``) under the record's ``_id``, written with ``create``: if the
record was indexed meanwhile by another worker, Elasticsearch answers 409 and
the record stays. A record that arrives after its invocation was settled as
unfinished is written with ``index``, so it replaces that document.

Counts go to the aggregates (``faas_invocations_started_total``,
``faas_invocations_unfinished_total``) and to the worker's own metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faaslens.ingest.documents import attempt_id, unfinished_doc
from faaslens.ingest.events import Doc
from faaslens.ingest.pending import Entry, Pending

__all__ = ["Settler"]


class Settler:
    """Tracks starts, settles them by record or deadline, shapes unfinished documents.

    ``on_started`` / ``on_unfinished`` get the resource block and the start event of
    each started / unfinished invocation, and ``now``: the aggregates count them.
    """

    __slots__ = ("late", "on_started", "on_unfinished", "pending", "unfinished")

    def __init__(
        self,
        pending: Pending,
        on_started: Callable[[dict[str, Any], dict[str, Any], float], None],
        on_unfinished: Callable[[dict[str, Any], dict[str, Any], float], None],
    ) -> None:
        self.pending = pending
        self.on_started = on_started
        self.on_unfinished = on_unfinished
        self.unfinished = 0  # invocations settled as unfinished
        self.late = 0  # records that came after, and replaced, an unfinished document

    def started(self, starts: list[tuple[dict[str, Any], dict[str, Any]]], now: float) -> None:
        """Track the start events of one frame."""
        add = self.pending.start
        for res, start in starts:
            add(res, start, now)
            self.on_started(res, start, now)

    def finished(self, invocations: list[dict[str, Any]], docs: list[Doc]) -> None:
        """Settle the records of one frame; a late one's document becomes a replacement
        (``docs``, the frame's documents, are changed in place)."""
        finish = self.pending.finish
        for inv in invocations:
            exec_id = attempt_id(inv["faas.execution"], inv.get("faas.attempt"))
            if finish(exec_id) != "late":
                continue
            self.late += 1
            for i, doc in enumerate(docs):
                if doc.kind == "invocations" and doc.doc_id == exec_id:
                    docs[i] = doc._replace(op="index")

    def settle_due(self, now: float) -> list[Doc]:
        """The unfinished invocation documents of every start past its deadline."""
        due = self.pending.due(now)
        return [self._unfinished(exec_id, entry, now) for exec_id, entry in due]

    def _unfinished(self, exec_id: str, entry: Entry, now: float) -> Doc:
        self.unfinished += 1
        self.on_unfinished(entry.res, entry.start, now)
        return unfinished_doc(exec_id, entry.res, entry.start)

    def next_deadline(self) -> float | None:
        """When :meth:`settle_due` next has something to do (monotonic seconds)."""
        return self.pending.next_deadline()
