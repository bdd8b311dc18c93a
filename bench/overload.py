"""Overload: more events per second than Elasticsearch indexes, through the whole
worker. Batches the writers cannot take overflow to the disk spool and are replayed
once the input stops; the figure is how many events are lost (goal 0) and the
worker's peak RSS.

A sender process paces frames of 4 events (an invocation and three log lines) at
``--rate`` events/s for ``--seconds``; the worker runs in this process with the
real Elasticsearch sink. At the end every document built must be in Elasticsearch.

    python bench/overload.py [--rate 50000] [--seconds 15] [--es-url http://127.0.0.1:9200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _es_worker import start_es_worker
from _worker_frames import PacedSender, vm_hwm_mb

EVENTS_PER_FRAME = 4


async def run(args: argparse.Namespace) -> int:
    from devkit.services import es_request
    from faaslens.ingest.selfmetrics import totals

    ew = await start_es_worker(args.es_url, "ovl", shutdown_timeout_s=600)
    worker, prefix, total = ew.worker, ew.prefix, ew.total
    assert worker.udp_address is not None and worker.pipeline is not None
    frames = int(args.rate * args.seconds / EVENTS_PER_FRAME)
    sender = PacedSender(worker.udp_address, frames, args.rate / EVENTS_PER_FRAME)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    sender.go()
    sent, _, took = await loop.run_in_executor(None, sender.result)
    reg = worker.registry

    def count() -> int:
        es_request(args.es_url, "POST", f"/{prefix}-*/_refresh")
        return int(es_request(args.es_url, "GET", f"/{prefix}-*/_count")["count"])

    spool_peak = 0.0
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline:
        spool_peak = max(spool_peak, total("faaslens_spool_bytes"))
        built = total("faaslens_docs_built_total")
        processed = worker.pipeline.frames_processed + total("faaslens_frames_dropped_total")
        if processed >= total("faaslens_datagrams_received_total") and not len(
            worker.pipeline.batcher
        ):
            sink: Any = worker.sink
            if sink.spool.is_empty() and count() >= built:
                break
        await asyncio.sleep(1.0)
    drained = time.perf_counter() - started
    kernel = worker.udp.kernel_drops() if worker.udp else None
    await worker.stop()
    t = totals(reg)
    indexed = count()
    received = int(total("faaslens_datagrams_received_total"))
    lost_frames = (sent - received) + t["frames_dropped"]
    print(
        f"offered {args.rate:,.0f} events/s for {args.seconds:.0f} s: sent {sent:,} frames "
        f"({sent * EVENTS_PER_FRAME:,} events) in {took:.1f} s"
    )
    print(
        f"received {received:,} (kernel drops {kernel}), frames dropped {t['frames_dropped']}, "
        f"batches spilled to the spool {int(total('faaslens_batches_spilled_total')):,}, "
        f"spool peak {spool_peak / 1e6:,.0f} MB"
    )
    print(
        f"documents built {t['docs_built']:,}, in Elasticsearch {indexed:,} "
        f"(spooled {t['docs_spooled']:,}, replayed {t['docs_replayed']:,}, dead-lettered "
        f"{t['docs_dead_lettered']}, failed {t['docs_failed']}), all in after {drained:.0f} s "
        f"({indexed / drained:,.0f} docs/s overall)"
    )
    docs_lost = t["docs_built"] - indexed
    print(f"events lost: {lost_frames * EVENTS_PER_FRAME:,}; documents lost: {docs_lost:,}")
    print(f"peak RSS (VmHWM) of the worker process: {vm_hwm_mb():.0f} MB")
    ew.remove()
    ok = lost_frames == 0 and indexed == t["docs_built"]
    print("RESULT:", "OK (0 lost)" if ok else "LOSS")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=50_000, help="events per second offered")
    ap.add_argument("--quick", action="store_true", help="a 5 s run")
    ap.add_argument("--seconds", type=float, default=0.0, help="seconds of input (15)")
    ap.add_argument("--drain-timeout", type=float, default=900.0)
    ap.add_argument("--es-url", default=os.environ.get("ES_URL", "http://127.0.0.1:9200"))
    args = ap.parse_args()
    args.seconds = args.seconds or (5.0 if args.quick else 15.0)
    try:
        import uvloop

        return int(uvloop.run(run(args)))
    except ImportError:
        return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
