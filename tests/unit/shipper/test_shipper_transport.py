"""Real sockets: UDP datagrams, TCP newline framing and reconnects, counted failures."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import orjson
import pytest

from faaslens.shipper.transport import Stats, TcpTransport, UdpTransport
from tests.support import poll_until
from tests.unit.shipper.kit import Receiver, make_shipper, receivers


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def test_udp_one_datagram_per_frame(rx: Receiver) -> None:
    stats = Stats()
    udp = UdpTransport("localhost", rx.port, stats)  # the name is resolved once
    udp.send([b'{"a":1}', b'{"b":2}'])
    assert rx.frames() == [b'{"a":1}', b'{"b":2}']
    assert stats.frames_sent == 2 and stats.bytes_sent == 14
    udp.close()


def test_udp_send_errors_are_counted_not_raised() -> None:
    # a port nobody listens on: the kernel answers ICMP port unreachable, which a
    # connected UDP socket reports as ECONNREFUSED on a following send
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    stats = Stats()
    udp = UdpTransport("127.0.0.1", port, stats)
    for _ in range(5):
        udp.send([b"{}"])
    assert stats.send_errors >= 1
    assert stats.frames_sent + stats.send_errors == 5
    udp.close()


class TcpServer:
    """A real TCP listener collecting LF-separated frames on a thread."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        self.port: int = self.sock.getsockname()[1]
        self.frames: list[bytes] = []
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            buf = b""
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                self.frames.extend(lines)

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.thread.join(5)


def test_tcp_frames_are_lf_separated() -> None:
    server = TcpServer()
    try:
        stats = Stats()
        tcp = TcpTransport("127.0.0.1", server.port, stats)
        tcp.send([b'{"n":1}', b'{"n":2}'])
        tcp.send([b'{"n":3}'])
        poll_until(lambda: len(server.frames) == 3, timeout=5, what="3 frames")
        assert server.frames == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
        assert stats.frames_sent == 3 and stats.tcp_reconnects == 1
        tcp.close()
    finally:
        server.stop()


def test_tcp_queues_while_down_and_reconnects() -> None:
    server = TcpServer()
    port = server.port
    stats = Stats()
    tcp = TcpTransport("127.0.0.1", port, stats, pending_max=3)
    tcp.send([b'{"n":1}'])
    poll_until(lambda: server.frames, timeout=5, what="first frame")
    server.stop()
    # the peer is gone: sends fail, frames wait in the bounded queue
    sent: list[int] = []

    def sends_fail() -> bool:
        tcp._next_try = 0.0  # retry now rather than after the backoff
        tcp.send([b'{"n":%d}' % (len(sent) + 2)])
        sent.append(1)
        return stats.send_errors > 0 or len(tcp._pending) > 0

    poll_until(sends_fail, timeout=5, what="send failure")
    for n in range(10, 14):
        tcp._next_try = 0.0
        tcp.send([b'{"n":%d}' % n])
    assert len(tcp._pending) == 3  # bounded: the oldest were dropped and counted
    assert stats.tcp_dropped >= 1
    server2 = TcpServer(port)
    try:
        tcp._next_try = 0.0
        tcp.send([b'{"n":99}'])
        poll_until(lambda: len(server2.frames) == 3, timeout=5, what="replayed frames")
        assert server2.frames[-1] == b'{"n":99}'
        assert [orjson.loads(f)["n"] for f in server2.frames] == [12, 13, 99]
        assert stats.tcp_reconnects == 2
    finally:
        tcp.close()
        server2.stop()


def test_shipper_over_tcp_end_to_end() -> None:
    server = TcpServer()
    try:
        rx = Receiver()
        sh = make_shipper(rx, endpoint=f"tcp://127.0.0.1:{server.port}")
        rx.close()
        sh.instrument(lambda: 1)()
        poll_until(lambda: server.frames, timeout=5, what="record over tcp")
        (frame,) = server.frames
        env = orjson.loads(frame)
        assert env["ev"][0]["t"] == "inv"
        sh.close()
    finally:
        server.stop()


def test_record_kept_while_the_tcp_collector_is_away_then_flushed() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    rx = Receiver()
    sh = make_shipper(rx, endpoint=f"tcp://127.0.0.1:{port}")
    rx.close()
    sh.instrument(lambda: None)()  # the handler returns normally
    assert sh.snapshot()["frames_sent"] == 0
    server = TcpServer(port)
    try:
        sh._transport._next_try = 0.0  # type: ignore[attr-defined]  # skip the backoff wait
        sh.flush()
        poll_until(lambda: server.frames, timeout=5, what="queued record")
        assert orjson.loads(server.frames[0])["ev"][0]["t"] == "inv"
        assert sh.snapshot()["frames_sent"] == 1
    finally:
        sh.close()
        server.stop()


def test_tcp_record_after_collector_restart_reaches_the_new_one(rx: Receiver) -> None:
    server = TcpServer()
    port = server.port
    sh = make_shipper(rx, endpoint=f"tcp://127.0.0.1:{port}")
    stats = sh.stats

    @sh.instrument(name="f")
    def handler() -> None:
        pass

    handler()
    poll_until(lambda: len(server.frames) == 1, timeout=5, what="first record")
    server.stop()  # the worker restarts between invocations
    server2 = TcpServer(port)
    try:
        handler()  # written to the new worker before the handler returns
        poll_until(lambda: len(server2.frames) == 1, timeout=5, what="record after restart")
        assert stats.frames_sent == 2 and stats.send_errors == 0
        assert stats.tcp_reconnects == 2
    finally:
        sh.close()
        server2.stop()


def test_tcp_record_not_written_is_a_send_error_not_sent() -> None:
    server = TcpServer()
    port = server.port
    stats = Stats()
    tcp = TcpTransport("127.0.0.1", port, stats)
    tcp.send([b'{"n":1}'])
    poll_until(lambda: len(server.frames) == 1, timeout=5, what="first frame")
    server.stop()  # nobody listens now
    tcp.send([b'{"n":2}'])
    tcp.send([b'{"n":3}'])
    # Counted once each when their send returned, and not as sent.
    assert stats.frames_sent == 1 and stats.send_errors == 2
    server2 = TcpServer(port)
    try:
        tcp._next_try = 0.0  # skip the reconnect backoff
        tcp.send([b'{"n":4}'])
        poll_until(lambda: len(server2.frames) == 3, timeout=5, what="late frames")
        assert stats.frames_sent == 4 and stats.frames_late == 2 and stats.send_errors == 2
    finally:
        tcp.close()
        server2.stop()
