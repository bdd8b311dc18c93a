"""/metrics, /healthz, /readyz over real sockets: formats, gzip, name[] filtering,
a connection cap, and bounded memory while scrapers stop reading."""

from __future__ import annotations

import asyncio
import gzip
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from faaslens.ingest.http import HttpServer, accepts_gzip
from tests.support import apoll_until, poll_until
from tests.unit.ingest.metrics_server import fill

REPO = Path(__file__).resolve().parents[3]
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture
async def served() -> AsyncIterator[tuple[HttpServer, str, list[bool]]]:
    reg, agg = fill(300)
    ready = [True]
    server = HttpServer("127.0.0.1", 0, reg, lambda: ready[0], rendered_apart=agg)
    await server.start()
    assert server.address is not None
    yield server, f"http://127.0.0.1:{server.address[1]}", ready
    await server.stop()


async def get(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.request(method, url, headers={"Accept-Encoding": "identity", **headers}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def sample_names(text: str, openmetrics: bool) -> set[str]:
    families = (parse_openmetrics if openmetrics else parse_text)(text)
    return {s.name for fam in families for s in fam.samples}


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
async def test_gzip_when_asked_and_same_samples(
    served: tuple[HttpServer, str, list[bool]], openmetrics: bool
) -> None:
    _, base, _ = served
    accept = OPENMETRICS if openmetrics else "text/plain"
    status, plain_headers, plain = await get(base + "/metrics", Accept=accept)
    assert status == 200 and "Content-Encoding" not in plain_headers
    status, headers, packed = await get(
        base + "/metrics", Accept=accept, **{"Accept-Encoding": "br;q=1.0, gzip;q=0.5"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(packed) < len(plain) // 4
    names = sample_names(gzip.decompress(packed).decode(), openmetrics)
    assert names == sample_names(plain.decode(), openmetrics)
    assert "faas_invocations_total" in names and "faaslens_http_connections_dropped_total" in names
    assert headers["Content-Type"].startswith(
        "application/openmetrics-text" if openmetrics else "text/plain"
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("GZIP;q=0.1", True),
        ("*", True),
        ("gzip;q=0", False),
        ("*;q=0.5, gzip;q=0", False),
        ("identity", False),
        ("", False),
        ("gzip;q=oops", False),
    ],
)
def test_accept_encoding(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
async def test_name_filter_as_prometheus_client(
    served: tuple[HttpServer, str, list[bool]], openmetrics: bool
) -> None:
    server, base, _ = served
    wanted = ["faas_invocations_total", "faaslens_http_connections_dropped_total", "no_such"]
    query = "&".join(f"name[]={n}" for n in wanted)
    accept = OPENMETRICS if openmetrics else "text/plain"
    status, _, body = await get(f"{base}/metrics?{query}", Accept=accept)
    assert status == 200
    assert sample_names(body.decode(), openmetrics) == set(wanted[:2])
    full = sample_names(server.render(accept)[0].decode(), openmetrics)
    assert set(wanted[:2]) < full  # the filter dropped the rest, not everything
    if openmetrics:
        assert body.endswith(b"# EOF\n")


async def test_health_head_and_errors(served: tuple[HttpServer, str, list[bool]]) -> None:
    _, base, ready = served
    assert (await get(base + "/healthz"))[::2] == (200, b"ok\n")
    assert (await get(base + "/readyz"))[::2] == (200, b"ready\n")
    ready[0] = False
    assert (await get(base + "/readyz"))[::2] == (503, b"not ready\n")
    status, headers, body = await get(base + "/metrics", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000
    assert (await get(base + "/nope"))[0] == 404
    assert (await get(base + "/metrics", "POST"))[0] == 405


async def test_connection_cap_refuses_then_recovers() -> None:
    reg = CollectorRegistry()
    server = HttpServer("127.0.0.1", 0, reg, lambda: True, max_connections=3)
    await server.start()
    assert server.address is not None
    addr = server.address
    try:
        held = [await asyncio.open_connection(*addr) for _ in range(3)]
        await open_count(server, 3)
        reader, writer = await asyncio.open_connection(*addr)
        refused = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 503") and refused.endswith(b"too many connections\n")
        assert (
            reg.get_sample_value(
                "faaslens_http_connections_dropped_total", {"reason": "max_connections"}
            )
            == 1
        )
        _, first = held.pop()
        first.close()
        await open_count(server, 2)
        status, _, body = await get(f"http://{addr[0]}:{addr[1]}/healthz")
        assert (status, body) == (200, b"ok\n")
        for _, w in held:
            w.close()
    finally:
        await server.stop()


async def open_count(server: HttpServer, n: int) -> None:
    async def check() -> bool:
        return server.open_connections == n

    await apoll_until(check, timeout=10, what=f"{n} open connections")


# -- memory while scrapers stop reading: a process of its own, measured from outside ----

SERIES = 20_000
STALLED = 20
PIPELINED = 20  # requests each stalled client sends at once


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@pytest.fixture
def server_process() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    module = "tests.unit.ingest.metrics_server"
    proc = subprocess.Popen(
        [sys.executable, "-m", module, str(SERIES), "write_timeout_s=2"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    for line in proc.stdout:  # structlog's console lines come first
        if line.startswith(b'{"port"'):
            break
    yield proc, orjson.loads(line)["port"]
    proc.stdin.close()
    proc.wait(30)


def scrape(port: int, path: str = "/metrics") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(1 << 20):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def test_scrapers_that_never_read_hold_bounded_memory(
    server_process: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = server_process
    body = scrape(port)
    assert sum(1 for x in body.splitlines() if not x.startswith(b"#")) > 12_000
    rss_before_kb = status_kb(proc.pid, "VmRSS")
    stalled = []
    for _ in range(STALLED):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        stalled.append(s)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    for s in stalled:
        s.sendall(request * PIPELINED)
    try:
        # Other scrapes are served meanwhile, whole.
        for _ in range(3):
            assert len(scrape(port)) > len(body) * 0.9

        dropped = '{reason="write_timeout"}'

        def timed_out() -> float:
            text = scrape(port, "/metrics?name[]=faaslens_http_connections_dropped_total")
            return next(
                (float(x.rpartition(b" ")[2]) for x in text.splitlines() if dropped.encode() in x),
                0.0,
            )

        poll_until(lambda: timed_out() >= STALLED, timeout=60, what="stalled writes cut")
        growth = (status_kb(proc.pid, "VmHWM") - rss_before_kb) * 1024
        # Before: every stalled client held two whole bodies (~40 bodies for 20 clients).
        assert growth < 12 * len(body), (growth, len(body))
        for s in stalled:  # each stalled connection was cut before its body was through
            s.settimeout(30)
            got = 0
            try:
                while chunk := s.recv(1 << 20):
                    got += len(chunk)
            except ConnectionResetError:
                pass
            assert got < len(body) * PIPELINED
    finally:
        for s in stalled:
            s.close()
