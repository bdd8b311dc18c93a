"""The worker over real UDP/TCP sockets and HTTP, with the null sink (no Elasticsearch needed).

Everything is awaited or polled with a deadline; ports are 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faaslens.ingest.config import IngestConfig
from faaslens.ingest.events import Doc
from faaslens.ingest.runner import Worker
from faaslens.ingest.sink_null import NullSink
from tests.support import apoll_until

pytestmark = pytest.mark.integration

TS = 1_764_028_800_000


def events(i: int, n_logs: int = 2, fn: str = "checkout") -> list[dict[str, Any]]:
    ex = f"exec-{fn}-{i}"
    inv = {
        "t": "inv",
        "faas.execution": ex,
        "@timestamp": TS + i,
        "event.duration": 5_000_000,
        "event.outcome": "success",
        "faas.coldstart": i == 0,
        "trace.id": f"{i:032x}",
    }
    logs = [
        {
            "t": "log",
            "@timestamp": TS + i,
            "event.sequence": k,
            "log.level": "info",
            "message": f"line {k}",
            "faas.execution": ex,
        }
        for k in range(n_logs)
    ]
    return [inv, *logs]


def frame(seq: int, src: str = "s1", fn: str = "checkout", **over: Any) -> bytes:
    env: dict[str, Any] = {
        "v": 1,
        "src": src,
        "seq": seq,
        "res": {"faas.name": fn, "cloud.provider": "aws"},
        "ev": events(seq, fn=fn),
    }
    env.update(over)
    return orjson.dumps(env)


def config(**over: Any) -> IngestConfig:
    base = IngestConfig(
        udp_listen="127.0.0.1:0",
        tcp_listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        batch_max_wait_s=0.05,
        shutdown_timeout_s=20,
        timestamp_max_age_s=0,  # the frames are dated TS, whatever today is
    )
    return dataclasses.replace(base, **over)


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    w = Worker(config(), sink=NullSink(keep=True))
    async with w:
        yield w


def sink_of(w: Worker) -> NullSink:
    assert isinstance(w.sink, NullSink)
    return w.sink


def send_udp(w: Worker, *frames: bytes) -> None:
    assert w.udp_address is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for f in frames:
            s.sendto(f, w.udp_address)


async def http_get(w: Worker, path: str, accept: str = "") -> tuple[int, str, str]:
    assert w.http_address is not None
    url = f"http://{w.http_address[0]}:{w.http_address[1]}{path}"

    def get() -> tuple[int, str, str]:
        req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()

    return await asyncio.to_thread(get)


async def scrape(w: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, _, text = await http_get(w, "/metrics")
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(w: Worker, name: str, **labels: str) -> float:
    v = w.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_udp_and_tcp_frames_become_documents_and_metrics(worker: Worker) -> None:
    sink = sink_of(worker)
    send_udp(worker, *(frame(i) for i in range(1, 51)))
    assert worker.tcp_address is not None
    _, writer = await asyncio.open_connection(*worker.tcp_address)
    writer.write(b"".join(frame(i, src="t1", fn="billing") + b"\n" for i in range(1, 31)))
    await writer.drain()
    await asyncio.wait_for(sink.wait_for_count(80 * 3), 30)
    ids = {d.doc_id for d in sink.docs}
    assert len(ids) == 80 * 3  # inv + 2 logs per frame, all distinct
    assert "exec-checkout-7" in ids and "exec-billing-30-1" in ids
    inv_doc = next(d for d in sink.docs if d.doc_id == "exec-checkout-7")
    assert inv_doc.kind == "invocations" and inv_doc.day == "2025.11.25"
    assert orjson.loads(inv_doc.source)["faas.name"] == "checkout"
    assert sample(worker, "faaslens_datagrams_received_total") == 50
    assert sample(worker, "faaslens_tcp_frames_received_total") == 30
    assert sample(worker, "faaslens_events_accepted_total", type="inv") == 80
    assert sample(worker, "faaslens_events_accepted_total", type="log") == 160
    assert sample(worker, "faaslens_tcp_connections") == 1
    samples = await scrape(worker)
    key = (
        "faas_invocations_total",
        (
            ("coldstart", "false"),
            ("environment", ""),
            ("function", "billing"),
            ("outcome", "success"),
            ("provider", "aws"),
            ("region", ""),
            ("trigger", ""),
            ("version", ""),
        ),
    )
    assert samples[key] == 30
    writer.close()
    await writer.wait_closed()


async def test_metrics_formats_and_health(worker: Worker) -> None:
    send_udp(worker, frame(1))
    await asyncio.wait_for(sink_of(worker).wait_for_count(3), 30)
    status, ctype, text = await http_get(
        worker, "/metrics", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    )
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    assert '# {invocation_id="exec-checkout-1",trace_id="' in text
    status, ctype, text = await http_get(worker, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert "faas_invocations_total{" in text and "invocation_id" not in text
    assert "_created" not in text
    assert (await http_get(worker, "/healthz"))[0] == 200
    assert (await http_get(worker, "/readyz"))[0] == 200
    assert (await http_get(worker, "/nope"))[0] == 404


async def test_hostile_datagrams_counted_by_reason_and_worker_keeps_running() -> None:
    w = Worker(config(max_frame_bytes=4096), sink=NullSink(keep=True))
    async with w:
        good = frame(1)
        hostile = [
            b"",
            b"\x00" * 100,
            good[: len(good) // 2],  # truncated
            b"\xff\xfe{not utf8}",
            b'{"v":1}',
            orjson.dumps({"v": 9, "src": "s", "seq": 1, "ev": [{}]}),
            b"x" * 5000,  # oversized
            b"s1 k1 " + b"0" * 64 + b" " + good,  # signed with a key we do not have
            b"[" * 4000,  # deep nesting (rejected by the parser, not by recursion)
            orjson.dumps({"v": 1, "src": "s", "seq": 2, "ev": [{"t": "inv"}, {"t": "nope"}]}),
        ]
        send_udp(w, *hostile)
        send_udp(w, frame(3))
        await apoll_until(
            lambda: _async(sample(w, "faaslens_events_accepted_total", type="inv") == 1),
            timeout=30,
            what="the good frame after the hostile ones",
        )
        await apoll_until(
            lambda: _async(sample(w, "faaslens_events_rejected_total", reason="missing_field")),
            timeout=30,
        )
        rejected = {
            r: sample(w, "faaslens_frames_rejected_total", reason=r)
            for r in ("bad_json", "bad_envelope", "bad_version", "too_large", "unknown_key")
        }
        assert rejected == {
            "bad_json": 5,
            "bad_envelope": 1,
            "bad_version": 1,
            "too_large": 1,
            "unknown_key": 1,
        }
        assert sample(w, "faaslens_events_rejected_total", reason="unknown_type") == 1
        assert (await http_get(w, "/healthz"))[0] == 200


async def _async(value: Any) -> Any:
    return value


async def test_sequence_gaps_count_lost_frames(worker: Worker) -> None:
    send_udp(worker, frame(1, src="g"), frame(2, src="g"), frame(6, src="g"), frame(4, src="g"))
    await asyncio.wait_for(sink_of(worker).wait_for_count(12), 30)
    await apoll_until(lambda: _async(sample(worker, "faaslens_frames_late_total") == 1))
    assert sample(worker, "faaslens_frames_lost_total") == 3


async def test_tcp_long_line_resyncs_blank_lines_and_unterminated_tail() -> None:
    w = Worker(config(max_frame_bytes=2048), sink=NullSink(keep=True))
    async with w:
        assert w.tcp_address is not None
        _reader, writer = await asyncio.open_connection(*w.tcp_address)
        long_line = b'{"v":1,' + b'"pad":"' + b"x" * 100_000 + b'"}'
        writer.write(frame(1, src="t") + b"\n\n")
        # the long line arrives in pieces, then the stream goes on
        for i in range(0, len(long_line), 4096):
            writer.write(long_line[i : i + 4096])
            await writer.drain()
        writer.write(b"\n" + frame(2, src="t") + b"\n" + frame(3, src="t"))  # no final LF
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(sink_of(w).wait_for_count(9), 30)
        assert sample(w, "faaslens_frames_rejected_total", reason="too_large") == 1
        assert sample(w, "faaslens_tcp_frames_received_total") == 3
        assert {d.doc_id for d in sink_of(w).docs if d.kind == "invocations"} == {
            "exec-checkout-1",
            "exec-checkout-2",
            "exec-checkout-3",
        }
        writer.close()


class GateSink(NullSink):
    """A null sink whose writes wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(keep=True)
        self.gate = asyncio.Event()

    async def write(self, batch: Sequence[Doc]) -> None:
        await self.gate.wait()
        await super().write(batch)


