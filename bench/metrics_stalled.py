"""Worker memory and scrape latency while /metrics clients stop reading.

Starts ``faaslens ingest`` (null sink), fills its registry with ``--series``
series, then opens ``--clients`` connections that each send ``--requests``
pipelined ``GET /metrics`` (OpenMetrics) and never read. Meanwhile this process
scrapes once a second for ``--seconds``. Reports the worker's RSS before, its
peak (VmHWM) and after, as multiples of one rendered body, and the other
scrapes' latency against the same scrapes with no stalled client (the baseline
in the same run). Before the aiohttp server, 20 stalled clients at 20k series
took the worker from 48 MB to 257 MB, and kept it there.

    python bench/metrics_stalled.py [--quick] [--series 20000] [--clients 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from udp_loss import WorkerProcess, prime_series

OPENMETRICS = b"application/openmetrics-text;version=1.0.0"


def status_mb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def scrapes(w: WorkerProcess, seconds: float) -> list[float]:
    """Scrape once a second for ``seconds``; the latency of each, in seconds."""
    took = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        took.append(w.scrape()[1])
        time.sleep(1.0)  # pacing the scrapes, not waiting on anything
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="5 s, 5,000 series")
    ap.add_argument("--series", type=int, default=None)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=20, help="pipelined per client")
    ap.add_argument("--seconds", type=float, default=None, help="default: 14 (> write timeout)")
    args = ap.parse_args()
    series_target = args.series or (5_000 if args.quick else 20_000)
    seconds = args.seconds or (5.0 if args.quick else 14.0)

    w = WorkerProcess(32 << 20)
    try:
        series = prime_series(w, series_target)
        body = len(w.scrape()[0].encode())
        base = scrapes(w, seconds)
        before = status_mb(w.proc.pid, "VmRSS")
        url = urlsplit(w.http)
        assert url.hostname is not None and url.port is not None
        stalled = []
        for _ in range(args.clients):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((url.hostname, url.port))
            stalled.append(s)
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: " + OPENMETRICS + b"\r\n\r\n"
        for s in stalled:
            s.sendall(request * args.requests)
        during = scrapes(w, seconds)
        peak = status_mb(w.proc.pid, "VmHWM")
        after = status_mb(w.proc.pid, "VmRSS")
        for s in stalled:
            s.close()
        mb = body / 1e6
        print(
            f"{series:,} series, one OpenMetrics body {mb:.1f} MB; {args.clients} clients x "
            f"{args.requests} pipelined requests that never read"
        )
        print(
            f"worker RSS: before {before:.0f} MB, peak {peak:.0f} MB "
            f"(+{(peak - before) / mb:.1f} bodies), after {after:.0f} MB"
        )
        print(
            f"other scrapes: {len(during)} served, max {1000 * max(during):.0f} ms "
            f"(baseline without stalled clients: max {1000 * max(base):.0f} ms)"
        )
    finally:
        w.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
