"""The Elasticsearch sink: bulk-indexes batches, retries what can succeed later,
dead-letters what never will, and spools to disk while Elasticsearch is away.

Every document handed to :meth:`ElasticsearchSink.write` ends in exactly one
of: indexed (2xx), duplicate (409: an earlier attempt already indexed it),
dead-lettered (4xx: refused for good), spooled (Elasticsearch unreachable or
overloaded past the retry window) or dropped with a counted reason
(``spool_full``, ``spool_io``). Ids are deterministic and the op type is
``create``, so resending anything (a retry, a spool replay) never indexes a
document twice.

This module composes the parts of the folder: the client factory
(``client``), one request and its retry window (``retry``), the disk spool
(``spool``) and its replay (``replay``), the supervisor (``health``), dead
letters (``deadletter``), retention (``retention``) and the metrics
(``metrics``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch
from prometheus_client import CollectorRegistry

from faaslens.backoff import Backoff
from faaslens.ingest.config import ConfigError, IngestConfig, connection
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es import replay, retention
from faaslens.ingest.sink_es.bulk import BulkOutcome, ItemFailure, classify_status
from faaslens.ingest.sink_es.client import ClientFactory, make_client, probe
from faaslens.ingest.sink_es.deadletter import DeadLetters
from faaslens.ingest.sink_es.health import Health, Supervisor, log_supervisor_end
from faaslens.ingest.sink_es.metrics import SinkMetrics
from faaslens.ingest.sink_es.retry import BulkSender, Retryable, RetryWindow
from faaslens.ingest.sink_es.spool import Spool, SpoolFull
from faaslens.ingest.templates import check_prefix, install_templates, templates_for

log = structlog.get_logger("faaslens.sink_es")

# How long write() retries an unreachable or overloaded Elasticsearch before spooling.
DEFAULT_RETRY_WINDOW_S = 5.0
# close() waits this long for the supervisor to stop; a replay request in flight is abandoned.
SUPERVISOR_STOP_S = 5.0
# Documents whose refusals are counted at most (the oldest half is forgotten past it).
REFUSALS_TRACKED = 100_000


class ElasticsearchSink:
    """Writes :class:`~faaslens.ingest.events.Doc` batches to Elasticsearch
    (implements ``events.Sink``).

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
        self._dead = DeadLetters(config.dead_letter_path, self.prefix, self.metrics)
        # How long to retry before spooling: argument, else config (when it has the field).
        self._retry_window_s = (
            retry_window_s
            if retry_window_s is not None
            else float(getattr(config, "es_retry_window_s", DEFAULT_RETRY_WINDOW_S))
        )
        try:
            self.connection = connection(config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        endpoint = self.connection.endpoint
        self.health = Health(self.metrics, endpoint, lambda: not self.spool.is_empty())
        # (kind, day, id) -> [refusals, monotonic time of the first] for documents
        # refused one by one (403, 5xx): past both bounds they are dead-lettered.
        self._refusals: dict[tuple[str, str, str], list[float]] = {}
        self._started = False
        self._closing = False
        self._supervisor: Supervisor | None = None
        self._supervisor_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool, create the client, install the templates and start replay.

        Elasticsearch being down is not an error: writes are spooled and the
        supervisor keeps probing.

        Raises:
            ConfigError: the client refuses the URL, or Elasticsearch refuses the
                templates (4xx): the deployment is broken.
        """
        await asyncio.to_thread(self.spool.open)
        self._update_spool_gauges()
        try:
            self._client = self._client_factory(self.config)
        except ValueError as exc:  # the client refuses the URL
            await asyncio.to_thread(self.spool.close)
            raise ConfigError(f"es_url {self.connection.endpoint!r}: {exc}") from None
        if not self.connection.verify_certs:
            log.warning("es_tls_verification_off", url=self.connection.endpoint)
        self._started = True
        try:
            await self._connect()
        except ApiError as exc:
            if classify_status(exc.meta.status) != "retry":
                log.error("es_templates_refused", status=exc.meta.status, error=str(exc))
                await self._client.close()
                self._client = None
                self._started = False
                await asyncio.to_thread(self.spool.close)  # and its directory lock
                raise ConfigError(f"Elasticsearch refused the templates: {exc}") from exc
            self.health.failed(exc)
        except (TransportError, OSError) as exc:
            self.health.failed(exc)
        self._supervisor = Supervisor(
            self.health,
            connect=self._connect,
            probe=lambda: probe(self._require_client()),
            replay=self._replay_oldest,
            has_backlog=lambda: not self.spool.is_empty(),
            backoff=Backoff(self.config.retry_base_s, self.config.retry_max_s),
        )
        self._supervisor_task = asyncio.create_task(self._supervisor.run(), name="es-supervisor")
        self._supervisor_task.add_done_callback(log_supervisor_end)

    async def close(self) -> None:
        """Stop replay (the spool stays on disk for the next start) and close the client."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.closing = True
        if self._supervisor_task is not None:
            # Bounded: a stuck supervisor must not keep the worker from exiting.
            self._supervisor_task.cancel()
            _, pending = await asyncio.wait({self._supervisor_task}, timeout=SUPERVISOR_STOP_S)
            if pending:
                log.error("es_supervisor_did_not_stop", waited_s=SUPERVISOR_STOP_S)
            self._supervisor_task = None
        if self._started:
            await asyncio.to_thread(self.spool.close)
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._started = False
        self.health.up = False

    @property
    def ready(self) -> bool:
        """Started, templates installed, and Elasticsearch answering."""
        return self._started and self.health.writable

    # -- writing -----------------------------------------------------------------------

    async def write(self, batch: Sequence[Doc]) -> None:
        """Return once every document is indexed, dead-lettered, spooled, or dropped (counted)."""
        if not batch:
            return
        if not self._started:
            raise RuntimeError("ElasticsearchSink.start() must be awaited before write()")
        if self.health.writable and not self._closing:
            left = await self._deliver(batch)
        else:
            # Known down: don't make every batch wait out a retry window.
            left = list(batch)
        if left:
            await self._to_spool(left)

    async def _deliver(self, docs: Sequence[Doc]) -> list[Doc]:
        """Send ``docs``, re-sending only failed items with backoff within the retry window.

        Returns the documents still not accounted for (to spool or keep spooled).
        """
        pending = list(docs)
        window = RetryWindow(
            self._retry_window_s, self.config.retry_base_s, self.config.retry_max_s
        )
        while True:
            unreachable = False
            try:
                outcome = await BulkSender(
                    self._require_client(),
                    self.prefix,
                    self.metrics.duration,
                    self.connection.endpoint,
                ).send_isolating(pending)
            except Retryable as exc:
                retry, reason, unreachable, detail = pending, exc.reason, exc.unreachable, str(exc)
            else:
                self.health.set(True)
                self._bound_refusals(outcome)
                await self._account(outcome)
                if not outcome.retry:
                    return []
                retry = outcome.retry
                reason = outcome.retry_reasons.most_common(1)[0][0]
                detail = f"{len(retry)} items answered {dict(outcome.retry_reasons)}"
            delay = window.next_delay()
            gave_up_elsewhere = unreachable and not self.health.up
            if self._closing or gave_up_elsewhere or delay is None:
                if unreachable:
                    self.health.set(False)
                log.warning(
                    "es_bulk_retry_window_over", docs=len(retry), reason=reason, detail=detail
                )
                return retry
            self.metrics.retries_by_reason[reason].inc()
            log.info("es_bulk_retry", docs=len(retry), reason=reason, delay_s=round(delay, 3))
            await asyncio.sleep(delay)
            pending = retry

    def _bound_refusals(self, outcome: BulkOutcome) -> None:
        """Count each document's refusals; one refused ``es_doc_max_attempts`` times
        over at least ``es_doc_deadline_s`` becomes a dead letter (``retries_exhausted``)
        instead of a retry. 429 is overload, not refusal: it is not counted."""
        if not outcome.retry_failures:
            return
        cfg = self.config
        now = time.monotonic()
        refusals = self._refusals
        keep: list[ItemFailure] = []
        for failure in outcome.retry_failures:
            if failure.status == 429:
                keep.append(failure)
                continue
            doc = failure.doc
            key = (doc.kind, doc.day, doc.doc_id)
            entry = refusals.get(key)
            if entry is None:
                if len(refusals) >= REFUSALS_TRACKED:
                    for old in list(refusals)[: REFUSALS_TRACKED // 2]:  # the oldest half
                        del refusals[old]
                entry = refusals[key] = [0.0, now]
            entry[0] += 1
            if entry[0] >= cfg.es_doc_max_attempts and now - entry[1] >= cfg.es_doc_deadline_s:
                del refusals[key]
                outcome.dead.append(
                    ItemFailure(
                        doc,
                        failure.status,
                        failure.error_type,
                        f"refused {int(entry[0])} times over {now - entry[1]:.0f} s: "
                        + failure.error_reason,
                        exhausted=True,
                    )
                )
            else:
                keep.append(failure)
        if len(keep) != len(outcome.retry_failures):
            outcome.retry_failures = keep
            outcome.retry = [f.doc for f in keep]

    async def _account(self, outcome: BulkOutcome) -> None:
        for kind, count in outcome.indexed.items():
            self.metrics.indexed_by_kind[kind].inc(count)
        if outcome.duplicates:
            self.metrics.duplicates.inc(outcome.duplicates)
        if outcome.dead:
            await self._dead.write(outcome.dead)

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
        self.health.wake.set()

    # -- supervision and replay ----------------------------------------------------------

    async def _connect(self) -> None:
        """Probe the cluster; install the templates once it answers."""
        client = self._require_client()
        await probe(client)
        if not self.health.templates_ok:
            await install_templates(client, self._templates)
            self.health.templates_ok = True
            log.info("es_templates_installed", prefix=self.prefix, url=self.connection.endpoint)
        self.health.set(True)

    async def _replay_oldest(self) -> bool:
        return await replay.replay_oldest(
            self.spool,
            self._deliver,
            self.metrics,
            self.config.batch_max_docs,
            self.config.batch_max_bytes,
            reachable=lambda: self.health.up and not self._closing,
            requeue=self._requeue,
        )

    async def _requeue(self, docs: list[Doc]) -> bool:
        """Append refused documents at the spool's tail; False if it cannot take them."""
        try:
            await asyncio.to_thread(self.spool.append, docs)
        except (SpoolFull, OSError, ValueError) as exc:
            log.warning("es_spool_requeue_failed", docs=len(docs), error=str(exc))
            return False
        self._update_spool_gauges()
        return True

    async def spill(self, batch: Sequence[Doc]) -> None:
        """Put a batch straight into the spool, without trying Elasticsearch first:
        the pipeline's overflow while Elasticsearch takes less than arrives. Returns
        once the batch is spooled or dropped (counted, ``spool_full``/``spool_io``)."""
        if not self._started:
            raise RuntimeError("ElasticsearchSink.start() must be awaited before spill()")
        if batch:
            await self._to_spool(list(batch))

    # -- housekeeping ----------------------------------------------------------------------

    async def run_housekeeping(self) -> None:
        """Until cancelled: delete daily indices older than ``retention_days``,
        every ``retention_interval_s`` (first run right away)."""
        while True:
            await self.apply_retention()
            await asyncio.sleep(self.config.retention_interval_s)

    async def apply_retention(self, today: datetime | None = None) -> list[str]:
        """One retention pass; returns the deleted index names (errors logged, counted)."""
        if self._client is None or not self.health.up:
            return []
        return await retention.apply(
            self._client, self.prefix, self.config.retention_days, self.metrics, today
        )

    # -- helpers ---------------------------------------------------------------------------

    def _require_client(self) -> AsyncElasticsearch:
        if self._client is None:
            raise RuntimeError("ElasticsearchSink is not started")
        return self._client

    def _update_spool_gauges(self) -> None:
        self.metrics.spool_bytes.set(self.spool.total_bytes)
        self.metrics.spool_segments.set(self.spool.segment_count)
