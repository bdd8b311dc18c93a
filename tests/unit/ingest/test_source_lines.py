"""The line listener on real loopback sockets: framing, resynchronisation, start-up
errors, and the bounds on what senders can make it hold (connections, unfinished
lines, idle connections, what one datagram or line may carry)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.config import ConfigError, IngestConfig
from faaslens.ingest.lines_parse import LABEL_VALUE_MAX_CHARS, LINE_MAX_BYTES
from faaslens.ingest.source_lines import LinesSource, start_lines
from tests.support import apoll_until

DECLARATIONS = Path(__file__).resolve().parents[3] / "docs" / "examples" / "seed-declaration.json"
NAME = "function_invocations_total"


async def listener(
    tmp: Path | None = None, **settings: Any
) -> tuple[CollectorRegistry, LinesSource]:
    registry = CollectorRegistry()
    config = IngestConfig(
        lines_listen="127.0.0.1:0", lines_declarations=str(tmp or DECLARATIONS), **settings
    )
    return registry, await start_lines(config, registry, Aggregates(registry))


async def until(condition: Callable[[], bool]) -> None:
    """Poll with a deadline while the loop runs the listener."""

    async def check() -> bool:
        return condition()

    await apoll_until(check, timeout=5, interval=0.01)


def value(registry: CollectorRegistry, labels: dict[str, str] | None = None) -> float:
    return registry.get_sample_value(NAME, labels or {}) or 0.0


def rejected(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("faaslens_lines_rejected_total", {"reason": reason}) or 0.0


async def test_tcp_lines_split_anywhere_and_a_last_line_without_lf() -> None:
    registry, source = await listener()
    try:
        assert source.address is not None
        _, writer = await asyncio.open_connection(*source.address)
        data = b"".join(f'{NAME}{{n="{i}"}} 1\n'.encode() for i in range(50))
        data += f'{NAME}{{n="last"}} 2'.encode()
        for i in range(0, len(data), 7):  # chunks that cut lines anywhere
            writer.write(data[i : i + 7])
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        await until(lambda: value(registry, {"n": "last"}) == 2)
        assert all(value(registry, {"n": str(i)}) == 1 for i in range(50))
    finally:
        await source.stop()


async def test_an_overlong_tcp_line_is_refused_and_the_stream_resynchronises() -> None:
    registry, source = await listener()
    try:
        assert source.address is not None
        _, writer = await asyncio.open_connection(*source.address)
        writer.write(f'{NAME}{{n="a"}} 1\n'.encode())
        writer.write(b"x" * (LINE_MAX_BYTES * 3))  # arrives in several reads
        writer.write(f'junk\n{NAME}{{n="b"}} 1\n'.encode())
        await writer.drain()
        await until(lambda: value(registry, {"n": "b"}) == 1)
        assert value(registry, {"n": "a"}) == 1
        assert rejected(registry, "too_long") == 1
        assert rejected(registry, "bad_text") == 0  # the rest of the long line was skipped
        writer.close()
        await writer.wait_closed()
    finally:
        await source.stop()


async def test_udp_datagrams_of_one_or_several_lines() -> None:
    registry, source = await listener()
    try:
        assert source.address is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(f'{NAME}{{n="a"}} 1'.encode(), source.address)  # no LF
            sock.sendto(f'{NAME}{{n="b"}} 1\n\n{NAME}{{n="b"}} 2\n'.encode(), source.address)
            sock.sendto(b"\xff\xfe\n", source.address)
        await until(lambda: value(registry, {"n": "b"}) == 3)
        await until(lambda: rejected(registry, "bad_text") == 1)
        assert value(registry, {"n": "a"}) == 1
        received = registry.get_sample_value("faaslens_lines_received_total", {"transport": "udp"})
        assert received == 4  # blank lines carry nothing and are not counted
    finally:
        await source.stop()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[", "not JSON"),
        (b'[{"name": "x_total", "type": "gauge", "help": "h"}]', "'x_total': name_lint"),
        (
            b'[{"name": "faaslens_series_expired_total", "type": "counter", "help": "h"}]',
            "name_conflict",
        ),
    ],
)
async def test_a_bad_declaration_file_stops_the_start(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "declaration.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"lines_declarations: .*{message}"):
        await listener(path)


async def test_a_missing_declaration_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lines_declarations: .*No such file"):
        await listener(tmp_path / "missing.json")


def test_off_by_default() -> None:
    assert IngestConfig().lines_listen == ""


# -- bounds: what senders can make the listener hold ------------------------------------


def closed(registry: CollectorRegistry, reason: str) -> float:
    return (
        registry.get_sample_value("faaslens_lines_connections_closed_total", {"reason": reason})
        or 0.0
    )


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True once the listener has closed the connection (EOF or reset)."""
    try:
        data = await asyncio.wait_for(reader.read(1), 5)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return data == b""


def padded_series(registry: CollectorRegistry) -> int:
    """Series of NAME with a ``pad`` label (the lines the holders finished)."""
    return sum(
        1
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == NAME and "pad" in sample.labels
    )


async def served(registry: CollectorRegistry, address: tuple[str, int], n: str) -> None:
    """A new sender's line is applied (the listener still serves others)."""
    _, writer = await asyncio.open_connection(*address)
    writer.write(f'{NAME}{{n="{n}"}} 1\n'.encode())
    await writer.drain()
    await until(lambda: value(registry, {"n": n}) == 1)
    writer.close()
    await writer.wait_closed()


