"""TCP source: newline-framed frames on many connections, with backpressure
and bounded memory.

A line longer than ``max_frame_bytes`` is counted as ``too_large`` and
skipped: the stream resynchronises at the next newline. When the pipeline's
queue is full every connection stops reading (the kernel window then pushes
back on senders) until it has drained.

Memory is bounded whatever senders do: at most ``max_connections`` open
connections (a connection past the cap is closed at once), unfinished lines
of all connections together hold at most ``max_buffered_bytes`` (past it,
the connection holding the longest unfinished line is closed), and a
connection that sends nothing for ``idle_timeout_s``, or leaves a line
unfinished that long, is closed. Each closing is counted by reason in
``faaslens_tcp_connections_closed_total``; the other connections go on.

A connection that ends in the middle of a line hands the tail over if it is
a whole frame (a sender may omit the last newline); otherwise the tail is
rejected as ``truncated``, not as bad JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import cast

import orjson
import structlog

from faaslens.ingest.selfmetrics import RejectionLog, SelfMetrics

__all__ = ["TcpSource", "is_whole_frame"]

log = structlog.get_logger("faaslens.ingest")


def is_whole_frame(tail: bytes) -> bool:
    """True if ``tail`` parses as a frame's JSON (after a signature prefix, if any)."""
    body = tail
    if body[:1] == b"s" and body[2:3] == b" ":  # "s1 key sig json": the JSON is the 4th part
        parts = body.split(b" ", 3)
        body = parts[3] if len(parts) == 4 else b""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


class _Connection(asyncio.Protocol):
    __slots__ = ("_buf", "_discarding", "_source", "last", "peer", "started", "transport")

    def __init__(self, source: TcpSource) -> None:
        self._source = source
        self._buf = bytearray()  # the unfinished line (bytearray: appends are amortized O(1))
        self._discarding = False
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
        self._source._opened(self)

    def data_received(self, data: bytes) -> None:
        src = self._source
        src._metrics.tcp_bytes.inc(len(data))
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
        frames = data.split(b"\n")
        tail = frames.pop()
        if self._buf:
            frames[0] = bytes(self._buf) + frames[0]
            self._release()
        src._submit(frames, self.peer)
        if tail:
            self._hold(tail, now)

    def _hold(self, data: bytes, now: float) -> None:
        """Keep ``data`` as (the rest of) the unfinished line, within the limits."""
        src = self._source
        if len(self._buf) + len(data) > src.max_frame_bytes:
            src._reject_long(self.peer, bytes(self._buf[:256] or data[:256]))
            self._release()
            self._discarding = True
            return
        if not self._buf:
            self.started = now
        self._buf += data
        src.buffered += len(data)
        if src.buffered > src.max_buffered_bytes:
            src._over_buffer_cap()

    def _release(self) -> None:
        self._source.buffered -= len(self._buf)
        self._buf = bytearray()
        self.started = 0.0

    def close_for(self, reason: str) -> None:
        """Close this connection for a counted reason, dropping its unfinished line."""
        src = self._source
        src._metrics.tcp_closed[reason].inc()
        src.rejections.note("tcp_connection", reason, peer=self.peer, held=bytes(self._buf[:128]))
        self._release()
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool | None:
        self._flush_tail()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._flush_tail()
        self._source._closed(self)

    def _flush_tail(self) -> None:
        if not self._buf:
            return
        tail = bytes(self._buf)
        self._release()
        src = self._source
        if is_whole_frame(tail):  # a last frame without its newline
            src._submit([tail], self.peer)
        else:
            src._reject("truncated", peer=self.peer, sample=tail[:256], transport="tcp")


class TcpSource:
    """An asyncio server feeding newline-separated frames to the pipeline."""

    def __init__(
        self,
        host: str,
        port: int,
        submit: Callable[[Iterable[bytes], str], None],
        reject: Callable[..., None],
        metrics: SelfMetrics,
        *,
        max_frame_bytes: int = 1 << 20,
        reuse_port: bool = False,
        max_connections: int = 1024,
        max_buffered_bytes: int = 64 << 20,
        idle_timeout_s: float = 300.0,
        rejections: RejectionLog | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.max_buffered_bytes = max_buffered_bytes
        self.idle_timeout_s = idle_timeout_s
        self.buffered = 0  # bytes of unfinished lines, all connections
        self.rejections = rejections or RejectionLog()
        self._sweeper: asyncio.Task[None] | None = None
        self.reuse_port = reuse_port
        self._submit_frames = submit
        self._reject = reject
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self._paused = False
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        """Bind and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            self.host,
            self.port,
            reuse_port=self.reuse_port or None,
            backlog=1024,
        )
        addr = self._server.sockets[0].getsockname()
        self.address = (addr[0], addr[1])
        self._sweeper = asyncio.create_task(self._sweep_idle(), name="tcp-idle-sweep")
        log.info("tcp listening", address=f"{addr[0]}:{addr[1]}")

    def _submit(self, frames: list[bytes], peer: str) -> None:
        limit = self.max_frame_bytes
        ok = [f for f in frames if f]  # blank lines carry nothing
        if any(len(f) > limit for f in ok):
            for f in ok:
                if len(f) > limit:
                    self._reject_long(peer, f[:256])
            ok = [f for f in ok if len(f) <= limit]
        if ok:
            self._metrics.tcp_frames.inc(len(ok))
            self._submit_frames(ok, peer)

    def _reject_long(self, peer: str, sample: bytes) -> None:
        self._reject("too_large", peer=peer, sample=sample, transport="tcp")

    def _over_buffer_cap(self) -> None:
        """Unfinished lines hold too much: close the connection holding the longest."""
        while self.buffered > self.max_buffered_bytes:
            worst = max(self._conns, key=lambda c: c.buffered, default=None)
            if worst is None or not worst.buffered:
                return
            worst.close_for("buffer_cap")

    async def _sweep_idle(self) -> None:
        """Close connections idle, or holding an unfinished line, past the timeout."""
        interval = max(0.05, min(self.idle_timeout_s / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.idle_timeout_s
            for conn in list(self._conns):
                if conn.last < cutoff or 0.0 < conn.started < cutoff:
                    conn.close_for("idle_timeout")

    def _opened(self, conn: _Connection) -> None:
        if len(self._conns) >= self.max_connections:
            conn.close_for("connection_cap")
            return
        self._conns.add(conn)
        self._metrics.tcp_connections.set(len(self._conns))
        if self._paused and conn.transport is not None:
            conn.transport.pause_reading()

    def _closed(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        self._metrics.tcp_connections.set(len(self._conns))

    def pause(self) -> None:
        """Stop reading on every connection (the pipeline's queue is full)."""
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

    @property
    def connections(self) -> int:
        """Open connections."""
        return len(self._conns)

    async def stop(self) -> None:
        """Stop accepting, then close every connection (their pending tails are queued)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.close()
        # connection_lost (which hands over a connection's last partial frame) runs
        # on a later loop iteration: let it, so the drain that follows sees it.
        for _ in range(100):
            if not self._conns:
                break
            await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
