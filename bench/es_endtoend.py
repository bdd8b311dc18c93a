"""Sustained docs/s into a real Elasticsearch through the sink, against the
client's own bulk helpers indexing the same documents in the same run.

Documents are realistic: frames of one invocation record + three log lines
(an error document every 50th invocation) turned into documents by the real
validator. Each measurement writes into fresh indices (own prefix, templates
installed), then checks ``_count`` after a refresh: 0 lost, 0 duplicated.

* baseline, 1 stream: ``elasticsearch.helpers.bulk`` (sync client, same chunk size)
* sink, 1 writer:     ``ElasticsearchSink.write`` awaited batch after batch
* baseline, W streams: ``elasticsearch.helpers.parallel_bulk`` (W threads)
* sink, W writers:    W tasks calling ``write`` concurrently

Ratio = sink docs/s / baseline docs/s (goal >= 0.8). A stricter reference is also
measured: prebuilt bulk bodies POSTed with no serialization and no checks
(the pace of the server itself).

    python bench/es_endtoend.py [--quick] [--es-url URL] [--docs N] [--batch N] [--writers W]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from faaslens.protocol import INDEX_KINDS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import orjson  # noqa: E402
import structlog  # noqa: E402
from _es_worker import raw_bulk_seconds  # noqa: E402
from _worker_frames import frame, templates  # noqa: E402
from elasticsearch import AsyncElasticsearch, Elasticsearch, helpers  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from faaslens.ingest.config import IngestConfig  # noqa: E402
from faaslens.ingest.events import Doc  # noqa: E402
from faaslens.ingest.sink_es.bulk import build_body  # noqa: E402
from faaslens.ingest.sink_es.sink import ElasticsearchSink  # noqa: E402
from faaslens.ingest.templates import delete_templates, install_templates, load_templates  # noqa: E402
from faaslens.ingest.validate import Validator  # noqa: E402

GOAL = 0.8
TEMPLATES = HERE.parent / "es-templates"


def make_docs(frames: int) -> list[Doc]:
    """Documents of ``frames`` invocations, through the real validator."""
    validator = Validator()
    tpl = templates(frames, src="esbench")  # one template per frame: unique ids
    docs: list[Doc] = []
    for seq in range(1, frames + 1):
        result = validator.validate(frame(tpl, seq))
        if result.rejected or result.event_rejections:
            raise SystemExit(f"validator refused a bench frame: {result}")
        docs += result.docs
    return docs


def batches(docs: Sequence[Doc], size: int) -> list[Sequence[Doc]]:
    return [docs[i : i + size] for i in range(0, len(docs), size)]


class Es:
    """Setup, verification and cleanup through the sync client (not timed)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = Elasticsearch(url, request_timeout=120)

    def prepare(self, prefix: str) -> None:
        """Install the templates for ``prefix`` (both sides index into the same mappings)."""

        async def install() -> None:
            client = AsyncElasticsearch(self.url)
            try:
                await install_templates(client, load_templates(TEMPLATES, prefix))
            finally:
                await client.close()

        asyncio.run(install())

    def count(self, prefix: str) -> int:
        self.client.indices.refresh(index=f"{prefix}-*", allow_no_indices=True)
        return int(self.client.count(index=f"{prefix}-*", allow_no_indices=True)["count"])

    def cleanup(self, prefix: str) -> None:
        rows: Any = self.client.cat.indices(index=f"{prefix}-*", format="json", h="index").body
        names = [row["index"] for row in rows]
        if names:
            self.client.indices.delete(index=",".join(names))

        async def drop() -> None:
            client = AsyncElasticsearch(self.url)
            try:
                await delete_templates(client, load_templates(TEMPLATES, prefix))
            finally:
                await client.close()

        asyncio.run(drop())


def run_baseline(es: Es, prefix: str, docs: Sequence[Doc], batch: int, streams: int) -> float:
    """Seconds for the client's helpers to index ``docs`` (actions as the helpers expect)."""
    actions = [
        {
            "_op_type": "create",
            "_index": d.index_name(prefix),
            "_id": d.doc_id,
            "_source": orjson.loads(d.source),
        }
        for d in docs
    ]
    client = Elasticsearch(es.url, request_timeout=120)
    started = time.perf_counter()
    if streams == 1:
        _, errors = helpers.bulk(client, actions, chunk_size=batch, max_chunk_bytes=50 << 20)
        if errors:
            raise SystemExit(f"baseline errors: {errors!r:.500}")
    else:
        for ok_item, info in helpers.parallel_bulk(
            client, actions, thread_count=streams, chunk_size=batch, max_chunk_bytes=50 << 20
        ):
            if not ok_item:
                raise SystemExit(f"baseline error: {info}")
    took = time.perf_counter() - started
    client.close()
    return took


