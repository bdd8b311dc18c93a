"""UDP loss into the full worker at a paced rate, while /metrics is scraped.

Starts ``faaslens ingest`` (null sink) as its own process, fills its registry
with ~10,000 series, then a sender process paces datagrams at ``--rate``
for ``--seconds`` while this process scrapes ``/metrics`` every
``--scrape-interval`` seconds (0: back to back). Reports sent / received /
lost from the sender's count and the worker's own counters (kernel drops
from /proc/net/udp, queue drops, sequence gaps), the scrape times, and the
worker's peak RSS (VmHWM). The baseline in the same run is the same load
without scraping.

    python bench/udp_loss.py [--quick] [--rate 50000] [--seconds 30] [--kind small|full]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import orjson  # noqa: E402
from _worker_frames import PacedSender, frame, templates, vm_hwm_mb  # noqa: E402

SERIES_PER_FUNCTION = 39  # core metrics incl. 2 histograms + one custom counter


class WorkerProcess:
    """``faaslens ingest`` with the null sink on free ports."""

    def __init__(self, rcvbuf: int) -> None:
        env = {
            **os.environ,
            "FAASLENS_UDP_LISTEN": "127.0.0.1:0",
            "FAASLENS_TCP_LISTEN": "",
            "FAASLENS_HTTP_LISTEN": "127.0.0.1:0",
            "FAASLENS_SINK": "null",
            "FAASLENS_UDP_RCVBUF": str(rcvbuf),
            "FAASLENS_SERIES_CAP": "100000",
            "FAASLENS_LOG_LEVEL": "warning",
        }
        env["FAASLENS_LOG_LEVEL"] = "info"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faaslens.cli", "ingest"],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        assert self.proc.stderr is not None
        self.log: list[dict[str, Any]] = []
        for raw in self.proc.stderr:
            line = orjson.loads(raw)
            self.log.append(line)
            if line.get("event") == "worker started":
                self.udp = (line["udp"][0], line["udp"][1])
                self.http = f"http://{line['http'][0]}:{line['http'][1]}/metrics"
                break
        else:
            raise RuntimeError(f"worker did not start: {self.log}")
        self.rcvbuf = next(x["rcvbuf"] for x in self.log if x.get("event") == "udp listening")
        threading.Thread(target=self._drain_log, daemon=True).start()

    def _drain_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            try:
                self.log.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                self.log.append({"raw": raw.decode(errors="replace")})

    def scrape(self, openmetrics: bool = True) -> tuple[str, float]:
        accept = "application/openmetrics-text;version=1.0.0" if openmetrics else "text/plain"
        req = urllib.request.Request(self.http, headers={"Accept": accept})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
        return text, time.perf_counter() - t0

    def values(self) -> dict[str, float]:
        text, _ = self.scrape(openmetrics=False)
        out = {}
        for line in text.splitlines():
            if line.startswith("faaslens_"):
                name, _, val = line.rpartition(" ")
                out[name] = float(val)
        return out

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def settle(w: WorkerProcess, expect: int, timeout: float = 120) -> dict[str, float]:
    """Wait until the worker has received what it will and drained its queue."""
    deadline = time.monotonic() + timeout
    last = -1.0
    while True:
        v = w.values()
        got = v.get("faaslens_datagrams_received_total", 0)
        if v.get("faaslens_queue_depth", 0) == 0 and (got >= expect or got == last):
            return v
        if time.monotonic() > deadline:
            return v
        last = got
        time.sleep(0.5)


def run_load(
    w: WorkerProcess, rate: float, seconds: float, kind: str, scrape_interval: float | None
) -> dict[str, Any]:
    """One paced run; scraping in this process when scrape_interval is not None."""
    before = w.values()
    count = int(rate * seconds)
    sender = PacedSender(w.udp, count, rate, kind)
    stop = threading.Event()
    scrapes: list[float] = []
    series = [0]
    depth = [0.0]

    def scraper() -> None:
        while not stop.is_set():
            text, took = w.scrape()
            scrapes.append(took)
            lines = [x for x in text.splitlines() if x and not x.startswith("#")]
            series[0] = len(lines)
            for x in lines:
                if x.startswith("faaslens_queue_depth "):
                    depth[0] = max(depth[0], float(x.split()[1]))
            if scrape_interval:
                stop.wait(scrape_interval)

    th = threading.Thread(target=scraper, daemon=True)
    sender.go()
    if scrape_interval is not None:
        th.start()
    sent, errors, took = sender.result()
    stop.set()
    if scrape_interval is not None:
        th.join(60)
    after = settle(w, int(before.get("faaslens_datagrams_received_total", 0)) + sent)

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    received = delta("faaslens_datagrams_received_total")
    queue_full = int(delta('faaslens_frames_dropped_total{reason="queue_full"}'))
    return {
        "sent": sent,
        "send_errors": errors,
        "send_rate": sent / took,
        "received": int(received),
        # never reached the socket, or reached it and was dropped before validation
        "lost": int(sent - received) + queue_full,
        "kernel_drops": int(delta("faaslens_udp_receive_buffer_drops_total")),
        "queue_full": queue_full,
        "seq_lost": int(delta("faaslens_frames_lost_total") - delta("faaslens_frames_late_total")),
        "rejected": int(
            sum(v for k, v in after.items() if k.startswith("faaslens_frames_rejected"))
            - sum(v for k, v in before.items() if k.startswith("faaslens_frames_rejected"))
        ),
        "scrapes": len(scrapes),
        "scrape_ms_avg": 1000 * sum(scrapes) / len(scrapes) if scrapes else 0.0,
        "scrape_ms_max": 1000 * max(scrapes) if scrapes else 0.0,
        "series": series[0],
        "max_queue_depth": int(depth[0]),
    }


def prime_series(w: WorkerProcess, target: int) -> int:
    """Send one invocation for each of enough functions to make ~``target`` series."""
    functions = target // SERIES_PER_FUNCTION + 1
    tpl = templates(functions, src="prime", functions=functions)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for seq in range(1, functions + 1):
            s.sendto(frame(tpl, seq), w.udp)
            if seq % 200 == 0:
                time.sleep(0.01)  # pacing the priming burst, not waiting on anything
    settle(w, functions)
    text, _ = w.scrape()
    return sum(1 for x in text.splitlines() if x and not x.startswith("#"))


def show(title: str, r: dict[str, Any]) -> None:
    print(
        f"{title}: sent {r['sent']:,} ({r['send_rate']:,.0f}/s), received {r['received']:,}, "
        f"lost {r['lost']:,} (kernel drops {r['kernel_drops']:,}, queue_full "
        f"{r['queue_full']:,}, from sequence gaps {r['seq_lost']:,}), rejected {r['rejected']}"
    )
    if r["scrapes"]:
        print(
            f"    scrapes {r['scrapes']} of {r['series']:,} series: "
            f"avg {r['scrape_ms_avg']:.0f} ms, max {r['scrape_ms_max']:.0f} ms"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="5 s runs")
    ap.add_argument("--rate", type=float, default=50_000)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument(
        "--kind",
        choices=("small", "full"),
        default="small",
        help="small: 1 log line per datagram (~520 B); full: inv + 3 logs (~1.45 KB)",
    )
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--scrape-interval", type=float, default=1.0, help="0 = back to back")
    ap.add_argument(
        "--rcvbuf", type=int, default=32 << 20, help="udp_rcvbuf for the worker (its default)"
    )
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 30.0)

    w = WorkerProcess(args.rcvbuf)
    try:
        series = prime_series(w, args.series)
        print(f"worker pid {w.proc.pid}, SO_RCVBUF {w.rcvbuf:,} B, {series:,} series on /metrics")
        print(f"load: {args.rate:,.0f} datagrams/s for {seconds:.0f} s, {args.kind} frames")
        if not args.no_baseline:
            show("baseline (no scraping)", run_load(w, args.rate, seconds, args.kind, None))
        r = run_load(w, args.rate, seconds, args.kind, args.scrape_interval)
        show(f"with /metrics scraped every {args.scrape_interval:g} s", r)
        hwm = vm_hwm_mb(w.proc.pid)
        print(f"worker peak RSS (VmHWM): {hwm:.0f} MB (goal < 200 MB)")
        print(f"goal 0 loss while scraping: {'MET' if r['lost'] == 0 else 'NOT MET'}")
    finally:
        code = w.stop()
        errors = [x for x in w.log if x.get("level") in ("error", "critical")]
        if code != 0 or errors:
            print(f"worker exit code {code}, errors: {errors[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