async def test_tcp_backpressure_loses_nothing() -> None:
    sink = GateSink()
    w = Worker(config(queue_max=20, batch_max_docs=3), sink=sink)
    async with w:
        assert w.tcp_address is not None
        _, writer = await asyncio.open_connection(*w.tcp_address)
        payload = b"".join(frame(i, src="bp") + b"\n" for i in range(1, 401))
        writer.write(payload)
        assert w.pipeline is not None
        pipe = w.pipeline
        # the queue fills and the connection is paused instead of dropping
        await apoll_until(lambda: _async(pipe.paused), timeout=30, what="tcp paused")
        received = sample(w, "faaslens_tcp_frames_received_total")
        assert 20 <= received < 400
        assert sample(w, "faaslens_frames_dropped_total", reason="queue_full") == 0
        sink.gate.set()
        await writer.drain()
        await asyncio.wait_for(sink.wait_for_count(400 * 3), 60)
        assert sample(w, "faaslens_frames_dropped_total", reason="queue_full") == 0
        assert len({d.doc_id for d in sink.docs}) == 1200
        writer.close()


@pytest.mark.parametrize(
    "bounds", [{"queue_max": 10}, {"queue_max_bytes": 8000}], ids=["frames", "bytes"]
)
async def test_udp_queue_full_drops_are_counted_never_silent(bounds: dict[str, int]) -> None:
    sink = GateSink()
    w = Worker(config(batch_max_docs=1, **bounds), sink=sink)
    async with w:
        send_udp(w, *(frame(i, src="q") for i in range(1, 201)))
        received = 200
        await apoll_until(
            lambda: _async(sample(w, "faaslens_datagrams_received_total") == received),
            timeout=30,
        )
        sink.gate.set()
        dropped = sample(w, "faaslens_frames_dropped_total", reason="queue_full")
        assert dropped > 0
        processed = received - dropped
        await asyncio.wait_for(sink.wait_for_count(int(processed) * 3), 30)
        assert sample(w, "faaslens_events_accepted_total", type="inv") == processed
        # Each loss is counted once: the worker's own drops leave no sequence gap (all 200
        # datagrams arrived, so nothing was lost in transit).
        await apoll_until(lambda: _async(w.pipeline is not None and w.pipeline.depth == 0))
        lost = sample(w, "faaslens_frames_lost_total") - sample(w, "faaslens_frames_late_total")
        assert lost == 0