def run_raw(es: Es, prefix: str, docs: Sequence[Doc], batch: int, streams: int) -> float:
    """Seconds to POST prebuilt bulk bodies (no serialization, no checks): the server's pace."""
    bodies = [build_body(chunk, prefix) for chunk in batches(docs, batch)]
    client = Elasticsearch(es.url, request_timeout=120)
    took = raw_bulk_seconds(client, bodies, streams)
    client.close()
    return took


async def _sink_run(
    url: str, prefix: str, docs: Sequence[Doc], *, batch: int, writers: int, spool: str
) -> tuple[float, float, dict[str, float]]:
    config = IngestConfig(
        es_url=url,
        es_index_prefix=prefix,
        spool_dir=spool,
        dead_letter_path=os.path.join(spool, "dead.ndjson"),
        batch_max_docs=batch,
    )
    registry = CollectorRegistry()
    sink = ElasticsearchSink(config, registry)
    await sink.start()
    queue = iter(batches(docs, batch))

    async def writer() -> None:
        for chunk in queue:  # shared iterator: each batch taken once
            await sink.write(chunk)

    cpu0, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    took, cpu = time.perf_counter() - started, time.process_time() - cpu0
    await sink.close()

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    stats = {
        "indexed": sum(value("faaslens_docs_indexed_total", index_kind=k) for k in INDEX_KINDS),
        "duplicate": value("faaslens_docs_duplicate_total"),
        "spooled": value("faaslens_docs_spooled_total"),
        "failed": sum(
            value("faaslens_docs_failed_total", reason=r)
            for r in ("mapping", "validation", "other", "spool_full", "spool_io")
        ),
        "retries": sum(
            value("faaslens_bulk_retries_total", reason=r)
            for r in ("too_many_requests", "server_error", "connection", "timeout", "forbidden")
        ),
    }
    return took, cpu, stats


def _sender(job: tuple[tuple[str, int], int, float, str], ready: Any, go: Any, result: Any) -> None:
    """Another process: ``frames`` unique frames over UDP at ``rate`` per second."""
    addr, frames, rate, src = job
    tpl = templates(frames, src=src)
    payloads = [frame(tpl, seq) for seq in range(1, frames + 1)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(addr)
    ready.set()
    go.wait()
    started = time.perf_counter()
    errors = 0
    burst = max(1, int(rate / 2000))
    for i in range(0, frames, burst):
        for payload in payloads[i : i + burst]:
            try:
                sock.send(payload)
            except OSError:
                errors += 1
        ahead = started + (i + burst) / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    result.put((errors, time.perf_counter() - started))


def expected_docs(frames: int) -> int:
    """Documents ``frames`` bench frames become: 4 each, plus an error doc every 50th."""
    return frames * 4 + (frames + 49) // 50


async def _worker_run(
    url: str, prefix: str, frames: int, rate: float, spool: str
) -> dict[str, float]:
    """The whole worker (UDP -> validate -> batch -> sink) fed by a paced sender process."""
    from faaslens.ingest.runner import Worker

    config = IngestConfig(
        es_url=url,
        es_index_prefix=prefix,
        udp_listen="127.0.0.1:0",
        tcp_listen="",
        http_listen="",
        spool_dir=spool,
        dead_letter_path=os.path.join(spool, "dead.ndjson"),
    )
    registry = CollectorRegistry()
    worker = Worker(config, registry)
    await worker.start()
    address = worker.udp_address
    assert address is not None
    ctx = multiprocessing.get_context("spawn")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_sender, args=((address, frames, rate, "e2e" + prefix[-6:]), ready, go, result)
    )
    proc.start()
    await asyncio.to_thread(lambda: ready.wait(300))
    want = expected_docs(frames)

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    def confirmed() -> float:
        return sum(value("faaslens_docs_indexed_total", index_kind=k) for k in INDEX_KINDS) + value(
            "faaslens_docs_duplicate_total"
        )

    started, cpu0 = time.perf_counter(), time.process_time()
    go.set()
    send_errors, send_s = await asyncio.to_thread(lambda: result.get(timeout=600))
    proc.join(10)
    # Done when every document is confirmed, or when nothing moved for 5 s (losses).
    last, last_change = -1.0, time.perf_counter()
    while confirmed() < want and time.perf_counter() - last_change < 5:
        now = confirmed()
        if now != last:
            last, last_change = now, time.perf_counter()
        await asyncio.sleep(0.02)
    took = (last_change if confirmed() < want else time.perf_counter()) - started
    cpu = time.process_time() - cpu0
    await worker.stop()
    return {
        "took": took,
        "send_s": send_s,
        "send_errors": send_errors,
        "frames_received": value("faaslens_datagrams_received_total"),
        "indexed": confirmed() - value("faaslens_docs_duplicate_total"),
        "duplicate": value("faaslens_docs_duplicate_total"),
        "spooled": value("faaslens_docs_spooled_total"),
        "cpu": cpu,
    }