async def test_many_connections_holding_unfinished_lines_stay_within_the_total() -> None:
    cap = 65_536
    registry, source = await listener(lines_max_buffered_bytes=cap)
    writers: list[asyncio.StreamWriter] = []
    try:
        assert source.address is not None
        held = 1000
        for i in range(200):  # 200 x 1,000 bytes of unfinished lines: 200,000 > cap
            _, writer = await asyncio.open_connection(*source.address)
            writer.write(f'{NAME}{{n="{i}",pad="'.encode().ljust(held, b"x"))
            await writer.drain()
            writers.append(writer)
        # Whatever order the reads come in, 65 lines fit and each one more closes one.
        await until(lambda: closed(registry, "buffer_cap") == 200 - cap // held)
        assert source.buffered == cap // held * held <= cap
        assert source.connections == cap // held
        gauge = registry.get_sample_value("faaslens_lines_connections")
        assert gauge == cap // held
        await served(registry, source.address, "good")
        # Every sender finishes its line: those still connected are applied, and the
        # bytes they held are released.
        for w in writers:
            w.write(b'"} 1\n')
        await until(lambda: padded_series(registry) == cap // held)
        await until(lambda: source.buffered == 0)
        assert rejected(registry, "bad_text") == 0
    finally:
        for w in writers:
            w.close()
        await source.stop()
    assert source.buffered == 0


async def test_connections_past_the_cap_are_closed_and_counted() -> None:
    registry, source = await listener(lines_max_connections=3)
    try:
        assert source.address is not None
        conns = [await asyncio.open_connection(*source.address) for _ in range(5)]
        assert await closed_by_peer(conns[3][0]) and await closed_by_peer(conns[4][0])
        assert closed(registry, "connection_cap") == 2
        assert source.connections == 3
        _, writer = conns[0]  # a sender within the cap is served
        writer.write(f'{NAME}{{n="kept"}} 1\n'.encode())
        await writer.drain()
        await until(lambda: value(registry, {"n": "kept"}) == 1)
        for _, w in conns:
            w.close()
        await until(lambda: source.connections == 0)
        await served(registry, source.address, "after")  # room again once they left
    finally:
        await source.stop()


async def test_idle_connections_and_unfinished_lines_time_out() -> None:
    registry, source = await listener(lines_idle_timeout_s=0.3)
    try:
        assert source.address is not None
        idle_reader, idle_writer = await asyncio.open_connection(*source.address)
        slow_reader, slow_writer = await asyncio.open_connection(*source.address)
        slow_writer.write(f'{NAME}{{n="slow"}} '.encode())  # a line started, never finished
        await slow_writer.drain()
        assert await closed_by_peer(idle_reader) and await closed_by_peer(slow_reader)
        assert closed(registry, "idle_timeout") == 2
        assert source.buffered == 0 and source.connections == 0
        assert value(registry, {"n": "slow"}) == 0  # a dropped line is not applied
        await served(registry, source.address, "fresh")
        idle_writer.close()
        slow_writer.close()
    finally:
        await source.stop()


async def test_closings_are_logged_with_the_peer() -> None:
    _, source = await listener(lines_max_connections=1)
    try:
        assert source.address is not None
        with capture_logs() as logs:
            _, first = await asyncio.open_connection(*source.address)
            extra_reader, extra = await asyncio.open_connection(*source.address)
            assert await closed_by_peer(extra_reader)
        host, port = extra.get_extra_info("sockname")[:2]
        (entry,) = [e for e in logs if e.get("what") == "lines_connection"]
        assert entry["reason"] == "connection_cap" and entry["peer"] == f"{host}:{port}"
        first.close()
        extra.close()
    finally:
        await source.stop()


async def test_a_datagram_of_many_lines_is_applied_and_counted_line_by_line() -> None:
    registry, source = await listener()
    try:
        assert source.address is not None
        line = f'{NAME}{{n="many"}} 1\n'.encode()
        count = 65_000 // len(line)  # a datagram as large as UDP allows, all lines
        bad = b"\xff\n" * 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(line * count, source.address)
            sock.sendto(bad + line, source.address)  # bad lines do not cost the good one
        await until(lambda: value(registry, {"n": "many"}) == count + 1)
        await until(lambda: rejected(registry, "bad_text") == 10)
        received = registry.get_sample_value("faaslens_lines_received_total", {"transport": "udp"})
        assert received == count + 11
    finally:
        await source.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_huge_line_cannot_make_a_series_hold_more_than_the_bounds(transport: str) -> None:
    """The largest datagram holds one line under LINE_MAX_BYTES: what it may make the
    store keep is bounded by the parser (too_large), counted, and the next line served."""
    registry, source = await listener()
    try:
        assert source.address is not None
        huge = f'{NAME}{{n="{"v" * 65_000}"}} 1'.encode()
        assert LABEL_VALUE_MAX_CHARS < 65_000 and len(huge) < LINE_MAX_BYTES
        good = f'{NAME}{{n="after"}} 1'.encode()
        if transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(huge, source.address)
                sock.sendto(good, source.address)
        else:
            _, writer = await asyncio.open_connection(*source.address)
            writer.write(huge + b"\n" + good + b"\n")
            await writer.drain()
            writer.close()
        await until(lambda: value(registry, {"n": "after"}) == 1)
        await until(lambda: rejected(registry, "too_large") == 1)
    finally:
        await source.stop()
