"""The worker's composition root: builds the components, runs them, stops them in order.

Start: sink, pipeline, HTTP (health answers while the rest starts), TCP,
UDP, housekeeping. Stop, under one deadline (``shutdown_timeout_s``): stop
the sources (the UDP thread first hands off what the kernel still holds),
drain the queue through validation, flush the batches to the sink, close
the sink, then stop housekeeping and HTTP. Nothing received is dropped
unless the deadline passes, and then it is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry

from faaslens.commandline import EXIT_OK, EXIT_START, EXIT_USAGE, fail
from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.batcher import Batcher
from faaslens.ingest.config import ConfigError, IngestConfig, config_from_argv, parse_hostport
from faaslens.ingest.events import Sink
from faaslens.ingest.http import HttpServer
from faaslens.ingest.pending import Pending
from faaslens.ingest.pipeline import Pipeline
from faaslens.ingest.selfmetrics import RejectionLog, SelfMetrics, totals
from faaslens.ingest.sequence import SequenceTracker
from faaslens.ingest.settle import Settler
from faaslens.ingest.sink_null import NullSink
from faaslens.ingest.source_lines import LinesSource, start_lines
from faaslens.ingest.source_tcp import TcpSource
from faaslens.ingest.source_udp import UdpSource
from faaslens.ingest.validate import Validator

__all__ = ["Worker", "configure_logging", "main", "make_sink", "tune_process"]

log = structlog.get_logger("faaslens.ingest")

SWITCH_INTERVAL_S = 0.005
# Young-generation collections per allocated container: the default (700) runs one
# every few frames, each walking the batches being built.
GC_THRESHOLD = (20_000, 20, 50)


def tune_process() -> None:
    """Interpreter settings for a receive-heavy worker process (called by ``main``)."""
    # The receive thread and the loop trade the GIL at most every switch interval.
    # Shorter intervals keep the socket drained sooner but each trade costs a pair of
    # context switches: at 0.2 ms they took a third of the worker's CPU at load
    # (bench/worker_throughput.py). The kernel buffer (udp_rcvbuf) holds far more
    # than one interval's datagrams, so the interval is left long.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLD)
    # What exists now (modules, registries) lives as long as the process: keep it out
    # of full collections.
    gc.freeze()


class Worker:
    """The ingest worker: UDP/TCP in, sink + Prometheus aggregates out."""

    def __init__(
        self,
        config: IngestConfig,
        registry: CollectorRegistry | None = None,
        sink: Sink | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self._sink = sink
        self.metrics = SelfMetrics(self.registry)
        self.aggregates = Aggregates(
            self.registry,
            series_cap=config.series_cap,
            series_ttl_s=config.series_ttl_s,
            custom_metrics_cap=config.custom_metrics_cap,
            custom_buckets=config.custom_histogram_buckets,
            dedupe_window_s=config.dedupe_window_s,
            dedupe_max_keys=config.dedupe_max_keys,
        )
        self.sequences = SequenceTracker(ttl_s=config.series_ttl_s)
        self.validator = Validator(
            hmac_keys=config.hmac_keys,
            require_signature=config.require_signature,
            signature_max_age_s=config.signature_max_age_s,
            max_age_s=config.timestamp_max_age_s or None,
            max_ahead_s=config.timestamp_max_ahead_s or None,
            max_frame_bytes=config.max_frame_bytes,
        )
        self.settler = Settler(
            Pending(
                cap=config.pending_max,
                grace_s=config.unfinished_grace_s,
                default_timeout_s=config.unfinished_default_timeout_s,
            ),
            self.aggregates.observe_started,
            self.aggregates.observe_unfinished,
        )
        self.metrics.watch_settling(self._settling_figures)
        self.pipeline: Pipeline | None = None
        self.udp: UdpSource | None = None
        self.tcp: TcpSource | None = None
        self.http: HttpServer | None = None
        self.lines: LinesSource | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._stopped = False

    @property
    def sink(self) -> Sink:
        """The sink (created by :meth:`start` if none was given)."""
        if self._sink is None:
            raise RuntimeError("worker not started")
        return self._sink

    @property
    def udp_address(self) -> tuple[str, int] | None:
        """Actual UDP address once started (None if disabled)."""
        return self.udp.address if self.udp else None

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """Actual TCP address once started (None if disabled)."""
        return self.tcp.address if self.tcp else None

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Actual HTTP address once started (None if disabled)."""
        return self.http.address if self.http else None

    def ready(self) -> bool:
        """Sources bound and the sink ready."""
        if not self._started or self._stopped:
            return False
        return bool(getattr(self._sink, "ready", True))

    async def start(self) -> None:
        """Start everything; on failure, undo what was started and re-raise."""
        cfg = self.config
        if self._sink is None:
            self._sink = make_sink(cfg, self.registry)
        try:
            if cfg.http_listen:
                host, port = parse_hostport(cfg.http_listen)
                self.http = HttpServer(
                    host,
                    port,
                    self.registry,
                    self.ready,
                    rendered_apart=self.aggregates,
                    write_timeout_s=cfg.http_write_timeout_s,
                    max_connections=cfg.http_max_connections,
                )
                with _naming("http_listen", cfg.http_listen):
                    await self.http.start()
            with _naming_path(cfg):
                await self._sink.start()
            self.pipeline = Pipeline(
                validator=self.validator,
                aggregates=self.aggregates,
                metrics=self.metrics,
                sink=self._sink,
                batcher=Batcher(cfg.batch_max_docs, cfg.batch_max_bytes),
                queue_max=cfg.queue_max,
                queue_max_bytes=cfg.queue_max_bytes,
                batch_max_wait_s=cfg.batch_max_wait_s,
                sequences=self.sequences,
                rejections=RejectionLog(),
                retry_base_s=cfg.retry_base_s,
                retry_max_s=cfg.retry_max_s,
                settler=self.settler,
            )
            self._load_pending()
            self.pipeline.start()
            reuse_port = cfg.reuse_port
            if cfg.tcp_listen:
                host, port = parse_hostport(cfg.tcp_listen)
                self.tcp = TcpSource(
                    host,
                    port,
                    self.pipeline.offer,
                    self.pipeline.reject,
                    self.metrics,
                    max_frame_bytes=cfg.max_frame_bytes,
                    reuse_port=reuse_port,
                    max_connections=cfg.tcp_max_connections,
                    max_buffered_bytes=cfg.tcp_max_buffered_bytes,
                    idle_timeout_s=cfg.tcp_idle_timeout_s,
                    rejections=self.pipeline.rejections,
                )
                with _naming("tcp_listen", cfg.tcp_listen):
                    await self.tcp.start()
                self.pipeline.add_pause_hooks(self.tcp.pause, self.tcp.resume)
            if cfg.udp_listen:
                host, port = parse_hostport(cfg.udp_listen)
                self.udp = UdpSource(
                    host,
                    port,
                    self.pipeline.offer_threadsafe,
                    self.metrics,
                    rcvbuf=cfg.udp_rcvbuf,
                    reuse_port=reuse_port,
                )
                with _naming("udp_listen", cfg.udp_listen):
                    self.udp.start()
                self.pipeline.on_rejection = self.udp.capture_peers
            if cfg.lines_listen:
                with _naming("lines_listen", cfg.lines_listen):
                    self.lines = await start_lines(cfg, self.registry, self.aggregates)
            self._spawn(self._sweep_loop(), "aggregates-sweep")
            housekeeping: Callable[[], Awaitable[None]] | None = getattr(
                self._sink, "run_housekeeping", None
            )
            if housekeeping is not None:
                self._spawn(housekeeping(), "sink-housekeeping")
        except BaseException:
            await self.stop()
            raise
        self._started = True
        log.info(
            "worker started", udp=self.udp_address, tcp=self.tcp_address, http=self.http_address
        )

    def _settling_figures(self) -> tuple[int, int, int]:
        settler = self.settler
        return len(settler.pending), settler.pending.overflow, settler.late

    def _load_pending(self) -> None:
        """Read back the pending table a graceful stop saved (then remove the file)."""
        path = Path(self.config.pending_state_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("pending state not readable", path=str(path), error=str(exc))
            return
        try:
            n = self.settler.pending.load(data, time.monotonic(), time.time_ns() // 1_000_000)
        except ValueError as exc:
            log.error("pending state ignored", path=str(path), error=str(exc))
            n = 0
        log.info("pending invocations restored", count=n, path=str(path))
        path.unlink(missing_ok=True)

    def _save_pending(self) -> None:
        """Write the pending table for the next start (atomically: temp file + rename)."""
        pending = self.settler.pending
        path = Path(self.config.pending_state_path)
        if pending.is_empty() and not path.exists():
            return
        data = pending.dump(time.monotonic(), time.time_ns() // 1_000_000)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("pending state not saved", path=str(path), error=str(exc))
            return
        log.info("pending invocations saved", count=len(pending), path=str(path))

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", task=task.get_name(), error=repr(task.exception()))

    async def _sweep_loop(self) -> None:
        """Expire idle series and forgotten senders, a few times per TTL."""
        interval = max(0.05, min(self.config.series_ttl_s / 4, 60.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            self.aggregates.sweep(now)
            self.sequences.sweep(now)
            if self.lines is not None:
                self.lines.store.sweep(now)

    async def stop(self) -> None:
        """Ordered, graceful stop under ``shutdown_timeout_s``. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + self.config.shutdown_timeout_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        # 1. sources: stop taking new input, hand off what was received
        if self.lines is not None:
            await self.lines.stop()
        if self.tcp is not None:
            try:
                await asyncio.wait_for(self.tcp.stop(), left())
            except TimeoutError:
                log.error("tcp source did not close in time")
        if self.udp is not None:
            await asyncio.to_thread(self.udp.stop, left())
        # 2. drain: validate everything queued, flush the batches through the sink
        if self.pipeline is not None:
            try:
                await asyncio.wait_for(self.pipeline.drain(), left())
            except TimeoutError:
                self.pipeline.abandon()
        # 3. what is still pending, for the next start (unfinished ones were settled above)
        self._save_pending()
        # 4. the sink
        if self._sink is not None:
            try:
                await asyncio.wait_for(self._sink.close(), left())
            except TimeoutError:
                log.error("sink did not close in time")
        # 5. housekeeping and HTTP last, so /metrics tells the story until the end
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        log.info("worker stopped", **totals(self.registry))

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class StartError(OSError):
    """The worker could not start, with the setting behind it (an address in use, ...)."""

    def __str__(self) -> str:
        return str(self.strerror)  # the message names the setting; no "[Errno n]" prefix


# Settings naming a file or a folder the worker opens at start, for _naming_path.
PATH_SETTINGS = (
    "state_dir",
    "spool_dir",
    "dead_letter_path",
    "pending_state_path",
    "es_templates_dir",
    "es_ca_certs",
    "es_password_file",
    "es_api_key_file",
    "lines_declarations",
)


def _reason(exc: OSError) -> str:
    # asyncio's bind error repeats the address in strerror; the errno's text is enough.
    return os.strerror(exc.errno) if exc.errno else str(exc)


@contextlib.contextmanager
def _naming(setting: str, value: str) -> Iterator[None]:
    """Re-raise an OSError as a :class:`StartError` naming ``setting`` and its value."""
    try:
        yield
    except StartError:
        raise
    except OSError as exc:
        raise StartError(exc.errno, f"{setting} {value!r}: {_reason(exc)}") from exc


@contextlib.contextmanager
def _naming_path(config: IngestConfig) -> Iterator[None]:
    """Re-raise an OSError on a file as a :class:`StartError` naming the path setting
    that holds the file (or its folder); other OSErrors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise
        filename = os.fsdecode(exc.filename)
        holders = [
            (len(value), setting, value)
            for setting in PATH_SETTINGS
            if (value := str(getattr(config, setting) or ""))
            and (filename == value or filename.startswith(value.rstrip("/") + "/"))
        ]
        if not holders:
            raise
        _, setting, value = max(holders)  # the most specific: spool_dir inside state_dir
        where = "" if filename == value else f" ({filename})"
        raise StartError(exc.errno, f"{setting} {value!r}{where}: {_reason(exc)}") from exc


def make_sink(config: IngestConfig, registry: CollectorRegistry) -> Sink:
    """The sink ``config.sink`` names."""
    if config.sink == "null":
        return NullSink(config.es_index_prefix)
    if config.sink == "elasticsearch":
        from faaslens.ingest.sink_es.sink import ElasticsearchSink  # heavy import, only when used

        return ElasticsearchSink(config, registry)
    raise ConfigError(f"sink: expected 'elasticsearch' or 'null', got {config.sink!r}")


def configure_logging(level: str = "info") -> None:
    """JSON lines on stderr via structlog, at ``level``."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"log_level: unknown level {level!r}")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )


async def _serve(config: IngestConfig) -> int:
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        with contextlib.suppress(ValueError):
            registry.register(collector)
    worker = Worker(config, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start()
    except ConfigError as exc:  # a setting only starting could check (a file's content)
        log.error("worker failed to start", error=str(exc))
        return fail("faaslens ingest", str(exc), EXIT_USAGE)
    except OSError as exc:
        log.error("worker failed to start", error=str(exc))
        return fail("faaslens ingest", str(exc), EXIT_START)
    await stop.wait()
    log.info("stopping on signal")
    await worker.stop()
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    """``faaslens ingest``: run the worker until SIGTERM / SIGINT.

    Returns the exit status of :mod:`faaslens.commandline`: 0 stopped on a
    signal, 2 a bad setting, 5 could not start (an address in use, ...).
    """
    try:
        _, config = config_from_argv(
            argv,
            "ingest",
            "Run the ingest worker: frames in over UDP and TCP, documents into "
            "Elasticsearch, aggregates on /metrics, until SIGTERM or SIGINT.",
        )
        configure_logging(config.log_level)
    except ConfigError as exc:
        return fail("faaslens ingest", str(exc), EXIT_USAGE)
    tune_process()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(config))
    code: int = uvloop.run(_serve(config))
    return code
