"""UDP source: a dedicated receive thread with a large socket buffer.

The stock asyncio datagram transport loses most datagrams at high rates
(one ``recvfrom(256 KiB)`` and a loop wakeup per datagram). Here a thread
blocks in ``recv``, then drains whatever else is already queued without
blocking, and hands the frames over in one chunk: one hand-off per burst,
not per datagram. ``recv`` releases the GIL, so the loop keeps running.

Senders' addresses name them in rejection logs, but ``recvfrom`` costs about
0.5 us more per datagram than ``recv`` (the address object). So the thread
reads addresses only while that is cheap or useful: when traffic is light
(under 2,000 datagrams in the last second) and for a while after any rejection
(:meth:`UdpSource.capture_peers`). Under a flood of valid frames it reads
none.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from faaslens.ingest.selfmetrics import SelfMetrics

__all__ = ["UdpSource", "read_kernel_drops"]

log = structlog.get_logger("faaslens.ingest")

RECV_SIZE = 65536  # the largest UDP payload fits
CHUNK_MAX = 512  # frames per hand-off at most, so the loop sees work early in a burst
# Read senders' addresses while fewer datagrams than this arrived in the last second
# (light traffic: the cost does not matter)...
CAPTURE_BELOW_PER_S = 2000
# ... and for this long after a rejection.
CAPTURE_AFTER_REJECTION_S = 10.0
# Not exported by Python's socket module; this is Linux's value. Needs CAP_NET_ADMIN.
SO_RCVBUFFORCE: int = getattr(socket, "SO_RCVBUFFORCE", 33)


def read_kernel_drops(inode: int, family: int = socket.AF_INET) -> int | None:
    """The ``drops`` column of ``/proc/net/udp[6]`` for the socket with this inode."""
    path = "/proc/net/udp6" if family == socket.AF_INET6 else "/proc/net/udp"
    want = str(inode)
    try:
        with open(path, encoding="ascii") as fh:
            next(fh)  # header
            for line in fh:
                cols = line.split()
                if len(cols) >= 13 and cols[9] == want:
                    return int(cols[12])
    except (OSError, ValueError, StopIteration):
        return None
    return None


class UdpSource:
    """Receives datagrams on a thread and passes them on in chunks."""

    def __init__(
        self,
        host: str,
        port: int,
        on_frames: Callable[[list[bytes], list[Any] | None], None],
        metrics: SelfMetrics,
        *,
        rcvbuf: int = 8 * 1024 * 1024,
        reuse_port: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.rcvbuf = rcvbuf
        self.reuse_port = reuse_port
        self._on_frames = on_frames
        self._metrics = metrics
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.address: tuple[str, int] | None = None
        self.rcvbuf_actual = 0
        self._inode = 0
        self._capture_until = 0.0  # monotonic time until which addresses are read

    def start(self) -> None:
        """Bind the socket and start the receive thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.rcvbuf_actual = self._set_rcvbuf(sock)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        addr = sock.getsockname()
        self.address = (addr[0], addr[1])
        self._inode = os.fstat(sock.fileno()).st_ino
        self._metrics.udp_rcvbuf.set(self.rcvbuf_actual)
        self._metrics.watch_kernel_drops(self.kernel_drops)
        self._thread = threading.Thread(target=self._run, name="udp-receive", daemon=True)
        self._thread.start()
        log.info(
            "udp listening",
            address=f"{self.address[0]}:{self.address[1]}",
            rcvbuf=self.rcvbuf_actual,
            requested=self.rcvbuf,
        )

    def _set_rcvbuf(self, sock: socket.socket) -> int:
        """Ask for ``rcvbuf`` bytes: SO_RCVBUFFORCE (root) beats ``net.core.rmem_max``."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
        except OSError:  # not permitted (or not Linux): capped by net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        # Linux reports (and allots) double the request: bookkeeping overhead included.
        actual = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if actual < 2 * self.rcvbuf:
            log.warning(
                "udp receive buffer smaller than asked: raise net.core.rmem_max or run as root",
                requested=self.rcvbuf,
                actual=actual,
            )
        return actual

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket (None if unknown)."""
        if self._sock is None:
            return None
        return read_kernel_drops(self._inode, self._sock.family)

    def capture_peers(self) -> None:
        """Read senders' addresses for a while (a rejection happened). Any thread."""
        self._capture_until = time.monotonic() + CAPTURE_AFTER_REJECTION_S

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        recv = sock.recv
        recvfrom = sock.recvfrom
        dontwait = socket.MSG_DONTWAIT
        hand_off = self._on_frames
        datagrams = self._metrics.datagrams
        nbytes = self._metrics.udp_bytes
        light = True  # fewer than CAPTURE_BELOW_PER_S datagrams in the last second
        second = time.monotonic()
        in_second = 0
        while True:
            now = time.monotonic()
            if now - second >= 1.0:
                light = in_second < CAPTURE_BELOW_PER_S
                second = now
                in_second = 0
            capture = light or now < self._capture_until
            try:
                if capture:
                    data, addr = recvfrom(RECV_SIZE)  # blocks, GIL released
                else:
                    data = recv(RECV_SIZE)
            except OSError as exc:
                if self._stopping:
                    break
                log.warning("udp receive failed", error=repr(exc))
                continue
            if not data and self._stopping:
                break  # shutdown(SHUT_RD) wakes us with b"" once the queue is empty
            chunk = [data]
            peers: list[Any] | None = [addr] if capture else None
            size = len(data)
            while len(chunk) < CHUNK_MAX:
                try:
                    if peers is not None:
                        data, addr = recvfrom(RECV_SIZE, dontwait)
                        peers.append(addr)
                    else:
                        data = recv(RECV_SIZE, dontwait)
                except BlockingIOError:
                    break
                except OSError as exc:
                    log.warning("udp receive failed", error=repr(exc))
                    break
                if not data and self._stopping:
                    break
                chunk.append(data)
                size += len(data)
            last = len(chunk)
            in_second += last
            if peers is not None and len(peers) > last:
                del peers[last:]  # the b"" of a shutdown
            datagrams.inc(last)
            nbytes.inc(size)
            try:
                hand_off(chunk, peers)
            except Exception as exc:  # the receive thread must survive a bad hand-off
                log.error("udp hand-off failed", error=repr(exc), frames=last)

    def stop(self, timeout: float | None = None) -> None:
        """Stop receiving after handing off everything already in the socket buffer."""
        self._stopping = True
        sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("udp receive thread did not stop in time")
        sock.close()
        self._sock = None
