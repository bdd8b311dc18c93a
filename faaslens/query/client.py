"""Elasticsearch queries behind ``faaslens query``: one invocation, recent invocations, errors.

Each lookup is a single round trip: the invocation view is one ``_msearch``
(record, logs in sequence order, errors) over the daily indices of each kind,
using ``term`` filters on keyword fields so no scoring is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from faaslens.ingest.config import IngestConfig, connection
from faaslens.ingest.sink_es.client import explain, make_sync_client
from faaslens.query.loss import LossReport, pages

Json = dict[str, Any]

#: At most this many log lines are returned for one invocation.
MAX_LOG_LINES = 10_000
# Attempts of one invocation id shown by a lookup (the protocol allows up to 1,000).
MAX_ATTEMPTS = 100
#: Fields of an invocation record shown in listings (the full record is in the lookup).
LIST_FIELDS = (
    "@timestamp",
    "faas.name",
    "faas.execution",
    "event.outcome",
    "faas.coldstart",
    "event.duration",
    "faas.billed_duration",
    "faas.mem_usage",
    "faas.cost.usd",
    "error.type",
    "service.environment",
    "cloud.region",
)
NO_FINGERPRINT = "(none)"


class QueryError(RuntimeError):
    """Elasticsearch is unreachable or refused the query; the message says which."""


@dataclass(slots=True)
class InvocationView:
    """Everything recorded about one invocation."""

    invocation_id: str
    record: Json | None  # the latest attempt's
    logs: list[Json] = field(default_factory=list)  # every attempt's, attempt by attempt
    errors: list[Json] = field(default_factory=list)
    # Every attempt's record (platforms redeliver with the same id), first to last.
    attempts: list[Json] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.record is not None or bool(self.logs) or bool(self.errors)

    def as_json(self) -> Json:
        return {
            "invocation_id": self.invocation_id,
            "invocation": self.record,
            "attempts": self.attempts,
            "logs": self.logs,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class InvocationFilter:
    """Filters of ``faaslens query invocations``; ``None`` means no filter."""

    function: str | None = None
    outcome: str | None = None
    coldstart: bool | None = None
    min_duration_ms: float | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 50


@dataclass(slots=True)
class ErrorGroup:
    """Errors sharing one fingerprint (``error.grouping_key``)."""

    grouping_key: str
    count: int
    first_seen_ms: int | None
    last_seen_ms: int | None
    error_type: str | None
    sample_message: str | None
    sample_invocation: str | None
    functions: list[str]

    def as_json(self) -> Json:
        return {
            "grouping_key": self.grouping_key,
            "count": self.count,
            "first_seen": self.first_seen_ms,
            "last_seen": self.last_seen_ms,
            "error_type": self.error_type,
            "sample_message": self.sample_message,
            "sample_invocation_id": self.sample_invocation,
            "functions": self.functions,
        }


def _range(since_ms: int | None, until_ms: int | None) -> Json | None:
    bounds: Json = {}
    if since_ms is not None:
        bounds["gte"] = since_ms
    if until_ms is not None:
        bounds["lte"] = until_ms
    if not bounds:
        return None
    return {"range": {"@timestamp": {**bounds, "format": "epoch_millis"}}}


def invocation_searches(prefix: str, invocation_id: str) -> list[Json]:
    """The ``_msearch`` header/body pairs of an invocation lookup (record, logs, errors)."""
    by_id = {"bool": {"filter": [{"term": {"faas.execution": invocation_id}}]}}
    return [
        {"index": f"{prefix}-invocations-*", "ignore_unavailable": True},
        {
            "query": by_id,
            "size": MAX_ATTEMPTS,
            "sort": [
                {"faas.attempt": {"order": "asc", "unmapped_type": "long", "missing": "_first"}},
                {"@timestamp": {"order": "asc"}},
            ],
        },
        {"index": f"{prefix}-logs-*", "ignore_unavailable": True},
        {
            "query": by_id,
            "size": MAX_LOG_LINES,
            "sort": [
                {"faas.attempt": {"order": "asc", "unmapped_type": "long", "missing": "_first"}},
                {"event.sequence": {"order": "asc", "unmapped_type": "long"}},
                {"@timestamp": {"order": "asc", "unmapped_type": "date"}},
            ],
        },
        {"index": f"{prefix}-errors-*", "ignore_unavailable": True},
        {"query": by_id, "size": 100, "sort": [{"@timestamp": "asc"}]},
    ]


def invocations_search(flt: InvocationFilter) -> Json:
    """Search body of ``faaslens query invocations``."""
    filters: list[Json] = []
    if flt.function:
        filters.append({"term": {"faas.name": flt.function}})
    if flt.outcome:
        filters.append({"term": {"event.outcome": flt.outcome}})
    if flt.coldstart is not None:
        filters.append({"term": {"faas.coldstart": flt.coldstart}})
    if flt.min_duration_ms is not None:
        filters.append({"range": {"event.duration": {"gte": int(flt.min_duration_ms * 1e6)}}})
    if rng := _range(flt.since_ms, flt.until_ms):
        filters.append(rng)
    return {
        "query": {"bool": {"filter": filters}},
        "size": flt.limit,
        "sort": [{"@timestamp": "desc"}],
        "_source": list(LIST_FIELDS),
        "track_total_hits": False,
    }


ERROR_TEXT_FIELDS = ("error.message", "error.type", "message", "error.stack_trace")


def errors_search(
    text: str | None,
    *,
    since_ms: int | None,
    until_ms: int | None = None,
    function: str | None = None,
    error_type: str | None = None,
    limit: int = 20,
) -> Json:
    """Search body of ``faaslens query errors``: fingerprints with counts and a sample."""
    filters: list[Json] = []
    must: list[Json] = []
    if text:
        must.append(
            {
                "simple_query_string": {
                    "query": text,
                    "fields": list(ERROR_TEXT_FIELDS),
                    "default_operator": "and",
                    "lenient": True,
                }
            }
        )
    if function:
        filters.append({"term": {"faas.name": function}})
    if error_type:
        filters.append({"term": {"error.type": error_type}})
    if rng := _range(since_ms, until_ms):
        filters.append(rng)
    return {
        "size": 0,
        "track_total_hits": True,
        "query": {"bool": {"filter": filters, "must": must}},
        "aggs": {
            "fingerprints": {
                "terms": {
                    "field": "error.grouping_key",
                    "size": limit,
                    "missing": NO_FINGERPRINT,
                    "order": {"_count": "desc"},
                },
                "aggs": {
                    "first_seen": {"min": {"field": "@timestamp"}},
                    "last_seen": {"max": {"field": "@timestamp"}},
                    "functions": {"terms": {"field": "faas.name", "size": 5}},
                    "sample": {
                        "top_hits": {
                            "size": 1,
                            "sort": [{"@timestamp": "desc"}],
                            "_source": [
                                "error.type",
                                "error.message",
                                "faas.execution",
                                "faas.name",
                            ],
                        }
                    },
                },
            }
        },
    }


def _sources(response: Mapping[str, Any]) -> list[Json]:
    return [hit["_source"] for hit in response.get("hits", {}).get("hits", [])]


def _ms(agg: Mapping[str, Any]) -> int | None:
    value = agg.get("value")
    return None if value is None else int(value)


def parse_error_groups(response: Mapping[str, Any]) -> list[ErrorGroup]:
    """Turn the aggregation of :func:`errors_search` into :class:`ErrorGroup` rows."""
    groups = []
    for bucket in response["aggregations"]["fingerprints"]["buckets"]:
        hits = bucket["sample"]["hits"]["hits"]
        sample = hits[0]["_source"] if hits else {}
        groups.append(
            ErrorGroup(
                grouping_key=str(bucket["key"]),
                count=int(bucket["doc_count"]),
                first_seen_ms=_ms(bucket["first_seen"]),
                last_seen_ms=_ms(bucket["last_seen"]),
                error_type=sample.get("error.type"),
                sample_message=sample.get("error.message"),
                sample_invocation=sample.get("faas.execution"),
                functions=[str(b["key"]) for b in bucket["functions"]["buckets"]],
            )
        )
    return groups


class QueryClient:
    """Runs the reading queries against one Elasticsearch, for one index prefix."""

    def __init__(
        self,
        es_url: str | IngestConfig,
        index_prefix: str = "faaslens",
        *,
        timeout_s: float = 10.0,
        client: Elasticsearch | None = None,
    ) -> None:
        """``es_url``: a URL, or the worker's configuration, whose connection settings
        (nodes, TLS, credentials) are then used as they are.

        Raises:
            QueryError: the connection settings do not fit together.
        """
        config = IngestConfig(es_url=es_url) if isinstance(es_url, str) else es_url
        try:
            self.es_url = connection(config).endpoint
            self._es = client or make_sync_client(config, timeout_s)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        self.prefix = index_prefix

    def close(self) -> None:
        self._es.close()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Json:
        try:
            result = fn(**kwargs)
        except ApiError as exc:
            if exc.meta.status in (401, 403):  # say which credentials or privilege
                raise QueryError(explain(exc, self.es_url)[1]) from exc
            raise QueryError(f"Elasticsearch refused the {what} query: {exc.message}") from exc
        except (TransportError, OSError) as exc:
            raise QueryError(explain(exc, self.es_url)[1]) from exc
        body: Json = result.body
        return body

    def invocation(self, invocation_id: str) -> InvocationView:
        """The record of ``invocation_id``, its log lines in order, and its errors."""
        body = self._call(
            "invocation",
            self._es.msearch,
            searches=invocation_searches(self.prefix, invocation_id),
        )
        responses = body["responses"]
        for r in responses:
            if "error" in r:
                reason = r["error"].get("reason", r["error"]) if isinstance(r["error"], dict) else r
                raise QueryError(f"Elasticsearch refused the invocation query: {reason}")
        records = _sources(responses[0])
        return InvocationView(
            invocation_id=invocation_id,
            record=records[-1] if records else None,
            attempts=records,
            logs=_sources(responses[1]),
            errors=_sources(responses[2]),
        )

    def invocations(self, flt: InvocationFilter) -> list[Json]:
        """Recent invocation records matching ``flt``, newest first."""
        body = self._call(
            "invocations",
            self._es.search,
            index=f"{self.prefix}-invocations-*",
            body=invocations_search(flt),
            ignore_unavailable=True,
        )
        return _sources(body)

    def errors(
        self,
        text: str | None,
        *,
        since_ms: int | None,
        until_ms: int | None = None,
        function: str | None = None,
        error_type: str | None = None,
        limit: int = 20,
    ) -> list[ErrorGroup]:
        """Errors matching ``text``, grouped by fingerprint, most frequent first."""
        body = self._call(
            "errors",
            self._es.search,
            index=f"{self.prefix}-errors-*",
            body=errors_search(
                text,
                since_ms=since_ms,
                until_ms=until_ms,
                function=function,
                error_type=error_type,
                limit=limit,
            ),
            ignore_unavailable=True,
        )
        if "aggregations" not in body:  # no index matched at all
            return []
        return parse_error_groups(body)

    def loss(
        self, *, since_ms: int | None, until_ms: int | None = None, function: str | None = None
    ) -> LossReport:
        """The loss ledger of the window, per sender (see :mod:`faaslens.query.loss`)."""

        def search(body: Json) -> Json:
            return self._call(
                "loss",
                self._es.search,
                index=f"{self.prefix}-invocations-*,{self.prefix}-logs-*",
                body=body,
                ignore_unavailable=True,
                allow_no_indices=True,
            )

        senders = pages(search, since_ms=since_ms, until_ms=until_ms, function=function)
        return LossReport(sorted(senders, key=lambda s: (-s.missing, s.function, s.src)))
