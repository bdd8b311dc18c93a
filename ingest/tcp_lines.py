"""Newline-framed TCP connections with bounded memory, shared by the frame source
(:mod:`source_tcp`) and the line listener (:mod:`source_lines`).

Each connection splits its byte stream at LF and hands the complete lines to a
:class:`LineHandler`; only the unfinished line is kept. Memory is bounded
whatever senders do:

- at most ``max_connections`` open connections: one past the cap is closed at
  once (``connection_cap``);
- an unfinished line longer than ``max_line_bytes`` is dropped and handed to
  :meth:`LineHandler.too_long` (the stream resynchronises at the next LF);
- the unfinished lines of all connections together hold at most
  ``max_buffered_bytes``: past it, the connection holding the longest is closed
  (``buffer_cap``), until the total fits;
- a connection silent for ``idle_timeout_s``, or leaving a line unfinished that
  long, is closed (``idle_timeout``).

Each closing is counted in the caller's counter by reason
(:data:`CLOSE_REASONS`) and logged with the peer through a
:class:`RejectionLog` (rate-limited); the other connections go on. Complete
lines are not checked here: the handler judges them (a line that arrives whole
in one read is never buffered).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol, cast

from prometheus_client import Counter, Gauge

from faaslens.ingest.selfmetrics import RejectionLog

__all__ = ["CLOSE_REASONS", "LineConnections", "LineHandler", "LineLimits", "LineServer"]

# Why a connection was closed by the worker: the bounded values of the reason label.
CLOSE_REASONS: Final = ("connection_cap", "buffer_cap", "idle_timeout")


class LineHandler(Protocol):
    """What a server does with the lines its connections receive."""

    def lines(self, lines: list[bytes], peer: str) -> None:
        """Complete lines (LF removed; may be empty or longer than the limit)."""

    def too_long(self, peer: str, sample: bytes) -> None:
        """An unfinished line passed ``max_line_bytes`` and was dropped (``sample``: its
        start, at most 256 bytes)."""

    def tail(self, tail: bytes, peer: str) -> None:
        """The unfinished line a connection held when it ended (EOF or close), non-empty."""


@dataclass(frozen=True, slots=True)
class LineLimits:
    """The bounds of one server's connections (bytes, connections, seconds)."""

    max_line_bytes: int
    max_connections: int = 1024
    max_buffered_bytes: int = 64 << 20
    idle_timeout_s: float = 300.0


class _Connection(asyncio.Protocol):
    __slots__ = ("_buf", "_discarding", "_pool", "last", "peer", "started", "transport")

    def __init__(self, pool: LineConnections) -> None:
        self._pool = pool
        self._buf = bytearray()  # the unfinished line (bytearray: appends are amortized O(1))
        self._discarding = False  # inside a line already refused as too long
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.last = time.monotonic()  # when data last arrived
        self.started = 0.0  # when the unfinished line began (0: none)

    @property
    def buffered(self) -> int:
        """Bytes of the unfinished line held."""
        return len(self._buf)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self._pool._opened(self)

    def data_received(self, data: bytes) -> None:
        pool = self._pool
        if pool.received_bytes is not None:
            pool.received_bytes.inc(len(data))
        self.last = now = time.monotonic()
        if self._discarding:
            i = data.find(b"\n")
            if i < 0:
                return
            data = data[i + 1 :]
            self._discarding = False
        if b"\n" not in data:
            if data:
                self._hold(data, now)
            return
        lines = data.split(b"\n")
        tail = lines.pop()
        if self._buf:
            lines[0] = bytes(self._buf) + lines[0]
            self._release()
        pool.handler.lines(lines, self.peer)
        if tail:
            self._hold(tail, now)

    def _hold(self, data: bytes, now: float) -> None:
        """Keep ``data`` as (the rest of) the unfinished line, within the limits."""
        pool = self._pool
        if len(self._buf) + len(data) > pool.limits.max_line_bytes:
            pool.handler.too_long(self.peer, bytes(self._buf[:256] or data[:256]))
            self._release()
            self._discarding = True
            return
        if not self._buf:
            self.started = now
        self._buf += data
        pool.buffered += len(data)
        if pool.buffered > pool.limits.max_buffered_bytes:
            pool._over_buffer_cap()

    def _release(self) -> None:
        self._pool.buffered -= len(self._buf)
        self._buf = bytearray()
        self.started = 0.0

    def close_for(self, reason: str) -> None:
        """Close this connection for a counted reason, dropping its unfinished line."""
        pool = self._pool
        pool.closed[reason].inc()
        pool.rejections.note(pool.what, reason, peer=self.peer, held=bytes(self._buf[:128]))
        self._release()
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool | None:
        self._flush_tail()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._flush_tail()
        self._pool._closed(self)

    def _flush_tail(self) -> None:
        if self._buf:
            tail = bytes(self._buf)
            self._release()
            self._pool.handler.tail(tail, self.peer)