async def test_graceful_stop_drains_everything() -> None:
    sink = NullSink(keep=True)
    w = Worker(config(batch_max_wait_s=30, batch_max_docs=100_000), sink=sink)
    await w.start()
    send_udp(w, *(frame(i, src="d") for i in range(1, 301)))
    assert w.tcp_address is not None
    _, writer = await asyncio.open_connection(*w.tcp_address)
    writer.write(b"".join(frame(i, src="d2") + b"\n" for i in range(1, 101)))
    await writer.drain()
    await apoll_until(
        lambda: _async(
            sample(w, "faaslens_datagrams_received_total") == 300
            and sample(w, "faaslens_tcp_frames_received_total") == 100
        ),
        timeout=30,
    )
    assert sink.count < 1200  # still held by the batcher (long wait, big batches)
    await w.stop()
    assert sink.count == 1200 and sink.closed
    assert not w.ready()
    writer.close()


async def test_many_tcp_connections_at_once(worker: Worker) -> None:
    assert worker.tcp_address is not None
    conns = [await asyncio.open_connection(*worker.tcp_address) for _ in range(50)]
    await apoll_until(lambda: _async(sample(worker, "faaslens_tcp_connections") == 50))
    for n, (_, writer) in enumerate(conns):
        writer.write(b"".join(frame(i, src=f"c{n}") + b"\n" for i in range(1, 21)))
    await asyncio.gather(*(writer.drain() for _, writer in conns))
    await asyncio.wait_for(sink_of(worker).wait_for_count(50 * 20 * 3), 60)
    assert sample(worker, "faaslens_tcp_frames_received_total") == 1000
    for _, writer in conns:
        writer.close()
    await apoll_until(lambda: _async(sample(worker, "faaslens_tcp_connections") == 0))


async def test_two_workers_share_ports_with_reuse_port() -> None:
    first = Worker(config(reuse_port=True, http_listen=""), sink=NullSink())
    async with first:
        assert first.udp_address is not None and first.tcp_address is not None
        udp_port, tcp_port = first.udp_address[1], first.tcp_address[1]
        second = Worker(
            config(
                reuse_port=True,
                http_listen="",
                udp_listen=f"127.0.0.1:{udp_port}",
                tcp_listen=f"127.0.0.1:{tcp_port}",
            ),
            sink=NullSink(),
        )
        async with second:
            assert second.udp_address == first.udp_address
            assert second.tcp_address == first.tcp_address
