"""The line listener on real loopback sockets: framing, resynchronisation, start-up errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.config import ConfigError, IngestConfig
from faaslens.ingest.lines_parse import LINE_MAX_BYTES
from faaslens.ingest.source_lines import LinesSource, start_lines
from tests.support import apoll_until

DECLARATIONS = Path(__file__).resolve().parents[3] / "docs" / "examples" / "seed-declaration.json"
NAME = "function_invocations_total"


async def listener(tmp: Path | None = None) -> tuple[CollectorRegistry, LinesSource]:
    registry = CollectorRegistry()
    config = IngestConfig(lines_listen="127.0.0.1:0", lines_declarations=str(tmp or DECLARATIONS))
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
