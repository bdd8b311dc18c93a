"""Three workers share a UDP port (SO_REUSEPORT) and live through an Elasticsearch outage.

Real Elasticsearch behind a TCP proxy the test closes and opens again (the outage),
real Prometheus scraping the three workers. Nothing is lost, nothing is indexed twice,
the PromQL sums across the workers equal what Elasticsearch holds, and the loss ledger
finds no frame missing.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from faaslens.ingest.config import IngestConfig
from faaslens.ingest.runner import Worker
from faaslens.query.client import QueryClient
from tests.integration.test_es_sink import frame, invocation_events
from tests.support import Prometheus, apoll_until, delete_es_prefix, es_request

pytestmark = pytest.mark.integration

WORKERS = 3
SENDERS = 24  # each from its own UDP port: the kernel hashes senders over the workers
FRAMES_PER_PHASE = 10  # per sender, before, during and after the outage


class TcpProxy:
    """Forwards connections to Elasticsearch; ``down()`` refuses and cuts them (an outage)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()  # requests in flight fail mid-way
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}


@pytest.fixture
async def proxy(es_url: str) -> AsyncIterator[TcpProxy]:
    host, port = es_url.removeprefix("http://").split(":")
    instance = TcpProxy((host, int(port)))
    await instance.up()
    yield instance
    if instance._server is not None:
        await instance.down()


def send_phase(
    sockets: list[socket.socket], srcs: list[str], phase: int, port: int, start_ms: int
) -> None:
    for sock, src in zip(sockets, srcs, strict=True):
        for i in range(FRAMES_PER_PHASE):
            seq = phase * FRAMES_PER_PHASE + i + 1
            events = invocation_events(f"{src}-{seq}", start_ms + seq, logs=1, failed=False)
            sock.sendto(frame(src, seq, events), ("127.0.0.1", port))