class LineConnections:
    """The connections of one TCP server, within :class:`LineLimits`.

    ``protocol`` is the factory for ``loop.create_server``; :meth:`start` begins
    the idle sweep (on the running loop), :meth:`stop` ends it and closes every
    connection. ``closed``: a counter per reason of :data:`CLOSE_REASONS`;
    ``open_now``: a gauge of open connections; ``received_bytes``: counts bytes
    read; ``what``: the rejection log's name for a closed connection.
    """

    def __init__(
        self,
        handler: LineHandler,
        limits: LineLimits,
        *,
        closed: Mapping[str, Counter],
        rejections: RejectionLog,
        what: str,
        open_now: Gauge | None = None,
        received_bytes: Counter | None = None,
    ) -> None:
        missing = set(CLOSE_REASONS) - set(closed)
        if missing:
            raise ValueError(f"no counter for {sorted(missing)}")
        self.handler = handler
        self.limits = limits
        self.closed = closed
        self.rejections = rejections
        self.what = what
        self.open_now = open_now
        self.received_bytes = received_bytes
        self.buffered = 0  # bytes of unfinished lines, all connections
        self._conns: set[_Connection] = set()
        self._paused = False
        self._sweeper: asyncio.Task[None] | None = None

    def protocol(self) -> asyncio.Protocol:
        """A new connection's protocol (the ``create_server`` factory)."""
        return _Connection(self)

    @property
    def connections(self) -> int:
        """Open connections."""
        return len(self._conns)

    def start(self, name: str) -> None:
        """Begin closing idle connections (task ``name``)."""
        self._sweeper = asyncio.create_task(self._sweep_idle(), name=name)

    def _over_buffer_cap(self) -> None:
        """Unfinished lines hold too much: close the connection holding the longest."""
        while self.buffered > self.limits.max_buffered_bytes:
            worst = max(self._conns, key=lambda c: c.buffered, default=None)
            if worst is None or not worst.buffered:
                return
            worst.close_for("buffer_cap")

    async def _sweep_idle(self) -> None:
        """Close connections idle, or holding an unfinished line, past the timeout."""
        timeout = self.limits.idle_timeout_s
        interval = max(0.05, min(timeout / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - timeout
            for conn in list(self._conns):
                if conn.last < cutoff or 0.0 < conn.started < cutoff:
                    conn.close_for("idle_timeout")

    def _opened(self, conn: _Connection) -> None:
        if len(self._conns) >= self.limits.max_connections:
            conn.close_for("connection_cap")
            return
        self._conns.add(conn)
        if self.open_now is not None:
            self.open_now.set(len(self._conns))
        if self._paused and conn.transport is not None:
            conn.transport.pause_reading()

    def _closed(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        if self.open_now is not None:
            self.open_now.set(len(self._conns))

    def pause(self) -> None:
        """Stop reading on every connection (the kernel window then pushes back)."""
        self._paused = True
        for conn in self._conns:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.pause_reading()

    def resume(self) -> None:
        """Read again on every connection."""
        self._paused = False
        for conn in self._conns:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.resume_reading()

    async def stop(self) -> None:
        """End the sweep and close every connection; their unfinished lines go to
        :meth:`LineHandler.tail` before this returns."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.close()
        # connection_lost (which hands over a connection's last line) runs on a later
        # loop iteration: let it, so whatever drains next sees the tails.
        for _ in range(100):
            if not self._conns:
                break
            await asyncio.sleep(0)
        for conn in list(self._conns):  # a transport that did not report back in time
            conn._flush_tail()


class LineServer:
    """What the frame source and the line listener share: a TCP server
    (``_server``, set by the subclass's ``start``) whose connections
    ``_pool`` keeps."""

    _pool: LineConnections
    _server: asyncio.Server | None

    @property
    def buffered(self) -> int:
        """Bytes of unfinished TCP lines held, all connections."""
        return self._pool.buffered

    @property
    def connections(self) -> int:
        """Open TCP connections."""
        return self._pool.connections

    async def stop(self) -> None:
        """Stop accepting, then close every connection (their unfinished lines
        go to :meth:`LineHandler.tail` first)."""
        if self._server is not None:
            self._server.close()
        await self._pool.stop()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
