"""Line listener: aggregator lines per CPU-second against the worker's own frames per
CPU-second, in the same run.

Three runs of the worker (null sink), each fed by a sender in another process
over real loopback sockets:

* frames: the worker's own protocol, UDP, the frames of ``worker_throughput.py``
  (an invocation record + 3 log lines each), sent faster than one core takes;
* lines over UDP: one line per datagram, as the older library sends them;
* lines over TCP: the same lines on one connection, LF-separated.

The lines are what one invocation of the older library sends: four text lines
(invocations, execution time, finished, GB-seconds) and, every fifth, a JSON
custom counter. The figure is lines per CPU-second of the worker's process
(what one core does) and its ratio to frames per CPU-second.

    python bench/lines_throughput.py [--quick] [--lines N] [--rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from worker_throughput import EVENTS_PER_FRAME, worker_run

DECLARATIONS = (
    Path(__file__).resolve().parent.parent / "docs" / "examples" / "seed-declaration.json"
)
SEED = '{function_name="HelloWorld",function_app="seed-app",environment="azure-cloud"}'


def seed_lines(count: int) -> list[bytes]:
    """``count`` lines as the older library sends them, for 50 functions."""
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        labels = SEED.replace("HelloWorld", f"fn{i % 50}")
        out += [
            f"function_invocations_total{labels} 1".encode(),
            f"function_execution_time_total{labels} {5 + i % 17}.5".encode(),
            f"function_finished_total{labels} 1".encode(),
            f"function_gigabyte_seconds_total{labels} 0.00208".encode(),
        ]
        if i % 5 == 0:
            out.append(
                b'{"name":"hello_world_metric","type":"counter","help":"custom metric",'
                b'"labels":{"function_name":"fn%d"},"value":1}' % (i % 50)
            )
        i += 1
    return out[:count]


def _send_lines(  # noqa: PLR0917  (a process target: positional by nature)
    addr: tuple[str, int], count: int, rate: float, transport: str, ready: Any, go: Any, done: Any
) -> None:
    lines = seed_lines(count)
    if transport == "tcp":
        sock = socket.create_connection(addr)
        chunks = [
            b"".join(line + b"\n" for line in lines[i : i + 2000]) for i in range(0, count, 2000)
        ]
        ready.set()
        go.wait()
        for chunk in chunks:
            sock.sendall(chunk)  # the worker's reading paces this
        sock.close()
        done.put(count)
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(addr)
    payloads = [line + b"\n" for line in lines]
    ready.set()
    go.wait()
    start = time.perf_counter()
    burst = max(1, int(rate / 2000))
    sent = 0
    while sent < count:
        for p in payloads[sent : sent + burst]:
            with contextlib.suppress(OSError):  # a refused send is a line not received
                sock.send(p)
        sent = min(count, sent + burst)
        ahead = start + sent / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    done.put(sent)


async def lines_run(count: int, rate: float, transport: str) -> tuple[int, float, float]:
    """The worker with only the line listener; returns (lines taken, cpu s, wall s)."""
    from faaslens.ingest.config import IngestConfig
    from faaslens.ingest.runner import Worker, configure_logging, tune_process

    tune_process()
    configure_logging("warning")
    cfg = IngestConfig(
        udp_listen="",
        tcp_listen="",
        http_listen="",
        lines_listen="127.0.0.1:0",
        lines_declarations=str(DECLARATIONS),
        sink="null",
        udp_rcvbuf=32 << 20,
    )
    worker = Worker(cfg)
    await worker.start()
    assert worker.lines is not None and worker.lines.address is not None
    received = worker.lines._received[transport]  # the listener's own count
    ctx = multiprocessing.get_context("spawn")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_send_lines,
        args=(worker.lines.address, count, rate, transport, ready, go, done),
        daemon=True,
    )
    proc.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ready.wait, 120)
    go.set()
    while received._value.get() == 0:
        await asyncio.sleep(0.001)
    c0, w0 = time.process_time(), time.perf_counter()
    sent = await loop.run_in_executor(None, done.get, True, 600)
    # UDP may lose datagrams: stop at the last progress once the sender is done.
    last, c1, w1 = -1.0, c0, w0
    while True:
        got = received._value.get()
        if got >= sent:
            c1, w1 = time.process_time(), time.perf_counter()
            break
        if got == last:
            break
        last, c1, w1 = got, time.process_time(), time.perf_counter()
        await asyncio.sleep(0.2)
    taken = int(received._value.get())
    await worker.stop()
    proc.join(10)
    return taken, c1 - c0, w1 - w0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--lines", type=int, default=None, help="lines per run")
    ap.add_argument("--rate", type=float, default=60_000, help="UDP sender rate (per second)")
    args = ap.parse_args()
    count = args.lines or (50_000 if args.quick else 300_000)
    runner: Callable[..., Any]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    frames = max(20_000, count // 5)
    f_frames, f_cpu, _, _, _ = runner(worker_run(frames, 40_000))
    fps = f_frames / f_cpu
    print(
        f"worker frames (UDP, {EVENTS_PER_FRAME} events each): {f_frames} in cpu {f_cpu:.2f}s "
        f"= {fps:,.0f} frames/cpu-s ({fps * EVENTS_PER_FRAME:,.0f} events/cpu-s)"
    )
    for transport in ("udp", "tcp"):
        taken, cpu, wall = runner(lines_run(count, args.rate, transport))
        lps = taken / cpu
        print(
            f"lines over {transport}: {taken}/{count} taken, cpu {cpu:.2f}s = {lps:,.0f} "
            f"lines/cpu-s ({1e6 / lps:.2f} us/line; {lps / fps:.1f}x the frames/cpu-s, "
            f"{lps / (fps * EVENTS_PER_FRAME):.2f}x the events/cpu-s), {taken / wall:,.0f}/s wall"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