async def test_three_workers_through_an_outage_lose_and_duplicate_nothing(
    proxy: TcpProxy, es_url: str, prometheus: Prometheus, tmp_path: Path
) -> None:
    prefix = "t" + uuid.uuid4().hex[:8]

    def config(n: int, udp_listen: str) -> IngestConfig:
        return IngestConfig(
            udp_listen=udp_listen,
            tcp_listen="",
            http_listen="127.0.0.1:0",
            reuse_port=True,
            es_url=f"http://127.0.0.1:{proxy.port}",
            es_index_prefix=prefix,
            state_dir=str(tmp_path / f"worker-{n}"),
            batch_max_wait_s=0.1,
            retry_base_s=0.05,
            retry_max_s=0.5,
            es_retry_window_s=1.0,
            es_request_timeout_s=5.0,
        )

    first = Worker(config(0, "127.0.0.1:0"))
    await first.start()
    workers = [first]
    instances: list[str] = []
    try:
        assert first.udp_address is not None
        port = first.udp_address[1]
        for n in range(1, WORKERS):
            worker = Worker(config(n, f"127.0.0.1:{port}"))
            await worker.start()
            workers.append(worker)
        for worker in workers:
            assert worker.http_address is not None
            instances.append(f"{worker.http_address[0]}:{worker.http_address[1]}")
            prometheus.add_target(instances[-1])
        for instance in instances:
            await asyncio.to_thread(prometheus.wait_for_target_up, instance, 60)

        srcs = [f"s{i}-{uuid.uuid4().hex[:6]}" for i in range(SENDERS)]
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in srcs]
        start_ms = int(time.time() * 1000)
        total = 3 * FRAMES_PER_PHASE * SENDERS

        def received() -> float:
            return sum(
                w.registry.get_sample_value("faaslens_events_accepted_total", {"type": "inv"}) or 0
                for w in workers
            )

        async def accepted(n: int) -> bool:
            return received() == n

        def spooled() -> float:
            return sum(
                w.registry.get_sample_value("faaslens_docs_spooled_total") or 0 for w in workers
            )

        send_phase(sockets, srcs, 0, port, start_ms)
        await apoll_until(lambda: accepted(total // 3), timeout=30, what="phase 1 accepted")
        await proxy.down()  # Elasticsearch away
        send_phase(sockets, srcs, 1, port, start_ms)
        await apoll_until(lambda: accepted(2 * total // 3), timeout=30, what="phase 2 accepted")

        async def all_spooled() -> bool:
            return spooled() >= 2 * (total // 3)  # an invocation and its log line each

        await apoll_until(all_spooled, timeout=60, what="the outage's documents spooled")
        await proxy.up()  # back
        send_phase(sockets, srcs, 2, port, start_ms)
        await apoll_until(lambda: accepted(total), timeout=30, what="phase 3 accepted")
        for sock in sockets:
            sock.close()

        async def settled() -> bool:
            return all(
                w.ready() and w.sink.spool.is_empty()  # type: ignore[attr-defined]
                for w in workers
            )

        await apoll_until(settled, timeout=120, what="every spool replayed")
        for worker in workers:  # every worker took part: the kernel spread the senders
            share = worker.registry.get_sample_value(
                "faaslens_events_accepted_total", {"type": "inv"}
            )
            assert share and share < total
            gaps = (worker.registry.get_sample_value("faaslens_frames_lost_total") or 0) - (
                worker.registry.get_sample_value("faaslens_frames_late_total") or 0
            )
            assert gaps == 0  # sender affinity: each worker's own counter is exact too

        async def stored() -> bool:
            es_request(es_url, "POST", f"/{prefix}-*/_refresh")
            body = es_request(es_url, "GET", f"/{prefix}-invocations-*/_count")
            return int(body["count"]) == total

        await apoll_until(stored, timeout=60, what="every invocation in Elasticsearch")
        logs = es_request(es_url, "GET", f"/{prefix}-logs-*/_count")["count"]
        assert logs == total  # one log line each; ids are unique, so none twice

        # The sums across the three workers, as Prometheus sees them, match Elasticsearch.
        sel = f'instance=~"{"|".join(instances)}"'
        # Each document is confirmed once across the workers: newly indexed, or, when the
        # outage cut the bulk answer, found already there (409) on resend.
        queries = {
            f"sum(faaslens_docs_indexed_total{{{sel}}})"
            f" + sum(faaslens_docs_duplicate_total{{{sel}}})": 2 * total,
            f'sum(faaslens_events_accepted_total{{type="inv",{sel}}})': total,
            f"sum(faaslens_dead_letter_total{{{sel}}})": 0,
            f"sum(faaslens_frames_lost_total{{{sel}}}) - sum(faaslens_frames_late_total{{{sel}}})"
            f" + sum(faaslens_frames_dropped_total{{{sel}}})": 0,
        }
        seen: dict[str, float] = {}

        def promql_agrees() -> bool:
            for expr in queries:
                rows = prometheus.query(expr)
                seen[expr] = float(rows[0]["value"][1]) if rows else float("nan")
            return seen == queries

        await apoll_until(
            lambda: asyncio.to_thread(promql_agrees),
            timeout=60,
            what="PromQL sums across the workers",
        )
        assert spooled() > 0  # the outage really sent documents to the spools

        with QueryClient(es_url, prefix) as client:
            report = client.loss(since_ms=start_ms - 60_000)
        assert (report.stored, report.missing) == (total, 0)
        assert len(report.senders) == SENDERS
    finally:
        for worker in workers:
            await worker.stop()
        for instance in instances:
            prometheus.remove_target(instance)
        delete_es_prefix(es_url, prefix)


async def test_a_second_worker_on_the_same_state_directory_is_refused_in_one_line(
    es_url: str, es_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default settings, started from two different directories: the same state directory
    (it does not depend on the working directory), so the second worker refuses it."""
    from faaslens.ingest.config import load_config
    from faaslens.ingest.dirlock import DirectoryInUse

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    environ = {
        "FAASLENS_ES_URL": es_url,
        "FAASLENS_ES_INDEX_PREFIX": es_prefix,
        "FAASLENS_UDP_LISTEN": "127.0.0.1:0",
        "FAASLENS_TCP_LISTEN": "",
        "FAASLENS_HTTP_LISTEN": "",
    }
    configs = []
    for cwd in ("a", "b"):
        (tmp_path / cwd).mkdir()
        monkeypatch.chdir(tmp_path / cwd)
        configs.append(load_config(environ=environ))
    assert (
        configs[0].spool_dir
        == configs[1].spool_dir
        == str(tmp_path / "state" / "faaslens" / "spool")
    )
    first = Worker(configs[0])
    await first.start()
    try:
        second = Worker(configs[1])
        with pytest.raises(DirectoryInUse) as refused:
            await second.start()
        line = str(refused.value)
        assert "\n" not in line
        assert f"spool_dir {configs[0].spool_dir} is in use by another worker" in line
        await second.stop()
    finally:
        await first.stop()
