"""A small HTTP/1.1 server for ``/metrics``, ``/healthz`` and ``/readyz``.

The exposition is rendered on a worker thread: even with the aggregates writing
their own text (10,000 series in ~25-55 ms), that would stall the loop thread.
On a thread the interpreter hands the GIL back every switch interval, so
the UDP receive thread and the loop keep their turns. OpenMetrics (with
exemplars) is served when the scraper's ``Accept`` asks for it, as
Prometheus does; otherwise the text format 0.0.4.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["HttpServer"]


_EOF = b"# EOF\n"


class RendersItself(Protocol):
    """Metrics that render their own exposition text (see ``Aggregates``)."""

    def rendered_apart(self) -> AbstractContextManager[None]:
        """While active on this thread, their collectors yield nothing."""
        ...

    def exposition(self, openmetrics: bool) -> str:
        """Their samples in the text or OpenMetrics format, without ``# EOF``."""
        ...


log = structlog.get_logger("faaslens.ingest")

MAX_HEAD = 16 * 1024
IDLE_TIMEOUT_S = 60.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class HttpServer:
    """Serves the registry and the health endpoints."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        rendered_apart: RendersItself | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self._ready = ready
        self._apart = rendered_apart
        self._server: asyncio.Server | None = None
        self._render_lock = threading.Lock()  # one render at a time, however many scrapers
        self._clients: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, limit=MAX_HEAD
        )
        addr = self._server.sockets[0].getsockname()
        self.address = (addr[0], addr[1])
        log.info("http listening", address=f"{addr[0]}:{addr[1]}")

    async def stop(self) -> None:
        """Stop accepting and close open connections."""
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def render(self, accept: str) -> tuple[bytes, str]:
        """Render the registry in the format ``accept`` asks for (thread-safe)."""
        encoder, content_type = choose_encoder(accept)
        with self._render_lock:
            apart = self._apart
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

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.LimitOverrunError:
            await self._respond(writer, 400, b"request head too large\n", "text/plain", False)
        except asyncio.CancelledError:
            # stop() cancels idle keep-alive connections. Ending normally: on 3.11 the
            # stream protocol's done-callback would log a cancelled handler as an error.
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; return True to keep the connection open."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await self._respond(writer, 400, b"bad request line\n", "text/plain", False)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "content-length" in headers or "transfer-encoding" in headers:
            keep = False  # we take no bodies: do not try to find the next request after one
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await self._respond(writer, 405, b"method not allowed\n", "text/plain", False)
            return False
        if path == "/metrics":
            loop = asyncio.get_running_loop()
            body, ctype = await loop.run_in_executor(None, self.render, headers.get("accept", ""))
            status = 200
        elif path == "/healthz":
            status, body, ctype = 200, b"ok\n", "text/plain"
        elif path == "/readyz":
            ok = self._ready()
            status, body, ctype = (
                (200, b"ready\n", "text/plain") if ok else (503, b"not ready\n", "text/plain")
            )
        else:
            status, body, ctype = 404, b"not found\n", "text/plain"
        await self._respond(writer, status, body, ctype, keep, head_only=method == "HEAD")
        return keep

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str,
        keep: bool,
        *,
        head_only: bool = False,
    ) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        ).encode("latin-1")
        writer.write(head if head_only else head + body)
        await writer.drain()
