"""The Elasticsearch sink: bulk-indexes batches, retries what can succeed later,
dead-letters what never will, and spools to disk while Elasticsearch is away.

Every document handed to :meth:`ElasticsearchSink.write` ends in exactly one
of: indexed (2xx), duplicate (409: an earlier attempt already indexed it),
dead-lettered (4xx: refused for good), spooled (Elasticsearch unreachable or
overloaded past the retry window) or dropped with a counted reason
(``spool_full``, ``spool_io``). Ids are deterministic and the op type is
``create``, so resending anything (a retry, a spool replay) never indexes a
document twice.

A background *supervisor* task probes Elasticsearch with backoff while it is
down, installs the templates before the first document is sent, and replays
the spool, oldest segment first, once Elasticsearch answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from elastic_transport import ConnectionError as EsConnectionError
from elastic_transport import ConnectionTimeout, SerializationError, TransportError
from elasticsearch import ApiError, AsyncElasticsearch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from faaslens.backoff import backoff_delay
from faaslens.ingest import retention
from faaslens.ingest.aio import wait_event
from faaslens.ingest.bulk import (
    DEAD_LETTER_REASONS,
    RETRY_REASONS,
    BulkOutcome,
    BulkResponseError,
    ItemFailure,
    build_body,
    classify,
    classify_status,
    retry_reason,
)
from faaslens.ingest.config import ConfigError, IngestConfig
from faaslens.ingest.deadletter import DeadLetterFile
from faaslens.ingest.events import Doc
from faaslens.ingest.spool import Spool, SpoolFull
from faaslens.ingest.templates import check_prefix, install_templates, templates_for
from faaslens.protocol import INDEX_KINDS

log = structlog.get_logger("faaslens.sink_es")

ClientFactory = Callable[[IngestConfig], AsyncElasticsearch]

# How long write() retries an unreachable or overloaded Elasticsearch before spooling.
DEFAULT_RETRY_WINDOW_S = 5.0
PROBE_TIMEOUT_S = 5.0
# While idle and up, probe this often so faaslens_es_up and `ready` stay truthful.
HEALTH_INTERVAL_S = 10.0
# close() waits this long for the supervisor to stop; a replay request in flight is abandoned.
SUPERVISOR_STOP_S = 5.0
# Only what classification needs: the response of a 2000-document bulk stays small.
BULK_FILTER_PATH = "errors,items.*.status,items.*.error"
FAILED_REASONS: tuple[str, ...] = (*DEAD_LETTER_REASONS, "spool_full", "spool_io")


def make_client(
    config: IngestConfig, client_class: type[AsyncElasticsearch] = AsyncElasticsearch
) -> AsyncElasticsearch:
    """The default client: our own retries only, orjson for responses.

    ``client_class`` lets tests wrap the real client to inject faults.
    """
    from elasticsearch.serializer import OrjsonSerializer

    serializer = OrjsonSerializer()
    return client_class(
        config.es_url,
        request_timeout=config.es_request_timeout_s,
        max_retries=0,
        retry_on_timeout=False,
        http_compress=False,  # loopback or LAN: compression costs more CPU than it saves
        serializers={
            "application/json": serializer,
            "application/vnd.elasticsearch+json": serializer,
        },
    )


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


class _Retryable(Exception):
    """A whole bulk request failed in a way that may pass later."""

    def __init__(self, reason: str, unreachable: bool, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.unreachable = unreachable


def _chunks(records: list[list[Doc]], max_docs: int, max_bytes: int) -> Iterator[list[Doc]]:
    """Regroup spooled records into bulk-sized chunks, keeping their order."""
    chunk: list[Doc] = []
    size = 0
    for record in records:
        for doc in record:
            if chunk and (len(chunk) >= max_docs or size + len(doc.source) > max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(doc)
            size += len(doc.source)
    if chunk:
        yield chunk


class ElasticsearchSink:
    """Writes :class:`~ingest.events.Doc` batches to Elasticsearch (implements ``events.Sink``).

    ``write`` may be called from several tasks at once: that keeps more than
    one bulk request in flight, which Elasticsearch turns into throughput.
    """

    def __init__(
        self,
        config: IngestConfig,
        registry: CollectorRegistry | None = None,
        client_factory: ClientFactory | None = None,
        *,
        retry_window_s: float | None = None,
        spool_segment_bytes: int | None = None,
    ) -> None:
        self.config = config
        self.prefix = check_prefix(config.es_index_prefix)
        self._templates = templates_for(config)  # bad files fail here, before any I/O
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = SinkMetrics(self.registry)
        self._client_factory = client_factory or make_client
        self._client: AsyncElasticsearch | None = None
        self.spool = Spool(config.spool_dir, config.spool_max_bytes, spool_segment_bytes)
        self._dead = DeadLetterFile(config.dead_letter_path, self.prefix)
        # How long to retry before spooling: argument, else config (when it has the field).
        self._retry_window_s = (
            retry_window_s
            if retry_window_s is not None
            else float(getattr(config, "es_retry_window_s", DEFAULT_RETRY_WINDOW_S))
        )
        self._started = False
        self._closing = False
        self._templates_ok = False
        self._es_up = False
        self._wake: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool, create the client, install the templates and start replay.

        Elasticsearch being down is not an error: writes are spooled and the
        supervisor keeps probing. A template that Elasticsearch refuses (4xx) is:
        the deployment is broken, so ConfigError is raised (as for a bad URL).
        """
        await asyncio.to_thread(self.spool.open)
        self._update_spool_gauges()
        try:
            self._client = self._client_factory(self.config)
        except ValueError as exc:  # the client refuses the URL
            raise ConfigError(f"es_url {self.config.es_url!r}: {exc}") from exc
        self._wake = asyncio.Event()
        self._started = True
        try:
            await self._connect()
        except ApiError as exc:
            if classify_status(exc.meta.status) != "retry":
                log.error("es_templates_refused", status=exc.meta.status, error=str(exc))
                await self._client.close()
                self._client = None
                self._started = False
                raise ConfigError(f"Elasticsearch refused the templates: {exc}") from exc
            log.warning("es_unavailable_at_start", status=exc.meta.status, error=str(exc))
            self._set_up(False)
        except (TransportError, OSError) as exc:
            log.warning("es_unreachable_at_start", url=self.config.es_url, error=str(exc))
            self._set_up(False)
        self._supervisor = asyncio.create_task(self._supervise(), name="es-supervisor")
        self._supervisor.add_done_callback(_log_supervisor_end)

    async def close(self) -> None:
        """Stop replay (the spool stays on disk for the next start) and close the client."""
        self._closing = True
        if self._supervisor is not None:
            # Bounded: a stuck supervisor must not keep the worker from exiting.
            self._supervisor.cancel()
            _, pending = await asyncio.wait({self._supervisor}, timeout=SUPERVISOR_STOP_S)
            if pending:
                log.error("es_supervisor_did_not_stop", waited_s=SUPERVISOR_STOP_S)
            self._supervisor = None
        if self._started:
            await asyncio.to_thread(self.spool.close)
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._started = False
        self._es_up = False

    @property
    def ready(self) -> bool:
        """Started, templates installed, and Elasticsearch answering."""
        return self._started and self._templates_ok and self._es_up

    # -- writing -----------------------------------------------------------------------

    async def write(self, batch: Sequence[Doc]) -> None:
        """Return once every document is indexed, dead-lettered, spooled, or dropped (counted)."""
        if not batch:
            return
        if not self._started:
            raise RuntimeError("ElasticsearchSink.start() must be awaited before write()")
        if self._es_up and self._templates_ok and not self._closing:
            left = await self._deliver(batch, self._retry_window_s)
        else:
            # Known down: don't make every batch wait out a retry window.
            left = list(batch)
        if left:
            await self._to_spool(left)

    async def _deliver(self, docs: Sequence[Doc], window_s: float) -> list[Doc]:
        """Send ``docs``, re-sending only failed items with backoff for up to ``window_s``.

        Returns the documents still not accounted for (to spool or keep spooled).
        """
        pending = list(docs)
        deadline = time.monotonic() + window_s
        attempt = 0
        while True:
            unreachable = False
            try:
                outcome = await self._bulk_once(pending)
            except _Retryable as exc:
                retry, reason, unreachable, detail = pending, exc.reason, exc.unreachable, str(exc)
            else:
                self._set_up(True)
                await self._account(outcome)
                if not outcome.retry:
                    return []
                retry = outcome.retry
                reason = outcome.retry_reasons.most_common(1)[0][0]
                detail = f"{len(retry)} items answered {dict(outcome.retry_reasons)}"
            delay = self._backoff(attempt)
            attempt += 1
            gave_up_elsewhere = unreachable and not self._es_up
            if self._closing or gave_up_elsewhere or time.monotonic() + delay > deadline:
                if unreachable:
                    self._set_up(False)
                log.warning(
                    "es_bulk_retry_window_over", docs=len(retry), reason=reason, detail=detail
                )
                return retry
            self.metrics.retries_by_reason[reason].inc()
            log.info("es_bulk_retry", docs=len(retry), reason=reason, delay_s=round(delay, 3))
            await asyncio.sleep(delay)
            pending = retry

    async def _bulk_once(self, docs: Sequence[Doc]) -> BulkOutcome:
        """One bulk request; whole-request failures that may pass later raise _Retryable."""
        client = self._require_client()
        body = build_body(docs, self.prefix)
        started = time.perf_counter()
        try:
            # The NDJSON serializer passes bytes through untouched.
            response = await client.bulk(operations=cast(Any, body), filter_path=BULK_FILTER_PATH)
        except ConnectionTimeout as exc:
            raise _Retryable("timeout", True, str(exc)) from exc
        except EsConnectionError as exc:
            raise _Retryable("connection", True, str(exc)) from exc
        except ApiError as exc:
            status = exc.meta.status
            if classify_status(status) == "retry":
                raise _Retryable(retry_reason(status), False, str(exc)) from exc
            # A refused request (never expected for bodies we build): nothing in it can pass.
            reason = str(exc.info)[:2000]
            return BulkOutcome(dead=[ItemFailure(d, status, exc.error, reason) for d in docs])
        except (SerializationError, TransportError) as exc:
            raise _Retryable("server_error", False, str(exc)) from exc
        finally:
            self.metrics.duration.observe(time.perf_counter() - started)
        try:
            return classify(response.body, docs)
        except BulkResponseError as exc:
            log.error("es_bulk_response_unreadable", error=str(exc))
            raise _Retryable("server_error", False, str(exc)) from exc

    async def _account(self, outcome: BulkOutcome) -> None:
        for kind, count in outcome.indexed.items():
            self.metrics.indexed_by_kind[kind].inc(count)
        if outcome.duplicates:
            self.metrics.duplicates.inc(outcome.duplicates)
        if outcome.dead:
            await self._dead_letter(outcome.dead)

    async def _dead_letter(self, failures: list[ItemFailure]) -> None:
        for failure in failures:
            self.metrics.failed_by_reason[failure.reason].inc()
        first = failures[0]
        try:
            await asyncio.to_thread(self._dead.write, failures, datetime.now(UTC))
        except OSError as exc:
            log.error(
                "es_dead_letter_write_failed",
                docs=len(failures),
                path=str(self._dead.path),
                error=str(exc),
                first_id=first.doc.doc_id,
                first_error=f"{first.error_type}: {first.error_reason}",
            )
            return
        self.metrics.dead_letter.inc(len(failures))
        log.error(
            "es_documents_dead_lettered",
            docs=len(failures),
            path=str(self._dead.path),
            first_index=first.doc.index_name(self.prefix),
            first_id=first.doc.doc_id,
            first_status=first.status,
            first_error=f"{first.error_type}: {first.error_reason}",
        )

    async def _to_spool(self, docs: list[Doc]) -> None:
        try:
            written = await asyncio.to_thread(self.spool.append, docs)
        except SpoolFull as exc:
            self.metrics.failed_by_reason["spool_full"].inc(len(docs))
            log.error(
                "es_spool_full_docs_dropped", docs=len(docs), reason="spool_full", detail=str(exc)
            )
            return
        except (OSError, ValueError) as exc:  # disk errors; ValueError: unencodable record
            self.metrics.failed_by_reason["spool_io"].inc(len(docs))
            log.error("es_spool_write_failed", docs=len(docs), reason="spool_io", error=str(exc))
            return
        self.metrics.spooled.inc(len(docs))
        self._update_spool_gauges()
        log.info("es_docs_spooled", docs=len(docs), bytes=written)
        if self._wake is not None:
            self._wake.set()

    # -- supervision and replay ----------------------------------------------------------

    async def _connect(self) -> None:
        """Probe the cluster; install the templates once it answers."""
        client = self._require_client().options(request_timeout=PROBE_TIMEOUT_S)
        await client.cluster.health()
        if not self._templates_ok:
            await install_templates(client, self._templates)
            self._templates_ok = True
            log.info("es_templates_installed", prefix=self.prefix, url=self.config.es_url)
        self._set_up(True)

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            if not (self._es_up and self._templates_ok):
                try:
                    await self._connect()
                    attempt = 0
                except (ApiError, TransportError, OSError) as exc:
                    self._set_up(False)
                    delay = self._backoff(attempt)
                    attempt += 1
                    if isinstance(exc, ApiError) and classify_status(exc.meta.status) == "dead":
                        # Answering but refusing the templates: nothing will be sent until fixed.
                        log.error("es_templates_refused", status=exc.meta.status, error=str(exc))
                    else:
                        log.debug("es_probe_failed", error=str(exc), next_probe_s=round(delay, 3))
                    await self._sleep_or_wake(delay, wakeable=False)
                    continue
            if not self.spool.is_empty():
                try:
                    done = await self._replay_oldest()
                except (OSError, ValueError) as exc:
                    # An unreadable segment file must not end replay for good: log, retry later.
                    log.error("es_spool_replay_failed", error=repr(exc))
                    done = False
                if done:
                    attempt = 0
                else:
                    delay = self._backoff(attempt)
                    attempt += 1
                    await self._sleep_or_wake(delay, wakeable=False)
                continue
            if not await self._sleep_or_wake(HEALTH_INTERVAL_S, wakeable=True):
                # Idle: a cheap probe keeps `ready` and the gauge truthful.
                try:
                    await (
                        self._require_client()
                        .options(request_timeout=PROBE_TIMEOUT_S)
                        .cluster.health()
                    )
                except (ApiError, TransportError, OSError):
                    self._set_up(False)

    async def _sleep_or_wake(self, delay: float, wakeable: bool) -> bool:
        """Wait ``delay`` seconds, or less if woken (new spool data). True if woken."""
        assert self._wake is not None
        if not wakeable:
            await asyncio.sleep(delay)
            return False
        if not await wait_event(self._wake, delay):
            return False
        self._wake.clear()
        return True

    async def _replay_oldest(self) -> bool:
        """Replay the oldest segment; delete it once every document is accounted for."""
        segment = await asyncio.to_thread(self.spool.oldest)
        if segment is None:
            return True
        records, corrupt = await asyncio.to_thread(self.spool.load, segment)
        if corrupt is not None:
            self.metrics.spool_corrupt.inc()
            log.error("es_spool_segment_corrupt", segment=str(segment.path), error=corrupt)
        total = 0
        for chunk in _chunks(records, self.config.batch_max_docs, self.config.batch_max_bytes):
            left = await self._deliver(chunk, self._retry_window_s)
            if left:
                log.warning("es_spool_replay_paused", segment=str(segment.path), left=len(left))
                return False
            total += len(chunk)
        await asyncio.to_thread(self.spool.remove, segment)
        self.metrics.replayed.inc(total)
        self._update_spool_gauges()
        log.info("es_spool_segment_replayed", segment=str(segment.path), docs=total)
        return True

    # -- housekeeping ----------------------------------------------------------------------

    async def run_housekeeping(self) -> None:
        """Until cancelled: delete daily indices older than ``retention_days``,
        every ``retention_interval_s`` (first run right away)."""
        while True:
            await self.apply_retention()
            await asyncio.sleep(self.config.retention_interval_s)

    async def apply_retention(self, today: datetime | None = None) -> list[str]:
        """One retention pass; returns the deleted index names (errors logged, counted)."""
        if self._client is None or not self._es_up:
            return []
        try:
            deleted = await retention.delete_expired(
                self._client, self.prefix, self.config.retention_days, today
            )
        except (ApiError, TransportError) as exc:
            self.metrics.retention_errors.inc()
            log.warning("es_retention_failed", error=str(exc))
            return []
        if deleted:
            self.metrics.retention_deleted.inc(len(deleted))
            log.info("es_retention_deleted", indices=deleted)
        return deleted

    # -- helpers ---------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.config.retry_base_s, self.config.retry_max_s)

    def _require_client(self) -> AsyncElasticsearch:
        if self._client is None:
            raise RuntimeError("ElasticsearchSink is not started")
        return self._client

    def _set_up(self, up: bool) -> None:
        if up != self._es_up:
            if up:
                log.info("es_up", url=self.config.es_url)
            else:
                log.warning("es_down", url=self.config.es_url)
        self._es_up = up
        self.metrics.es_up.set(1 if up else 0)
        if up and self._wake is not None and not self.spool.is_empty():
            self._wake.set()

    def _update_spool_gauges(self) -> None:
        self.metrics.spool_bytes.set(self.spool.total_bytes)
        self.metrics.spool_segments.set(self.spool.segment_count)


def _log_supervisor_end(task: asyncio.Task[None]) -> None:
    """A supervisor that dies of a bug stops replay: say so loudly."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("es_supervisor_crashed", error=repr(exc), exc_info=exc)
