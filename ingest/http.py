"""``/metrics``, ``/healthz`` and ``/readyz`` on aiohttp.

Shapes of what is served:

* ``GET /metrics``: the registry in the text format 0.0.4, or OpenMetrics (with
  exemplars) when the scraper's ``Accept`` asks for it, as Prometheus does;
  gzip-compressed when ``Accept-Encoding`` allows gzip; ``?name[]=a&name[]=b``
  keeps only those sample names (prometheus_client's ``restricted_registry``).
* ``GET /healthz``: 200 while the process serves; ``GET /readyz``: 200 when the
  worker is ready, else 503. ``HEAD`` works on all three.

The exposition is rendered (and compressed) on a worker thread: even with the
aggregates writing their own text (10,000 series in ~25-55 ms), that would stall
the loop thread; on a thread the interpreter hands the GIL back every switch
interval, so the UDP receive thread and the loop keep their turns. Scrapes that
arrive while a render of the same format is running share its result.

Memory is bounded whatever the clients do: a body is written in slices, each
waiting for the socket to take the previous one, so a client that does not read
holds at most one slice in our buffers plus a reference to a body shared with
the other scrapes; a response not fully written within ``write_timeout_s`` is
aborted; at most ``max_connections`` connections are open (one more is answered
503 and closed). Both cuts are counted in
``faaslens_http_connections_dropped_total{reason}``.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from faaslens.ingest.selfmetrics import counters_by

__all__ = ["HttpServer"]

log = structlog.get_logger("faaslens.ingest")

_EOF = b"# EOF\n"
SLICE_BYTES = 64 * 1024  # aiohttp waits for the socket past 64 KiB buffered: one slice
IDLE_TIMEOUT_S = 60.0  # an idle keep-alive connection (or one that never sends) is closed
SHUTDOWN_TIMEOUT_S = 2.0  # in-flight responses get this long on stop()
# Level 1: ~8x smaller exposition text for a fraction of level 6's time (the render
# thread holds the GIL between zlib's chunks).
GZIP_LEVEL = 1
DROP_REASONS = ("max_connections", "write_timeout")
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)


class RendersItself(Protocol):
    """Metrics that render their own exposition text (see ``Aggregates``)."""

    def rendered_apart(self) -> AbstractContextManager[None]:
        """While active on this thread, their collectors yield nothing."""
        ...

    def exposition(self, openmetrics: bool) -> str:
        """Their samples in the text or OpenMetrics format, without ``# EOF``."""
        ...


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip`` or ``*``, q > 0)."""
    allowed: dict[str, bool] = {}
    for part in accept_encoding.split(","):
        coding, _, params = part.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        allowed[coding.strip().lower()] = q > 0
    return allowed.get("gzip", allowed.get("*", False))


def gzip_bytes(body: bytes) -> bytes:
    """``body`` as a gzip member (zlib's gzip container, level ``GZIP_LEVEL``)."""
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(body) + packer.flush()


class _Gate(asyncio.Protocol):
    """Counts the open connections and refuses those past the cap.

    A thin wrapper in front of aiohttp's protocol: connection_made and
    connection_lost are exact, where aiohttp's own list lags behind a burst of accepts.
    """

    def __init__(self, server: HttpServer, inner: Callable[[], asyncio.Protocol]) -> None:
        self._server = server
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        srv = self._server
        if srv.open_connections >= srv.max_connections:
            srv.dropped["max_connections"].inc()
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_REFUSAL)
            transport.close()
            return
        srv.open_connections += 1
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._server.open_connections -= 1
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class _GatedSite(web.BaseSite):
    """A TCP site whose connections pass through :class:`_Gate`."""

    def __init__(self, runner: web.AppRunner, server: HttpServer, host: str, port: int) -> None:
        super().__init__(runner)
        self._owner = server
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        inner = self._runner.server
        assert inner is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Gate(self._owner, inner), self._host, self._port, reuse_address=True
        )


