"""Line listener: prometheus-aggregator lines over TCP and UDP on one address.

Off unless ``lines_listen`` is set. One metric per line, LF-terminated; the
last line of a TCP stream may lack its LF, and a datagram may hold one line or
several. Each line is parsed (:mod:`lines_parse`) and applied
(:mod:`lines_metrics`) on the event loop as it arrives: there is no queue, a
line costs a few microseconds. A refused line is counted in
``faaslens_lines_rejected_total{reason}`` and logged with the peer's address,
at most one log line per reason per interval (:class:`RejectionLog`).
A TCP line longer than ``LINE_MAX_BYTES`` is refused as ``too_long`` and the
stream resynchronises at the next LF.

TCP memory is bounded as the frame source's is (:mod:`tcp_lines`): at most
``lines_max_connections`` open connections, ``lines_max_buffered_bytes`` of
unfinished lines over all of them (past it the longest holder is closed), and
a connection silent, or leaving a line unfinished, for ``lines_idle_timeout_s``
is closed; each closing is counted in
``faaslens_lines_connections_closed_total{reason}`` and logged with the peer.
UDP needs no bound of its own: a datagram is read into a 64 KiB buffer (the
largest UDP payload), its lines are applied before the next is read, and a
line over ``LINE_MAX_BYTES`` is refused as ``too_long`` like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge

from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.config import ConfigError, IngestConfig, parse_hostport
from faaslens.ingest.lines_metrics import STORE_REASONS, LineMetrics
from faaslens.ingest.lines_parse import (
    LINE_MAX_BYTES,
    PARSE_REASONS,
    parse_declarations,
    parse_line,
)
from faaslens.ingest.selfmetrics import RejectionLog, counters_by
from faaslens.ingest.tcp_lines import CLOSE_REASONS, LineConnections, LineLimits, LineServer

__all__ = ["LINE_REASONS", "LinesSource", "start_lines"]

log = structlog.get_logger("faaslens.ingest")

LINE_REASONS: tuple[str, ...] = (*PARSE_REASONS, *STORE_REASONS)
# Binding UDP on the port the kernel gave TCP can fail if that UDP port is taken.
_BIND_ATTEMPTS = 20


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, source: LinesSource) -> None:
        self._source = source

    def datagram_received(self, data: bytes, addr: Any) -> None:
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        self._source.take(data.split(b"\n"), peer, "udp")

    def error_received(self, exc: Exception) -> None:
        log.warning("lines udp receive failed", error=repr(exc))


class LinesSource(LineServer):
    """TCP server and UDP endpoint on ``host:port`` feeding :class:`LineMetrics`."""

    def __init__(
        self,
        host: str,
        port: int,
        store: LineMetrics,
        registry: CollectorRegistry,
        rejections: RejectionLog,
        *,
        reuse_port: bool = False,
        rcvbuf: int = 4 << 20,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 1024,
        max_buffered_bytes: int = 16 << 20,
        idle_timeout_s: float = 300.0,
    ) -> None:
        self.host = host
        self.rcvbuf = rcvbuf
        self.port = port
        self.reuse_port = reuse_port
        self.store = store
        self._rejections = rejections
        self._clock = clock
        self._received = counters_by(
            "faaslens_lines_received",
            "Aggregator lines received by the line listener",
            "transport",
            ("tcp", "udp"),
            registry,
        )
        self._rejected = counters_by(
            "faaslens_lines_rejected",
            "Aggregator lines refused by the line listener",
            "reason",
            LINE_REASONS,
            registry,
        )
        limits = LineLimits(LINE_MAX_BYTES, max_connections, max_buffered_bytes, idle_timeout_s)
        self._pool = LineConnections(
            self,
            limits,
            closed=counters_by(
                "faaslens_lines_connections_closed",
                "Line listener TCP connections the worker closed to bound its memory, by reason",
                "reason",
                CLOSE_REASONS,
                registry,
            ),
            rejections=rejections,
            what="lines_connection",
            open_now=Gauge(
                "faaslens_lines_connections",
                "Open TCP connections of the line listener",
                registry=registry,
            ),
        )
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] | None = None

    def lines(self, lines: list[bytes], peer: str) -> None:
        """Complete TCP lines (the parser refuses those over ``LINE_MAX_BYTES``)."""
        self.take(lines, peer, "tcp")

    def too_long(self, peer: str, sample: bytes) -> None:
        """An unfinished TCP line past ``LINE_MAX_BYTES``: refused as ``too_long``."""
        self._received["tcp"].inc()
        self._refuse("too_long", peer, "tcp", {})

    def tail(self, tail: bytes, peer: str) -> None:
        """The sender's last line without its LF is still a line it meant to send."""
        self.take([tail], peer, "tcp")

    def _refuse(self, reason: str, peer: str, transport: str, detail: dict[str, Any]) -> None:
        self._rejected[reason].inc()
        self._rejections.note("line", reason, peer=peer, transport=transport, **detail)

    def take(self, lines: list[bytes], peer: str, transport: str) -> None:
        """Parse and apply ``lines`` from ``peer``; blank lines carry nothing."""
        now = self._clock()
        observe = self.store.observe
        n = 0
        for line in lines:
            if not line or line.isspace():
                continue
            n += 1
            parsed = parse_line(line)
            reason = parsed if isinstance(parsed, str) else observe(parsed, now)
            if reason is not None:
                detail: dict[str, Any] = {} if isinstance(parsed, str) else {"name": parsed.name}
                self._refuse(reason, peer, transport, detail)
        if n:
            self._received[transport].inc(n)

    async def start(self) -> None:
        """Bind TCP, then UDP on the same port (the one the kernel chose, for port 0)."""
        loop = asyncio.get_running_loop()
        for _ in range(_BIND_ATTEMPTS):
            server = await loop.create_server(
                self._pool.protocol, self.host, self.port, reuse_port=self.reuse_port or None
            )
            port = server.sockets[0].getsockname()[1]
            try:
                sock = self._udp_socket(port)
            except OSError:
                server.close()
                await server.wait_closed()
                if self.port:
                    raise
                continue  # port 0: the UDP twin of the TCP port was taken; try another
            break
        else:
            raise OSError(f"lines_listen: no port free for both TCP and UDP on {self.host}")
        udp, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=sock)
        # The stock transport reads into a 256 KiB buffer per datagram; lines are small.
        with contextlib.suppress(AttributeError):
            udp.max_size = 65_536  # type: ignore[attr-defined]
        self._server, self._udp = server, udp
        self.address = (self.host, port)
        self._pool.start("lines-idle-sweep")
        log.info("lines listening", address=f"{self.host}:{port}", transports="tcp+udp")

    def _udp_socket(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Capped by net.core.rmem_max; absorbs bursts while the loop is busy elsewhere.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    async def stop(self) -> None:
        """Stop accepting and close every connection (their last lines are applied)."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        await super().stop()


async def start_lines(
    config: IngestConfig, registry: CollectorRegistry, aggregates: Aggregates
) -> LinesSource:
    """The listener ``config.lines_listen`` asks for, started, with the metrics of
    ``config.lines_declarations`` declared. Series share the caps, TTL and
    overflow/expiry counters of ``aggregates``. Raises ConfigError naming the
    file and entry of a bad declaration, OSError when the address is taken."""
    store = LineMetrics(
        registry,
        overflow=aggregates.overflow,
        expired=aggregates.expired,
        series_cap=config.series_cap,
        series_ttl_s=config.series_ttl_s,
        metrics_cap=config.custom_metrics_cap,
    )
    path = config.lines_declarations
    if path:
        try:
            with open(path, "rb") as fh:
                declarations = parse_declarations(fh.read(), path)
        except (OSError, ValueError) as exc:  # DeclarationError names the file
            raise ConfigError(f"lines_declarations: {exc}") from exc
        try:
            store.declare_all(declarations, time.monotonic())
        except ValueError as exc:
            raise ConfigError(f"lines_declarations: {path}: {exc}") from exc
    host, port = parse_hostport(config.lines_listen)
    source = LinesSource(
        host,
        port,
        store,
        registry,
        RejectionLog(),
        reuse_port=config.reuse_port,
        max_connections=config.lines_max_connections,
        max_buffered_bytes=config.lines_max_buffered_bytes,
        idle_timeout_s=config.lines_idle_timeout_s,
    )
    await source.start()
    return source
