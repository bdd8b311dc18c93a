"""Whether Elasticsearch can take writes, and the supervisor that finds out.

:class:`Health` holds the up/down state (logged on each change, exported as
``faaslens_es_up``) and the wake-up event that new spool data sets. The
supervisor task probes with backoff while Elasticsearch is down, installs the
templates before the first document is sent, replays the spool once it
answers, and probes cheaply while idle so that ``ready`` stays truthful.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError

from faaslens.backoff import Backoff
from faaslens.ingest.aio import wait_event
from faaslens.ingest.sink_es.bulk import classify_status
from faaslens.ingest.sink_es.client import explain
from faaslens.ingest.sink_es.metrics import SinkMetrics

log = structlog.get_logger("faaslens.sink_es")

# While idle and up, probe this often so faaslens_es_up and `ready` stay truthful.
HEALTH_INTERVAL_S = 10.0
# Errors a probe or a template install may raise while Elasticsearch is away.
PROBE_ERRORS = (ApiError, TransportError, OSError)


class Health:
    """Up/down state of Elasticsearch as the sink last saw it."""

    def __init__(
        self, metrics: SinkMetrics, endpoint: str, has_backlog: Callable[[], bool]
    ) -> None:
        self.metrics = metrics
        self._has_backlog = has_backlog
        self.endpoint = endpoint  # shown in logs: never with credentials
        self.up = False
        self.templates_ok = False
        self.wake = asyncio.Event()
        self._last_failure = ""

    @property
    def writable(self) -> bool:
        """Answering, with the templates installed."""
        return self.up and self.templates_ok

    def failed(self, exc: BaseException, next_probe_s: float | None = None) -> str:
        """A probe or template install failed: count it by reason, log the one-line
        explanation when it differs from the last one, mark Elasticsearch down.
        Returns the bounded reason."""
        reason, line = explain(exc, self.endpoint)
        self.metrics.connect_failures_by_reason[reason].inc()
        if line != self._last_failure:
            self._last_failure = line
            log.warning("es_unavailable", reason=reason, error=line, next_probe_s=next_probe_s)
        self.set(False)
        return reason

    def set(self, up: bool) -> None:
        """Record an answer (True) or its absence (False); logs each change once."""
        if up != self.up:
            if up:
                self._last_failure = ""
                log.info("es_up", url=self.endpoint)
            else:
                log.warning("es_down", url=self.endpoint)
        self.up = up
        self.metrics.es_up.set(1 if up else 0)
        if up and self._has_backlog():
            self.wake.set()  # back: replay now, not after the idle interval


class Supervisor:
    """The background task of the sink (see the module docstring).

    ``connect`` probes and installs the templates (raising ``PROBE_ERRORS``),
    ``probe`` is the idle health check, ``replay`` replays the oldest spool
    segment (True when done) and ``has_backlog`` says whether the spool holds any.
    """

    def __init__(
        self,
        health: Health,
        *,
        connect: Callable[[], Awaitable[None]],
        probe: Callable[[], Awaitable[None]],
        replay: Callable[[], Awaitable[bool]],
        has_backlog: Callable[[], bool],
        backoff: Backoff,
    ) -> None:
        self.health = health
        self._connect = connect
        self._probe = probe
        self._replay = replay
        self._has_backlog = has_backlog
        self._backoff = backoff
        self.closing = False

    async def run(self) -> None:
        health = self.health
        while not self.closing:
            if not health.writable:
                try:
                    await self._connect()
                    self._backoff.reset()
                except PROBE_ERRORS as exc:
                    delay = self._backoff.next()
                    if isinstance(exc, ApiError) and classify_status(exc.meta.status) == "dead":
                        # Answering but refusing the templates: nothing will be sent until fixed.
                        log.error("es_templates_refused", status=exc.meta.status, error=str(exc))
                        health.set(False)
                    else:
                        health.failed(exc, round(delay, 3))
                    await asyncio.sleep(delay)
                    continue
            if self._has_backlog():
                try:
                    done = await self._replay()
                except (OSError, ValueError) as exc:
                    # An unreadable segment file must not end replay for good: log, retry later.
                    log.error("es_spool_replay_failed", error=repr(exc))
                    done = False
                if done:
                    self._backoff.reset()
                else:
                    await asyncio.sleep(self._backoff.next())
                continue
            if await wait_event(health.wake, HEALTH_INTERVAL_S):
                health.wake.clear()
                continue
            try:  # idle: a cheap probe keeps `ready` and the gauge truthful
                await self._probe()
            except PROBE_ERRORS as exc:
                health.failed(exc)


def log_supervisor_end(task: asyncio.Task[None]) -> None:
    """A supervisor that dies of a bug stops replay: say so loudly."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("es_supervisor_crashed", error=repr(exc), exc_info=exc)