class HttpServer:
    """Serves the registry and the health endpoints.

    ``write_timeout_s``: seconds a response may take to be written before the
    connection is aborted. ``max_connections``: connections open at once, at most.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        rendered_apart: RendersItself | None = None,
        *,
        write_timeout_s: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self._ready = ready
        self._apart = rendered_apart
        self.write_timeout_s = write_timeout_s
        self.max_connections = int(max_connections)
        self.open_connections = 0
        self.dropped = counters_by(
            "faaslens_http_connections_dropped",
            "HTTP connections the worker cut short, by reason",
            "reason",
            DROP_REASONS,
            registry,
        )
        self._render_lock = threading.Lock()  # one render at a time, however many scrapers
        # (accept, gzip) -> the render under way, shared by scrapes arriving meanwhile
        self._inflight: dict[tuple[str, bool], asyncio.Future[tuple[bytes, str]]] = {}
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        """Bind and start serving."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=IDLE_TIMEOUT_S,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        self._runner = runner
        site = _GatedSite(runner, self, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await self.stop()
            raise
        addr = runner.addresses[0]
        self.address = (addr[0], addr[1])
        log.info("http listening", address=f"{addr[0]}:{addr[1]}")

    async def stop(self) -> None:
        """Stop accepting, let responses under way finish (briefly), close connections."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def render(self, accept: str, names: list[str] | None = None) -> tuple[bytes, str]:
        """Render the registry in the format ``accept`` asks for (thread-safe).

        ``names``: keep only these sample names (through prometheus_client, so the
        aggregates' collectors give them too). Returns (body, content type).
        """
        encoder, content_type = choose_encoder(accept)
        with self._render_lock:
            apart = self._apart
            if names:
                return encoder(self.registry.restricted_registry(names)), content_type
            if apart is None:
                return encoder(self.registry), content_type
            # The aggregates (most of the samples) write their own text, far faster
            # than through metric families; the rest goes through prometheus_client.
            with apart.rendered_apart():
                rest = encoder(self.registry)
            openmetrics = content_type.startswith("application/openmetrics-text")
            own = apart.exposition(openmetrics).encode()
            if openmetrics and rest.endswith(_EOF):
                return rest[: -len(_EOF)] + own + _EOF, content_type
            return rest + own, content_type

    def _render_for(self, accept: str, gzip: bool, names: list[str]) -> tuple[bytes, str]:
        body, content_type = self.render(accept, names)
        return (gzip_bytes(body) if gzip else body), content_type

    async def _rendered(self, accept: str, gzip: bool, names: list[str]) -> tuple[bytes, str]:
        loop = asyncio.get_running_loop()
        if names:
            return await loop.run_in_executor(None, self._render_for, accept, gzip, names)
        key = (accept, gzip)
        fut = self._inflight.get(key)
        if fut is None:
            fut = loop.run_in_executor(None, self._render_for, accept, gzip, names)
            self._inflight[key] = fut
            fut.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shield: one scraper hanging up must not cancel the render the others await
        return await asyncio.shield(fut)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        names = request.query.getall("name[]", [])
        body, content_type = await self._rendered(request.headers.get("Accept", ""), gzip, names)
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        if gzip:
            resp.headers["Content-Encoding"] = "gzip"
        resp.content_length = len(body)
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await resp.prepare(request)
                if request.method != "HEAD":
                    view = memoryview(body)
                    for start in range(0, len(body), SLICE_BYTES):
                        await resp.write(view[start : start + SLICE_BYTES])
                await resp.write_eof()
        except TimeoutError:
            self.dropped["write_timeout"].inc()
            log.warning("http write timed out", path=request.path, bytes=len(body))
            if request.transport is not None:
                request.transport.abort()  # frees what the socket has not taken
        except ConnectionError:
            pass  # the scraper hung up mid-body: nothing left to do for it
        return resp

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")
