"""The UDP source's socket handling: kernel drop accounting, buffer size, chunked hand-off."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from faaslens.ingest.selfmetrics import SelfMetrics
from faaslens.ingest.source_udp import UdpSource, read_kernel_drops
from tests.support import poll_until


def test_kernel_drops_read_for_our_socket() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's minimum-ish
    rx.bind(("127.0.0.1", 0))
    inode = os.fstat(rx.fileno()).st_ino
    assert read_kernel_drops(inode) == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for _ in range(200):
            tx.sendto(b"x" * 1000, rx.getsockname())
    drops = read_kernel_drops(inode)
    assert drops is not None and drops > 0
    queued = 0
    rx.setblocking(False)
    try:
        while True:
            rx.recv(2048)
            queued += 1
    except BlockingIOError:
        pass
    assert queued + drops == 200  # every datagram is either received or counted
    rx.close()
    assert read_kernel_drops(inode) is None  # gone


def test_source_hands_off_in_chunks_and_stops() -> None:
    reg = CollectorRegistry()
    metrics = SelfMetrics(reg)
    chunks: list[list[bytes]] = []
    addresses: list[list[Any] | None] = []
    lock = threading.Lock()

    def take(frames: list[bytes], peers: list[Any] | None) -> None:
        with lock:
            chunks.append(frames)
            addresses.append(peers)

    src = UdpSource("127.0.0.1", 0, take, metrics, rcvbuf=1 << 20)
    src.start()
    assert src.address is not None and src.rcvbuf_actual >= 1 << 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.bind(("127.0.0.1", 0))
        src.capture_peers()  # as after a rejection: every chunk carries its senders
        for i in range(500):
            tx.sendto(b"%d" % i, src.address)
        poll_until(lambda: sum(len(c) for c in chunks) == 500, timeout=10, what="500 datagrams")
        sender = tx.getsockname()
    src.stop(timeout=5)
    frames = [f for c in chunks for f in c]
    assert frames == [b"%d" % i for i in range(500)]  # in order, none lost
    for chunk, peers in zip(chunks, addresses, strict=True):
        assert peers == [sender] * len(chunk)
    assert reg.get_sample_value("faaslens_datagrams_received_total") == 500
    assert reg.get_sample_value("faaslens_udp_receive_buffer_drops_total") is None  # closed
    assert reg.get_sample_value("faaslens_udp_receive_buffer_bytes") == src.rcvbuf_actual