def measure(
    es: Es, name: str, docs: Sequence[Doc], run: Callable[[str], tuple[float, dict[str, Any]]]
) -> float:
    prefix = "bench" + uuid.uuid4().hex[:8]
    es.prepare(prefix)
    try:
        took, extra = run(prefix)
        count = es.count(prefix)
    finally:
        es.cleanup(prefix)
    rate = len(docs) / took
    lost = len(docs) - count
    note = " ".join(f"{k}={v:g}" for k, v in extra.items())
    print(f"  {name:<26} {rate:>9,.0f} docs/s  {took:6.2f}s  count={count} lost={lost} {note}")
    if count != len(docs):
        raise SystemExit(f"{name}: {len(docs)} docs sent, {count} in Elasticsearch")
    if extra.get("indexed", len(docs)) != len(docs) or extra.get("duplicate", 0):
        raise SystemExit(f"{name}: sink counted {extra}")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument(
        "--es-url", default=os.environ.get("ES_URL", "http://127.0.0.1:9200"), help="Elasticsearch"
    )
    parser.add_argument("--docs", type=int, default=0, help="documents per measurement")
    parser.add_argument("--batch", type=int, default=2000, help="documents per bulk request")
    parser.add_argument("--writers", type=int, default=2, help="concurrent writers / threads")
    parser.add_argument("--rounds", type=int, default=0, help="measurement rounds")
    parser.add_argument("--no-worker", action="store_true", help="skip the whole-worker runs")
    parser.add_argument("--worker-frames", type=int, default=0, help="frames per worker run")
    parser.add_argument(
        "--worker-rates", default="5000,10000,15000", help="offered frames/s, comma-separated"
    )
    args = parser.parse_args()
    # The sink's info lines (templates installed, ...) would interleave with the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n_docs = args.docs or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    es = Es(args.es_url)
    try:
        es.client.cluster.health(wait_for_status="yellow", timeout="5s")
    except Exception as exc:  # any failure here means: no server to measure
        print(f"Elasticsearch not reachable at {args.es_url}: {exc}", file=sys.stderr)
        return 2
    docs = make_docs(max(1, n_docs // 4))
    avg = sum(len(d.source) for d in docs) / len(docs)
    kinds = {k: sum(1 for d in docs if d.kind == k) for k in INDEX_KINDS}
    print(
        f"es_endtoend: {len(docs)} docs/measurement ({kinds}), avg source {avg:.0f} B, "
        f"batch {args.batch}, {args.writers} writers, {rounds} round(s), {args.es_url}"
    )
    spool = tempfile.mkdtemp(prefix="faaslens-bench-spool-")
    results: dict[str, list[float]] = {}
    cpu_per_doc: list[float] = []

    def sink_runner(writers: int) -> Callable[[str], tuple[float, dict[str, Any]]]:
        def run(prefix: str) -> tuple[float, dict[str, Any]]:
            took, cpu, stats = asyncio.run(
                _sink_run(args.es_url, prefix, docs, batch=args.batch, writers=writers, spool=spool)
            )
            cpu_per_doc.append(cpu / len(docs) * 1e6)
            return took, {**stats, "cpu_us_per_doc": round(cpu / len(docs) * 1e6, 2)}

        return run

    def baseline_runner(streams: int) -> Callable[[str], tuple[float, dict[str, Any]]]:
        return lambda prefix: (run_baseline(es, prefix, docs, args.batch, streams), {})

    def raw_runner(streams: int) -> Callable[[str], tuple[float, dict[str, Any]]]:
        return lambda prefix: (run_raw(es, prefix, docs, args.batch, streams), {})

    plan = [
        ("baseline helpers.bulk", baseline_runner(1)),
        ("sink, 1 writer", sink_runner(1)),
        (f"baseline parallel_bulk x{args.writers}", baseline_runner(args.writers)),
        (f"sink, {args.writers} writers", sink_runner(args.writers)),
        ("raw prebuilt bodies x1", raw_runner(1)),
        (f"raw prebuilt bodies x{args.writers}", raw_runner(args.writers)),
    ]
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}")
        for name, run in plan:
            results.setdefault(name, []).append(measure(es, name, docs, run))
    med = {name: statistics.median(v) for name, v in results.items()}
    names = [name for name, _ in plan]
    seq_ratio = med[names[1]] / med[names[0]]
    par_ratio = med[names[3]] / med[names[2]]
    best_ratio = max(med[names[1]], med[names[3]]) / max(med[names[0]], med[names[2]])
    print("medians:")
    for name in names:
        print(f"  {name:<26} {med[name]:>9,.0f} docs/s")
    print(f"ratio sink/helpers.bulk (1 stream):       {seq_ratio:.2f}")
    print(f"ratio sink/parallel_bulk ({args.writers} streams):    {par_ratio:.2f}")
    print(f"ratio best sink / best baseline:          {best_ratio:.2f}  (goal >= {GOAL})")
    raw_seq = med[names[1]] / med[names[4]]
    raw_par = med[names[3]] / med[names[5]]
    print(f"ratio sink / raw prebuilt bodies, 1 stream:  {raw_seq:.2f}  (server's own pace)")
    print(f"ratio sink / raw prebuilt bodies, {args.writers} streams: {raw_par:.2f}")
    print(f"sink CPU in this process: {statistics.median(cpu_per_doc):.1f} us/doc (median)")
    print("0 lost, 0 duplicates in every measurement (checked with _count after refresh)")
    try:
        if not args.no_worker:
            client = max(med[names[0]], med[names[2]])
            run_worker(es, args, med[names[5]], client, spool)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return 0


def run_worker(
    es: Es, args: argparse.Namespace, raw_rate: float, client_rate: float, spool: str
) -> None:
    """The whole worker fed by real UDP, at the offered rates, against Elasticsearch's
    ceiling with the client's bulk helpers and with raw prebuilt bodies."""
    frames = args.worker_frames or (10_000 if args.quick else 50_000)
    rates = [float(r) for r in args.worker_rates.split(",")]
    print(
        f"worker end to end: {frames} frames of 4 events (~1.4 KB) over UDP from another "
        f"process, {expected_docs(frames)} docs per run"
    )
    best = 0.0
    for rate in rates:
        prefix = "bench" + uuid.uuid4().hex[:8]
        es.prepare(prefix)
        try:
            stats = asyncio.run(_worker_run(es.url, prefix, frames, rate, spool))
            count = es.count(prefix)
        finally:
            es.cleanup(prefix)
        want = expected_docs(frames)
        docs_s = count / stats["took"]
        print(
            f"  offered {rate * 4:>8,.0f} docs/s ({rate:,.0f} frames/s): {docs_s:>8,.0f} docs/s "
            f"end to end, {stats['took']:.2f}s, count={count}/{want} "
            f"lost={want - count} duplicates={stats['duplicate']:g} "
            f"frames received={stats['frames_received']:g}/{frames} "
            f"spooled={stats['spooled']:g} "
            f"worker CPU {stats['cpu'] / stats['took']:.0%} of a core; "
            f"ratio to the client's ceiling {docs_s / client_rate:.2f}, "
            f"to raw prebuilt bodies {docs_s / raw_rate:.2f}"
        )
        if count == want and stats["duplicate"] == 0:
            best = max(best, docs_s)
    print(
        f"worker end to end, best run with 0 lost and 0 duplicates: {best:,.0f} docs/s = "
        f"{best / client_rate:.2f} x the client's bulk ceiling (goal >= {GOAL}), "
        f"{best / raw_rate:.2f} x raw prebuilt bodies (Elasticsearch, sender and worker "
        "share this machine's cores)"
    )


if __name__ == "__main__":
    sys.exit(main())
