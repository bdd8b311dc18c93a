"""Worker cost per event with the null sink, against a bare recv + orjson.loads loop.

Both receivers get the same frames (an invocation record + 3 log lines,
~1.4 KB each) from a sender in another process, over real UDP on loopback.
The figure that matters is events per CPU-second of the receiving process
(receive + validate + aggregate + bulk body), which is what one core can
do; wall-clock rates are shown too but depend on the sender and on whatever
else the machine runs.

Start events: the same invocations again, each announced by a start frame
first (what the shipper sends by default), at the last (saturating) rate:
invocations per CPU-second with and without start events, in the same run.

    python bench/worker_throughput.py [--quick] [--frames N] [--rates R1,R2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orjson
from _worker_frames import PacedSender, big_udp_socket, vm_hwm_mb

EVENTS_PER_FRAME = 4
GOAL = 100_000


def baseline(frames: int, rate: float) -> tuple[int, float, float]:
    """Bare loop: recv + orjson.loads. Returns (frames, cpu seconds, wall seconds)."""
    sock = big_udp_socket()
    sender = PacedSender(sock.getsockname(), frames, rate)
    sock.settimeout(2.0)
    recv = sock.recv
    loads = orjson.loads
    got = 0
    sender.go()
    data = recv(65536)
    c0, w0 = time.process_time(), time.perf_counter()
    loads(data)
    got = 1
    c1, w1 = c0, w0
    try:
        while got < frames:
            loads(recv(65536))
            got += 1
            if got % 256 == 0:
                c1, w1 = time.process_time(), time.perf_counter()
    except TimeoutError:
        pass  # datagrams lost on the way: count what arrived
    else:
        c1, w1 = time.process_time(), time.perf_counter()
    sender.result()
    sock.close()
    return got, c1 - c0, w1 - w0


async def worker_run(
    frames: int, rate: float, es_url: str = "", kind: str = "full"
) -> tuple[int, float, float, int, float]:
    """The full worker with the null sink (building bulk bodies), or the real ES sink.

    Returns (frames processed, cpu s, wall s, docs, kernel+queue drops). With
    Elasticsearch the clock stops when every document is indexed.
    """
    from faaslens.ingest.config import IngestConfig
    from faaslens.ingest.runner import Worker, configure_logging, tune_process
    from faaslens.ingest.sink_null import NullSink

    tune_process()  # as `faaslens ingest` runs
    configure_logging("warning")

    cfg = IngestConfig(
        udp_listen="127.0.0.1:0",
        tcp_listen="",
        http_listen="127.0.0.1:0",
        udp_rcvbuf=32 << 20,
        queue_max=max(frames, 10_000),
        queue_max_bytes=max(frames, 10_000) * 2048,  # measure cost, not the queue bound
        batch_max_wait_s=0.2,
        shutdown_timeout_s=60,
        # Starts still pending at the end (their record lost above capacity) are saved
        # on stop: into a file of this run, not the current directory.
        pending_state_path=os.path.join(
            tempfile.gettempdir(), f"faaslens-bench-{os.getpid()}-pending.json"
        ),
    )
    sink = NullSink(cfg.es_index_prefix, build_body=True)
    worker = Worker(cfg, sink=sink)
    if es_url:
        import dataclasses

        tmp = tempfile.mkdtemp(prefix="faaslens-bench-")
        cfg = dataclasses.replace(
            cfg,
            es_url=es_url,
            es_index_prefix="bench" + os.urandom(4).hex(),
            spool_dir=os.path.join(tmp, "spool"),
            dead_letter_path=os.path.join(tmp, "dead-letter.ndjson"),
        )
        worker = Worker(cfg)
    await worker.start()
    assert worker.udp_address is not None and worker.pipeline is not None
    pipe = worker.pipeline
    sender = PacedSender(worker.udp_address, frames, rate, kind=kind)
    sender.go()
    loop = asyncio.get_running_loop()
    while pipe.frames_processed == 0 and pipe.depth == 0:
        await asyncio.sleep(0.001)
    c0, w0 = time.process_time(), time.perf_counter()
    _sent, _, _ = await loop.run_in_executor(None, sender.result)
    m = worker.metrics
    received = int(m.datagrams._value.get())

    def done() -> bool:
        dropped = m.drop_reasons["queue_full"]._value.get()
        return pipe.frames_processed + dropped >= received and pipe.depth == 0

    while not done():
        await asyncio.sleep(0.002)
    kernel = worker.udp.kernel_drops() if worker.udp else 0
    if kind == "starts" and not kernel:
        # Every start was settled by its record: none left pending, none unfinished.
        assert len(worker.settler.pending) == 0 and worker.settler.unfinished == 0
    if es_url:
        await worker.stop()  # flushes the last batches into Elasticsearch
    c1, w1 = time.process_time(), time.perf_counter()
    await worker.stop()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(cfg.pending_state_path)
    queue_full = int(m.drop_reasons["queue_full"]._value.get())
    docs = sink.count
    if es_url:
        from devkit.services import delete_es_prefix, es_request

        prefix = cfg.es_index_prefix
        es_request(es_url, "POST", f"/{prefix}-*/_refresh")
        docs = int(es_request(es_url, "GET", f"/{prefix}-*/_count")["count"])
        delete_es_prefix(es_url, prefix)
        import shutil

        shutil.rmtree(os.path.dirname(cfg.spool_dir), ignore_errors=True)
    return pipe.frames_processed, c1 - c0, w1 - w0, docs, (kernel or 0) + queue_full


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument(
        "--rates",
        default="20000,40000",
        help="sender frames/s, comma-separated: one run each (the last should saturate)",
    )
    ap.add_argument("--es", default="", help="also run into this Elasticsearch (wall-clock)")
    args = ap.parse_args()
    frames = args.frames or (20_000 if args.quick else 100_000)
    rates = [float(r) for r in args.rates.split(",")]
    runner: Callable[..., Any]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run

    b_frames, b_cpu, _ = baseline(frames, rates[0])
    b_eps = b_frames * EVENTS_PER_FRAME / b_cpu
    print(f"frames per run {frames} (~1.4 KB, {EVENTS_PER_FRAME} events each)")
    print(
        f"baseline recv+orjson.loads at {rates[0]:,.0f} frames/s: {b_frames} frames, "
        f"cpu {b_cpu:.2f}s, {b_eps:,.0f} events/cpu-s ({1e6 / b_eps:.2f} us/event)"
    )
    best = 0.0
    for rate in rates:
        w_frames, w_cpu, w_wall, docs, drops = runner(worker_run(frames, rate))
        w_eps = w_frames * EVENTS_PER_FRAME / w_cpu
        best = max(best, w_eps)
        print(
            f"worker (null sink, bulk body) offered {rate * EVENTS_PER_FRAME:,.0f} events/s: "
            f"{w_frames} frames, {docs} docs, cpu {w_cpu:.2f}s = {w_eps:,.0f} events/cpu-s "
            f"({1e6 / w_eps:.2f} us/event, {b_eps / w_eps:.1f}x the floor), "
            f"{w_frames * EVENTS_PER_FRAME / w_wall:,.0f} events/s wall, "
            f"not received (offered above capacity) {drops}"
        )
    print(
        "  (below capacity every datagram costs a thread wake-up; at saturation the receive"
        " thread and the loop work in chunks: that run is the cost of an event on one core)"
    )
    print(f"goal >= {GOAL:,} events/s on one core: {'MET' if best >= GOAL else 'NOT MET'}")
    # Start events: the same invocations, with and without their start frames, same rate.
    rate = rates[-1]
    per_inv: dict[str, float] = {}
    for kind, frames_per_inv in (("full", 1), ("starts", 2)):
        n = frames * frames_per_inv
        got, cpu, _, _, drops = runner(worker_run(n, rate * frames_per_inv, kind=kind))
        per_inv[kind] = got / frames_per_inv / cpu
        print(
            f"invocations {'with' if kind == 'starts' else 'without'} start events: "
            f"{got // frames_per_inv} in cpu {cpu:.2f}s = {per_inv[kind]:,.0f} invocations/cpu-s, "
            f"not received {drops}"
        )
    print(
        f"start events: throughput {per_inv['starts'] / per_inv['full']:.2f}x of the same "
        f"invocations without them (one more frame each)"
    )
    print(f"peak RSS (VmHWM) of this process: {vm_hwm_mb():.0f} MB")
    if args.es:
        e_frames, e_cpu, e_wall, e_docs, e_drops = runner(worker_run(frames, rates[0], args.es))
        print(
            f"worker into Elasticsearch {args.es}: {e_frames} frames, {e_docs} docs indexed in "
            f"{e_wall:.1f}s = {e_frames * EVENTS_PER_FRAME / e_wall:,.0f} events/s wall "
            f"(ES on the same machine), worker cpu {e_cpu:.1f}s, dropped {e_drops}"
        )
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    sys.exit(main())
