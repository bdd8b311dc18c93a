"""The retry policy of bulk writes: one request and what its failure means, and
the window within which a failed write is tried again before it is spooled.

A whole request that fails in a way that may pass later (connection refused,
timeout, 429, 5xx) raises :class:`Retryable`; a request Elasticsearch refuses
for good turns every document into a dead letter; otherwise each item's own
status decides (:func:`faaslens.ingest.sink_es.bulk.classify`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from elastic_transport import ConnectionError as EsConnectionError
from elastic_transport import ConnectionTimeout, SerializationError, TransportError
from elasticsearch import ApiError, AsyncElasticsearch
from prometheus_client import Histogram

from faaslens.backoff import Backoff
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.bulk import (
    BulkOutcome,
    BulkResponseError,
    ItemFailure,
    build_body,
    classify,
    classify_status,
    retry_reason,
)
from faaslens.ingest.sink_es.client import explain

# Only what classification needs: the response of a 2000-document bulk stays small.
BULK_FILTER_PATH = "errors,items.*.status,items.*.error"


class Retryable(Exception):
    """A whole bulk request failed in a way that may pass later.

    ``reason`` is a bounded label value (``RETRY_REASONS``); ``unreachable``
    says Elasticsearch did not answer at all.
    """

    def __init__(self, reason: str, unreachable: bool, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.unreachable = unreachable


class Refused(Exception):
    """Elasticsearch refused a whole bulk request for good (a 4xx other than 409/429)."""

    def __init__(self, status: int, error_type: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class BulkSender:
    """Bulk requests of one sink: to ``client``, into the indices of ``prefix``,
    each request's seconds observed in ``duration``; ``endpoint``: the nodes as
    shown in messages."""

    client: AsyncElasticsearch
    prefix: str
    duration: Histogram
    endpoint: str = ""

    async def send_isolating(self, docs: Sequence[Doc]) -> BulkOutcome:
        """:meth:`send_once`, and when the whole request is refused, the batch split in
        halves, recursively, until the refused documents stand alone: only they are dead
        (a request of n documents with one at fault costs about 2 log2(n) more requests).

        Raises:
            Retryable: a request failed as a whole and may pass later.
        """
        try:
            return await self.send_once(docs)
        except Refused as exc:
            if len(docs) == 1:
                return BulkOutcome(
                    dead=[ItemFailure(docs[0], exc.status, exc.error_type, str(exc))]
                )
        mid = len(docs) // 2
        outcome = await self.send_isolating(docs[:mid])
        outcome.merge(await self.send_isolating(docs[mid:]))
        return outcome

    async def send_once(self, docs: Sequence[Doc]) -> BulkOutcome:
        """One bulk request of ``docs``, its items classified.

        Raises:
            Retryable: the whole request failed and may pass later.
            Refused: the whole request was refused for good.
        """
        endpoint = self.endpoint
        body = build_body(docs, self.prefix)
        started = time.perf_counter()
        try:
            # The NDJSON serializer passes bytes through untouched.
            response = await self.client.bulk(
                operations=cast(Any, body), filter_path=BULK_FILTER_PATH
            )
        except ConnectionTimeout as exc:
            raise Retryable("timeout", True, str(exc)) from exc
        except EsConnectionError as exc:
            raise Retryable("connection", True, str(exc)) from exc
        except ApiError as exc:
            status = exc.meta.status
            if status == 401:
                # Credentials refused: nothing will pass until they are fixed, so later batches
                # go straight to the spool while the supervisor keeps probing (counted, logged).
                raise Retryable(retry_reason(status), True, explain(exc, endpoint)[1]) from exc
            if classify_status(status) == "retry":
                detail = explain(exc, endpoint)[1] if status == 403 else str(exc)
                raise Retryable(retry_reason(status), False, detail) from exc
            # The whole request refused (e.g. 400 for one action line Elasticsearch cannot
            # take): the caller splits the batch to find the documents at fault.
            raise Refused(status, exc.error, str(exc.info)[:2000]) from exc
        except (SerializationError, TransportError) as exc:
            raise Retryable("server_error", False, str(exc)) from exc
        finally:
            self.duration.observe(time.perf_counter() - started)
        try:
            return classify(response.body, docs)
        except BulkResponseError as exc:
            raise Retryable("server_error", False, f"unreadable bulk response: {exc}") from exc


class RetryWindow:
    """Backoff delays for one write, until ``window_s`` seconds have passed.

    ``next_delay()`` gives the seconds to wait before the next attempt, or None
    once that attempt could not start within the window (time to spool).
    """

    __slots__ = ("_backoff", "_deadline")

    def __init__(self, window_s: float, base_s: float, cap_s: float) -> None:
        self._deadline = time.monotonic() + window_s
        self._backoff = Backoff(base_s, cap_s)

    def next_delay(self) -> float | None:
        delay = self._backoff.next()
        if time.monotonic() + delay > self._deadline:
            return None
        return delay
