"""TCP source: newline-framed frames on many connections, with backpressure.

A line longer than ``max_frame_bytes`` is counted as ``too_large`` and
skipped: the stream resynchronises at the next newline. When the pipeline's
queue is full every connection stops reading (the kernel window then pushes
back on senders) until it has drained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import cast

import structlog

from faaslens.ingest.selfmetrics import SelfMetrics

__all__ = ["TcpSource"]

log = structlog.get_logger("faaslens.ingest")


class _Connection(asyncio.Protocol):
    __slots__ = ("_buf", "_discarding", "_source", "peer", "transport")

    def __init__(self, source: TcpSource) -> None:
        self._source = source
        self._buf = b""
        self._discarding = False
        self.transport: asyncio.Transport | None = None
        self.peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self._source._opened(self)

    def data_received(self, data: bytes) -> None:
        src = self._source
        src._metrics.tcp_bytes.inc(len(data))
        if self._discarding:
            i = data.find(b"\n")
            if i < 0:
                return
            data = data[i + 1 :]
            self._discarding = False
        if self._buf:
            data = self._buf + data
        if b"\n" not in data:
            tail = data
            frames: list[bytes] = []
        else:
            frames = data.split(b"\n")
            tail = frames.pop()
        limit = src.max_frame_bytes
        if len(tail) > limit:
            src._reject_long(self.peer)
            self._discarding = True
            tail = b""
        self._buf = tail
        if frames:
            src._submit(frames, self.peer)

    def eof_received(self) -> bool | None:
        self._flush_tail()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._flush_tail()
        self._source._closed(self)

    def _flush_tail(self) -> None:
        # A last frame without its newline is still a frame the sender meant to send.
        if self._buf:
            tail, self._buf = self._buf, b""
            self._source._submit([tail], self.peer)


class TcpSource:
    """An asyncio server feeding newline-separated frames to the pipeline."""

    def __init__(
        self,
        host: str,
        port: int,
        submit: Callable[[Iterable[bytes]], None],
        reject: Callable[..., None],
        metrics: SelfMetrics,
        *,
        max_frame_bytes: int = 1 << 20,
        reuse_port: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.max_frame_bytes = max_frame_bytes
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
        log.info("tcp listening", address=f"{addr[0]}:{addr[1]}")

    def _submit(self, frames: list[bytes], peer: str) -> None:
        limit = self.max_frame_bytes
        ok = [f for f in frames if f]  # blank lines carry nothing
        if any(len(f) > limit for f in ok):
            for f in ok:
                if len(f) > limit:
                    self._reject_long(peer)
            ok = [f for f in ok if len(f) <= limit]
        if ok:
            self._metrics.tcp_frames.inc(len(ok))
            self._submit_frames(ok)

    def _reject_long(self, peer: str) -> None:
        self._reject("too_large", peer=peer, transport="tcp")

    def _opened(self, conn: _Connection) -> None:
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
