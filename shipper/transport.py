"""Getting frames to the worker: a connected non-blocking UDP socket, or TCP.

Sends are synchronous and bounded in time, so everything an invocation
produced has left the process before its handler returns (a frozen Lambda
sandbox sends nothing). A failure is counted in :class:`Stats`, never raised.
"""

from __future__ import annotations

import socket
import time
from collections import deque

from faaslens.backoff import Backoff

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class Stats:
    """What the shipper did, for ``shipper.stats()``. Plain ints: cheap to bump."""

    __slots__ = (
        "bytes_sent",
        "dropped_lines",
        "dropped_metrics",
        "frames_late",
        "frames_oversize",
        "frames_sent",
        "internal_errors",
        "invocations",
        "lines",
        "lines_flushed",
        "send_errors",
        "tcp_dropped",
        "tcp_reconnects",
        "timeouts",
        "truncated",
    )

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.dropped_lines = 0  # kept-aside lines pushed out of a full debug buffer
        self.dropped_metrics = 0  # bad values, bad labels, or over 64 per record
        self.frames_oversize = 0  # frames over the datagram size (one large event)
        self.frames_sent = 0
        self.frames_late = 0  # TCP: written after being counted in send_errors
        self.internal_errors = 0  # the shipper's own failures, swallowed
        self.invocations = 0
        self.lines = 0
        self.lines_flushed = 0  # of which sent before their invocation ended
        self.send_errors = 0
        self.tcp_dropped = 0  # frames dropped from the TCP queue while disconnected
        self.tcp_reconnects = 0
        self.timeouts = 0
        self.truncated = 0

    def as_dict(self) -> dict[str, int]:
        """A snapshot."""
        return {name: getattr(self, name) for name in self.__slots__}


class Transport:
    """Interface: ``send(frames)``; ``close()``."""

    __slots__ = ()

    def send(self, frames: Iterable[bytes]) -> None:  # pragma: no cover - interface
        """Send frames; count, never raise, on failure."""
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        """Release the socket."""

    def after_fork(self, stats: Stats) -> None:  # pragma: no cover - interface
        """In a forked child: count into ``stats`` from now on; leave the parent's socket."""


