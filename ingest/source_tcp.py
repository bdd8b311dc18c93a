"""TCP source: newline-framed frames on many connections, with backpressure
and bounded memory.

A line longer than ``max_frame_bytes`` is counted as ``too_large`` and
skipped: the stream resynchronises at the next newline. When the pipeline's
queue is full every connection stops reading (the kernel window then pushes
back on senders) until it has drained.

Memory is bounded whatever senders do (:mod:`tcp_lines`): at most
``max_connections`` open connections (a connection past the cap is closed at
once), unfinished lines of all connections together hold at most
``max_buffered_bytes`` (past it, the connection holding the longest
unfinished line is closed), and a connection that sends nothing for
``idle_timeout_s``, or leaves a line unfinished that long, is closed. Each
closing is counted by reason in ``faaslens_tcp_connections_closed_total``;
the other connections go on.

A connection that ends in the middle of a line hands the tail over if it is
a whole frame (a sender may omit the last newline); otherwise the tail is
rejected as ``truncated``, not as bad JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import orjson
import structlog

from faaslens.ingest.selfmetrics import RejectionLog, SelfMetrics
from faaslens.ingest.tcp_lines import LineConnections, LineLimits, LineServer

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


class TcpSource(LineServer):
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
        self.reuse_port = reuse_port
        self._submit_frames = submit
        self._reject = reject
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None
        limits = LineLimits(max_frame_bytes, max_connections, max_buffered_bytes, idle_timeout_s)
        self._pool = LineConnections(
            self,
            limits,
            closed=metrics.tcp_closed,
            rejections=rejections or RejectionLog(),
            what="tcp_connection",
            open_now=metrics.tcp_connections,
            received_bytes=metrics.tcp_bytes,
        )

    def pause(self) -> None:
        """Stop reading on every connection (the pipeline's queue is full)."""
        self._pool.pause()

    def resume(self) -> None:
        """Read again on every connection."""
        self._pool.resume()

    async def start(self) -> None:
        """Bind and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._pool.protocol,
            self.host,
            self.port,
            reuse_port=self.reuse_port or None,
            backlog=1024,
        )
        addr = self._server.sockets[0].getsockname()
        self.address = (addr[0], addr[1])
        self._pool.start("tcp-idle-sweep")
        log.info("tcp listening", address=f"{addr[0]}:{addr[1]}")

    def lines(self, frames: list[bytes], peer: str) -> None:
        """Hand whole frames to the pipeline; longer ones are rejected as ``too_large``."""
        limit = self.max_frame_bytes
        ok = [f for f in frames if f]  # blank lines carry nothing
        if any(len(f) > limit for f in ok):
            for f in ok:
                if len(f) > limit:
                    self.too_long(peer, f[:256])
            ok = [f for f in ok if len(f) <= limit]
        if ok:
            self._metrics.tcp_frames.inc(len(ok))
            self._submit_frames(ok, peer)

    def too_long(self, peer: str, sample: bytes) -> None:
        """A frame past ``max_frame_bytes``: rejected as ``too_large``."""
        self._reject("too_large", peer=peer, sample=sample, transport="tcp")

    def tail(self, tail: bytes, peer: str) -> None:
        """What a closing connection held: a last frame without its newline, else
        ``truncated``."""
        if is_whole_frame(tail):
            self.lines([tail], peer)
        else:
            self._reject("truncated", peer=peer, sample=tail[:256], transport="tcp")
