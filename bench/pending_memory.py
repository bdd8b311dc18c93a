#!/usr/bin/env python3
"""Worker memory per pending (started, not yet settled) invocation, and the cost of settling.

Start frames as the shipper sends them (bench/_worker_frames.py: an AWS
resource block, a start event with timeout, cold start flag, trigger and
trace id) go through the worker's validator and into the settle table
(ingest/pending.py via ingest/settle.py), as in the pipeline. Memory is what
tracemalloc sees allocated by the table and the start dicts it keeps (the
resource block is shared per sender), per pending invocation; the frames
themselves are freed. Also timed, per invocation: tracking a start, settling
it by its record, and settling it as unfinished (building its document).

    python bench/pending_memory.py [--quick] [--pending N]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _worker_frames import frames_with_starts


def main() -> int:
    from faaslens.ingest.pending import Pending
    from faaslens.ingest.settle import Settler
    from faaslens.ingest.validate import Validator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--pending", type=int, default=None, help="invocations held pending")
    args = ap.parse_args()
    n = args.pending or (20_000 if args.quick else 100_000)
    frames = frames_with_starts(2 * n, "bench-pending")
    starts, records = frames[0::2], frames[1::2]
    del frames
    validator = Validator()

    def settler() -> Settler:
        return Settler(
            Pending(cap=n, grace_s=10.0, default_timeout_s=900.0),
            lambda res, start, now: None,
            lambda res, doc, now: None,
        )

    # Memory: validate each start frame and track it, as the pipeline does; what
    # remains allocated afterwards is the table and the start dicts it keeps.
    traced = settler()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for f in starts:
        traced.started(validator.validate(f).starts, 0.0)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(traced.pending) == n
    del traced

    # Time, untraced: tracking, settling by record, settling as unfinished.
    timed = settler()
    results = [validator.validate(f) for f in starts]
    t0 = time.perf_counter()
    for r in results:
        timed.started(r.starts, 0.0)
    t_start = time.perf_counter() - t0
    half = n // 2
    recs = [validator.validate(f) for f in records[:half]]
    t0 = time.perf_counter()
    for r in recs:
        timed.finished(r.invocations, r.docs)
    t_finish = time.perf_counter() - t0
    t0 = time.perf_counter()
    docs = timed.settle_due(1e9)
    t_unfinished = time.perf_counter() - t0
    assert len(docs) == n - half and len(timed.pending) == 0

    print(f"pending invocations: {n:,} (start events of an AWS function, validated as received)")
    print(f"memory held by the settle table: {held / 1e6:.1f} MB = {held / n:,.0f} bytes each")
    print(
        f"per invocation: track a start {t_start / n * 1e6:.2f} us, "
        f"settle by its record {t_finish / half * 1e6:.2f} us, "
        f"settle as unfinished (document built) {t_unfinished / (n - half) * 1e6:.2f} us"
    )
    print(f"at the default cap (pending_max 100,000): ~{held / n * 100_000 / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
