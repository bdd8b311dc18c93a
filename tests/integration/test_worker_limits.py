"""The worker's bounds and reports over real sockets, with the null sink: TCP
connection cap, total buffered bytes, idle timeout, the truncated-frame reason,
rejection logs naming the sender, totals logged at shutdown."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from structlog.testing import capture_logs

from faaslens.ingest.runner import Worker
from faaslens.ingest.sink_null import NullSink
from tests.integration.test_worker_pipeline import _async, config, frame, sample, sink_of
from tests.support import apoll_until

pytestmark = pytest.mark.integration


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """True once the worker has closed the connection (EOF or reset)."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return data == b""


async def test_connection_cap_closes_the_excess_and_serves_the_others() -> None:
    w = Worker(config(tcp_max_connections=3), sink=NullSink(keep=True))
    async with w:
        assert w.tcp_address is not None
        conns = [await asyncio.open_connection(*w.tcp_address) for _ in range(5)]
        # The two past the cap are closed at once.
        assert await closed_by_peer(conns[3][0]) and await closed_by_peer(conns[4][0])
        assert sample(w, "faaslens_tcp_connections_closed_total", reason="connection_cap") == 2
        _, writer = conns[0]
        writer.write(frame(1, src="cap") + b"\n")
        await writer.drain()
        await asyncio.wait_for(sink_of(w).wait_for_count(3), 30)
        for _, wr in conns:
            wr.close()


async def test_unfinished_lines_are_bounded_in_total() -> None:
    cap = 100_000
    w = Worker(config(tcp_max_buffered_bytes=cap, max_frame_bytes=80_000), sink=NullSink(keep=True))
    async with w:
        assert w.tcp_address is not None and w.tcp is not None
        tcp = w.tcp
        holders = []
        for i in range(6):  # 6 x 30,000 bytes of unfinished lines: 180,000 > cap
            reader, writer = await asyncio.open_connection(*w.tcp_address)
            writer.write(b'{"v":1,"pad":"' + b"x" * (30_000 + i))
            await writer.drain()
            holders.append((reader, writer))
        await apoll_until(
            lambda: _async(
                sample(w, "faaslens_tcp_connections_closed_total", reason="buffer_cap") >= 3
            ),
            timeout=30,
            what="connections over the buffer cap closed",
        )
        assert tcp.buffered <= cap
        # The longest unfinished lines went first.
        assert await closed_by_peer(holders[5][0]) and await closed_by_peer(holders[4][0])
        # Another sender is served meanwhile.
        _, writer = await asyncio.open_connection(*w.tcp_address)
        writer.write(frame(1, src="other") + b"\n")
        await writer.drain()
        await asyncio.wait_for(sink_of(w).wait_for_count(3), 30)
        for _, wr in [*holders, (None, writer)]:
            wr.close()


async def test_idle_connection_and_unfinished_line_time_out() -> None:
    w = Worker(config(tcp_idle_timeout_s=0.3), sink=NullSink(keep=True))
    async with w:
        assert w.tcp_address is not None
        idle_reader, idle_writer = await asyncio.open_connection(*w.tcp_address)
        slow_reader, slow_writer = await asyncio.open_connection(*w.tcp_address)
        slow_writer.write(b'{"v":1,"src":"slow"')  # a line started, never finished
        await slow_writer.drain()
        assert await closed_by_peer(idle_reader) and await closed_by_peer(slow_reader)
        assert sample(w, "faaslens_tcp_connections_closed_total", reason="idle_timeout") == 2
        assert w.tcp is not None and w.tcp.buffered == 0
        idle_writer.close()
        slow_writer.close()


async def test_frame_cut_by_a_closing_connection_is_truncated_not_bad_json() -> None:
    w = Worker(config(), sink=NullSink(keep=True))
    async with w:
        assert w.tcp_address is not None
        whole = frame(1, src="cut")
        for cut in (1, len(whole) // 2, len(whole) - 1):
            _, writer = await asyncio.open_connection(*w.tcp_address)
            writer.write(whole + b"\n" + whole[:cut])
            await writer.drain()
            writer.close()
        await apoll_until(
            lambda: _async(sample(w, "faaslens_frames_rejected_total", reason="truncated") == 3),
            timeout=30,
            what="three truncated tails",
        )
        assert sample(w, "faaslens_frames_rejected_total", reason="bad_json") == 0
        assert sample(w, "faaslens_events_accepted_total", type="inv") == 3


async def test_rejection_log_names_the_sender_and_quotes_the_frame() -> None:
    w = Worker(config(), sink=NullSink(keep=True))
    with capture_logs() as logs:
        async with w:
            assert w.udp_address is not None and w.tcp_address is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.bind(("127.0.0.1", 0))
                tx.sendto(b'{"not": "a frame", "pad": "' + b"y" * 500 + b'"}', w.udp_address)
                host, port = tx.getsockname()
                udp_peer = f"{host}:{port}"
            _, writer = await asyncio.open_connection(*w.tcp_address)
            writer.write(b"\xff\xfe not json\n")
            await writer.drain()
            host, port = writer.get_extra_info("sockname")[:2]
            tcp_peer = f"{host}:{port}"

            def lines() -> list[dict[str, Any]]:
                return [e for e in logs if e["event"] == "rejected" and e["what"] == "frame"]

            await apoll_until(lambda: _async(len(lines()) == 2), timeout=30, what="two lines")
            writer.close()
    by_peer = {e["peer"]: e for e in lines()}
    assert set(by_peer) == {udp_peer, tcp_peer}
    udp, tcp = by_peer[udp_peer], by_peer[tcp_peer]
    assert udp["reason"] == "bad_envelope" and udp["sample"].startswith('{"not": "a frame"')
    assert udp["sample"].endswith("…") and len(udp["sample"]) < 200 and udp["size"] > 500
    assert tcp["reason"] == "bad_json" and tcp["sample"] == "\\xff\\xfe not json"


async def test_totals_logged_at_shutdown() -> None:
    w = Worker(config(), sink=NullSink(keep=True))
    with capture_logs() as logs:
        async with w:
            assert w.udp_address is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                for i in range(1, 6):
                    tx.sendto(frame(i, src="tot"), w.udp_address)
                tx.sendto(b"nope", w.udp_address)
            await asyncio.wait_for(sink_of(w).wait_for_count(15), 30)
    (stopped,) = [e for e in logs if e["event"] == "worker stopped"]
    assert stopped["received"] == 6
    assert stopped["frames_rejected"] == 1
    assert stopped["events_accepted"] == 15
    assert stopped["docs_built"] == 15
    assert stopped["internal_errors"] == 0
    for key in ("docs_indexed", "docs_spooled", "docs_dead_lettered", "docs_dropped"):
        assert key in stopped