class UdpTransport(Transport):
    """One datagram per frame on a connected, non-blocking socket.

    The host is resolved once, on the first send (a name lookup per send costs
    ~4x the send itself); a failed lookup is retried at most every 5 s.
    """

    __slots__ = ("_addr", "_next_try", "_sock", "stats")

    def __init__(self, host: str, port: int, stats: Stats) -> None:
        self._addr = (host, port)
        self._sock: socket.socket | None = None
        self._next_try = 0.0
        self.stats = stats

    def _connect(self) -> socket.socket | None:
        now = time.monotonic()
        if now < self._next_try:
            return None
        try:
            found = socket.getaddrinfo(self._addr[0], self._addr[1], type=socket.SOCK_DGRAM)
            # IPv4 first: "localhost" may list ::1 first while collectors often bind 127.0.0.1,
            # and a datagram cannot tell us it went nowhere.
            found.sort(key=lambda info: info[0] != socket.AF_INET)
            family, kind, proto, _, sockaddr = found[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            sock.connect(sockaddr)
        except OSError:
            self._next_try = now + 5.0
            return None
        self._sock = sock
        return sock

    def send(self, frames: Iterable[bytes]) -> None:
        """Send each frame as one datagram."""
        sock = self._sock or self._connect()
        stats = self.stats
        for frame in frames:
            if sock is None:
                stats.send_errors += 1
                continue
            try:
                sock.send(frame)
            except OSError:
                # ECONNREFUSED (an ICMP from an earlier datagram), ENOBUFS, EAGAIN,
                # EMSGSIZE: the datagram is lost, the socket stays usable.
                stats.send_errors += 1
                continue
            stats.frames_sent += 1
            stats.bytes_sent += len(frame)

    def close(self) -> None:
        """Close the socket (a later send reopens it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def after_fork(self, stats: Stats) -> None:
        """In a forked child: a socket of its own on the next send."""
        self.close()  # the child's copy of the descriptor: the parent's stays open
        self._next_try = 0.0
        self.stats = stats


class TcpTransport(Transport):
    """Frames separated by LF on one connection, reconnecting with backoff.

    Nothing is counted as sent that was not written to a live connection: before
    writing, a connection the worker closed (a restart sends FIN) is noticed and
    replaced at once, within the connect timeout. Frames that cannot be written
    before ``send`` returns (the collector is away, or inside the reconnect backoff)
    are counted in ``send_errors`` when their invocation ends: a frozen sandbox may
    never run again. They wait in a bounded queue (oldest dropped) and go first on
    a later send; one written then also counts in ``frames_late``.
    """

    __slots__ = (
        "_addr",
        "_backoff",
        "_next_try",
        "_pending",
        "_pending_max",
        "_sock",
        "_timeout",
        "_unreported",
        "stats",
    )

    def __init__(
        self, host: str, port: int, stats: Stats, timeout: float = 0.5, pending_max: int = 1000
    ) -> None:
        self._addr = (host, port)
        self._timeout = timeout
        self._sock: socket.socket | None = None
        # Waiting frames; the newest `_unreported` of them not yet counted as errors.
        self._pending: deque[bytes] = deque()
        self._unreported = 0
        self._pending_max = pending_max
        self._next_try = 0.0
        # One function's reconnects need no jitter: 0.1 s doubling up to 30 s.
        self._backoff = Backoff(0.1, 30.0, rand=_no_jitter)
        self.stats = stats

    def _connect(self) -> socket.socket | None:
        now = time.monotonic()
        if now < self._next_try:
            return None
        try:
            sock = socket.create_connection(self._addr, timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._next_try = now + self._backoff.next()
            return None
        self._backoff.reset()
        self.stats.tcp_reconnects += 1
        self._sock = sock
        return sock

    def _live(self, sock: socket.socket) -> bool:
        """Whether the worker still holds the connection. It never sends: readable
        means closed (EOF, or a reset). A poll with no wait, not a read: a socket with
        a timeout would wait that long for data that never comes."""
        import select

        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return True
        try:
            return sock.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _queue(self, frame: bytes) -> None:
        pending = self._pending
        if len(pending) >= self._pending_max:
            pending.popleft()
            self.stats.tcp_dropped += 1
            if len(pending) < self._unreported:  # dropped before being counted
                self._unreported -= 1
                self.stats.send_errors += 1
        pending.append(frame)
        self._unreported += 1

    def send(self, frames: Iterable[bytes]) -> None:
        """Write frames (after any waiting ones), each followed by LF; count those that
        could not be written now as send errors."""
        for frame in frames:
            self._queue(frame)
        if not self._pending:
            return
        sock = self._sock
        if sock is not None and not self._live(sock):
            self.close()  # the worker went away since the last send: reconnect right now
            self._next_try = 0.0
            sock = None
        if sock is None:
            sock = self._connect()
        if sock is not None:
            self._write(sock)
        stats = self.stats
        stats.send_errors += self._unreported
        self._unreported = 0

    def _write(self, sock: socket.socket) -> None:
        pending = self._pending
        stats = self.stats
        while pending:
            frame = pending[0]
            try:
                sock.sendall(frame + b"\n")
            except OSError:
                # A partial frame may have gone out: the worker drops what follows
                # no LF when the connection closes; this frame is resent whole.
                self.close()
                self._next_try = time.monotonic() + self._backoff.next()
                return
            pending.popleft()
            if len(pending) < self._unreported:
                self._unreported -= 1
            else:
                stats.frames_late += 1  # counted as an error when its invocation ended
            stats.frames_sent += 1
            stats.bytes_sent += len(frame) + 1

    def close(self) -> None:
        """Close the connection (frames still waiting stay queued)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def after_fork(self, stats: Stats) -> None:
        """In a forked child: its own connection on the next send; the parent's queued
        frames are the parent's to send."""
        self.close()  # the child's copy of the descriptor: no FIN while the parent holds it
        self._pending.clear()
        self._unreported = 0
        self._next_try = 0.0
        self._backoff.reset()
        self.stats = stats


def make_transport(scheme: str, host: str, port: int, stats: Stats, timeout: float) -> Transport:
    """The transport for an endpoint's scheme."""
    if scheme == "tcp":
        return TcpTransport(host, port, stats, timeout)
    return UdpTransport(host, port, stats)


def _no_jitter() -> float:
    """The top of each backoff range: one function's reconnects need no spreading."""
    return 1.0
