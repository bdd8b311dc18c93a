"""The Elasticsearch sink's self-metrics: what it indexed, retried, spooled and refused."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from faaslens.ingest.sink_es.bulk import DEAD_LETTER_REASONS, RETRY_REASONS
from faaslens.protocol import INDEX_KINDS

# Bounded values of faaslens_es_connect_failures_total's reason (client.explain's reasons).
CONNECT_FAILURE_REASONS = (
    "authentication",
    "authorization",
    "tls",
    "timeout",
    "connection",
    "http",
    "transport",
)

# Bounded values of faaslens_docs_failed_total's `reason` label.
FAILED_REASONS: tuple[str, ...] = (*DEAD_LETTER_REASONS, "spool_full", "spool_io")


class SinkMetrics:
    """The sink's self-metrics, registered on the injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.indexed = Counter(
            "faaslens_docs_indexed_total",
            "Documents Elasticsearch confirmed as newly indexed.",
            ["index_kind"],
            registry=registry,
        )
        self.failed = Counter(
            "faaslens_docs_failed_total",
            "Documents that will not be indexed, by reason.",
            ["reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "faaslens_docs_duplicate_total",
            "Documents answered 409: already indexed by an earlier attempt.",
            registry=registry,
        )
        self.retries = Counter(
            "faaslens_bulk_retries_total",
            "Bulk requests re-sent (only the failed items), by reason.",
            ["reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "faaslens_bulk_duration_seconds",
            "Time of one bulk request, including failures.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "faaslens_spool_bytes", "Bytes waiting in the disk spool.", registry=registry
        )
        self.spool_segments = Gauge(
            "faaslens_spool_segments", "Segment files in the disk spool.", registry=registry
        )
        self.spooled = Counter(
            "faaslens_docs_spooled_total",
            "Documents written to the disk spool.",
            registry=registry,
        )
        self.requeued = Counter(
            "faaslens_docs_requeued_total",
            "Spooled documents still refused on replay, appended at the spool's tail so "
            "later ones are not held up.",
            registry=registry,
        )
        self.replayed = Counter(
            "faaslens_docs_replayed_total",
            "Spooled documents confirmed after replay (segment deleted).",
            registry=registry,
        )
        self.spool_corrupt = Counter(
            "faaslens_spool_corrupt_records_total",
            "Spool segments with an unreadable tail (a crash mid-append).",
            registry=registry,
        )
        self.connect_failures = Counter(
            "faaslens_es_connect_failures_total",
            "Probes and template installs Elasticsearch did not answer or refused, by reason"
            " (authentication, authorization, tls, timeout, connection, http, transport).",
            ["reason"],
            registry=registry,
        )
        self.connect_failures_by_reason = {
            r: self.connect_failures.labels(r) for r in CONNECT_FAILURE_REASONS
        }
        self.es_up = Gauge(
            "faaslens_es_up", "1 when Elasticsearch answered the last request.", registry=registry
        )
        self.dead_letter = Counter(
            "faaslens_dead_letter_total",
            "Documents written to the dead-letter file.",
            registry=registry,
        )
        self.retention_deleted = Counter(
            "faaslens_retention_deleted_indices_total",
            "Daily indices deleted by retention housekeeping.",
            registry=registry,
        )
        self.retention_errors = Counter(
            "faaslens_retention_errors_total",
            "Retention runs that failed (logged).",
            registry=registry,
        )
        # Pre-create the bounded children so every series exists from the first scrape.
        self.indexed_by_kind = {kind: self.indexed.labels(kind) for kind in INDEX_KINDS}
        self.failed_by_reason = {r: self.failed.labels(r) for r in FAILED_REASONS}
        self.retries_by_reason = {r: self.retries.labels(r) for r in RETRY_REASONS}
