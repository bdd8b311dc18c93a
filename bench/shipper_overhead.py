#!/usr/bin/env python3
"""Per-invocation cost of the shipper, against baselines measured in the same run.

One "invocation" = a Lambda-shaped handler call that logs 3 lines with a
key-value each and updates 1 custom metric. Variants, interleaved per round:

* floor:      orjson.dumps of an equivalent payload + one send on a connected UDP socket
* floor-2:    the same plus a start event dumped and sent first: two sends, as the
              shipper makes with start events on
* shipper:    @shipper.instrument handler (3 x log.info + counter.inc): a start event, then
              one record sent over UDP to a receiver process (loopback: 60,000-byte
              packing, one frame each); the default settings
* shipper-nostart: the same with FAASLENS_START_EVENTS=false (one send)
* shipper-1400: the same with FAASLENS_MAX_DATAGRAM=1400 (a remote collector's default),
              where a record of ~1.4 kB may take two frames
* powertools: aws-lambda-powertools Logger (inject_lambda_context, 3 x info) +
              Metrics (1 add_metric, flushed as EMF) writing to a null stream
* structlog:  structlog JSON (level + ISO timestamp + orjson renderer) to a null
              stream, 3 lines (logging only: no record, no metric, no send)
* bare:       the handler without instrumentation (the loop's own cost)

Also, for long invocations: what one periodic flush costs (3 pending lines of a
running invocation sent in one frame by the flusher), against the floor's send.

Goals (on medians): shipper <= powertools / 4 and shipper <= 3 x floor-2;
shipper-nostart <= 3 x floor.
Figures are printed as medians and as the best round (less disturbed by neighbours).

    python bench/shipper_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

# The receiver polls without blocking: a receiver asleep in recv() makes every send pay
# for waking it up (~6 us here), a cost that depends on the sending rate, not on the
# sender, and that a remote collector never charges. Polling keeps all variants equal.
_DRAIN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("127.0.0.1", 0))
s.setblocking(False)
print(s.getsockname()[1], flush=True)
recv = s.recv
while True:
    try:
        recv(65535)
    except BlockingIOError:
        pass
"""


class NullStream(io.TextIOBase):
    """A text stream that discards everything (cheaper than /dev/null: no syscall)."""

    def write(self, s: str) -> int:
        return len(s)


class NullBytes:
    """A binary sink for structlog's BytesLogger."""

    def write(self, b: bytes) -> int:
        return len(b)

    def flush(self) -> None:
        pass


class LambdaContext:
    """The attributes of AWS's LambdaContext that both libraries read."""

    function_name = "checkout"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:checkout"
    log_group_name = "/aws/lambda/checkout"
    log_stream_name = "2026/11/25/[$LATEST]abcdef"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


EVENT = {"requestContext": {"http": {"method": "POST"}}, "headers": {}, "body": "{}"}


def start_receiver() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", _DRAIN], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


def make_floor(port: int, start: bool = False) -> Callable[[Any, Any], Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", port))
    dumps = orjson.dumps

    def floor(event: Any, context: Any) -> Any:
        now = time.time_ns() // 1_000_000
        rid = context.aws_request_id
        if start:
            begin = {
                "v": 1,
                "src": "0123456789abcdef",
                "seq": 1,
                "ev": [
                    {
                        "t": "start",
                        "faas.execution": rid,
                        "@timestamp": now,
                        "faas.coldstart": False,
                        "faas.timeout": context.get_remaining_time_in_millis() * 1_000_000,
                    }
                ],
            }
            with contextlib.suppress(OSError):
                sock.send(dumps(begin))
        payload = {
            "v": 1,
            "src": "0123456789abcdef",
            "seq": 1,
            "ev": [
                {
                    "t": "inv",
                    "faas.execution": rid,
                    "@timestamp": now,
                    "event.duration": 1000,
                    "event.outcome": "success",
                    "faas.coldstart": False,
                    "metrics": [{"name": "orders", "kind": "counter", "value": 1}],
                },
                *(
                    {
                        "t": "log",
                        "@timestamp": now,
                        "event.sequence": i,
                        "log.level": "info",
                        "message": "step",
                        "faas.execution": rid,
                        "labels": {"step": i},
                    }
                    for i in range(3)
                ),
            ],
        }
        with contextlib.suppress(OSError):
            sock.send(dumps(payload))
        return 1

    return floor


def make_shipper(port: int, **settings: Any) -> tuple[Callable[[Any, Any], Any], Any]:
    from faaslens.shipper.config import ShipperConfig
    from faaslens.shipper.core import Shipper
    from faaslens.shipper.logs import Logger
    from faaslens.shipper.metrics import Counter

    sh = Shipper(
        ShipperConfig(endpoint=f"udp://127.0.0.1:{port}", service="checkout", **settings),
        environ={
            "AWS_LAMBDA_FUNCTION_NAME": "checkout",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": "eu-west-1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/25/[$LATEST]0123456789abcdef0123456789abcdef",
        },
    )
    log = Logger("bench", shipper=sh)
    orders = Counter("orders", shipper=sh)

    @sh.instrument
    def handler(event: Any, context: Any) -> Any:
        log.info("step", step=0)
        log.info("step", step=1)
        log.info("step", step=2)
        orders.inc()
        return 1

    return handler, sh


def make_powertools() -> Callable[[Any, Any], Any]:
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    logger = Logger(service="checkout", stream=NullStream())  # type: ignore[arg-type]
    metrics = Metrics(namespace="bench", service="checkout")

    @metrics.log_metrics
    @logger.inject_lambda_context
    def handler(event: Any, context: Any) -> Any:
        logger.info("step", step=0)
        logger.info("step", step=1)
        logger.info("step", step=2)
        metrics.add_metric(name="orders", unit=MetricUnit.Count, value=1)
        return 1

    return handler


def make_structlog() -> Callable[[Any, Any], Any]:
    import structlog

    log = structlog.wrap_logger(
        structlog.BytesLogger(NullBytes()),  # type: ignore[arg-type]
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(20),
    )

    def handler(event: Any, context: Any) -> Any:
        log.info("step", step=0)
        log.info("step", step=1)
        log.info("step", step=2)
        return 1

    return handler


def bare(event: Any, context: Any) -> Any:
    return 1


def flush_cost(port: int, calls: int) -> float:
    """ns per periodic flush of 3 lines logged by a running invocation (one frame)."""
    _, sh = make_shipper(port)
    from faaslens.shipper.logs import Logger

    log = Logger("bench", shipper=sh)
    later = time.perf_counter_ns() + 3_600 * 10**9  # every invocation counts as long
    total = 0
    with sh.invocation(LambdaContext("long-running")):
        for _ in range(calls):
            log.info("step", step=0)
            log.info("step", step=1)
            log.info("step", step=2)
            t0 = time.perf_counter_ns()
            sh._flush_running(later)
            total += time.perf_counter_ns() - t0
    sh.close()
    return total / calls


def run_round(fn: Callable[[Any, Any], Any], contexts: list[Any]) -> float:
    """Mean ns per call over the contexts."""
    t0 = time.perf_counter_ns()
    for ctx in contexts:
        fn(EVENT, ctx)
    return (time.perf_counter_ns() - t0) / len(contexts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    args = parser.parse_args(argv)
    calls, rounds = (2_000, 5) if args.quick else (20_000, 11)
    proc, port = start_receiver()
    try:
        handler, sh = make_shipper(port)
        handler_nostart, _ = make_shipper(port, start_events=False)
        handler_1400, _ = make_shipper(port, max_datagram=1400)
        variants: dict[str, Callable[[Any, Any], Any]] = {
            "bare": bare,
            "floor": make_floor(port),
            "floor-2": make_floor(port, start=True),
            "shipper": handler,
            "shipper-nostart": handler_nostart,
            "shipper-1400": handler_1400,
            "powertools": make_powertools(),
            "structlog": make_structlog(),
        }
        contexts = [
            LambdaContext(f"{i:08x}-0000-4000-8000-{os.urandom(6).hex()}") for i in range(calls)
        ]
        results: dict[str, list[float]] = {name: [] for name in variants}
        with contextlib.redirect_stdout(NullStream()):  # Powertools prints EMF to stdout
            for fn in variants.values():  # warm-up (cold start, imports, caches)
                run_round(fn, contexts[:200])
            for _ in range(rounds):
                for name, fn in variants.items():
                    results[name].append(run_round(fn, contexts))
        med = {name: statistics.median(v) for name, v in results.items()}
        best = {name: min(v) for name, v in results.items()}
        print(f"shipper per-invocation cost: {calls} calls x {rounds} rounds, ns/invocation")
        print(f"{'variant':<16}{'median':>10}{'net':>10}{'best':>10}{'net':>10}")
        for name in variants:
            print(
                f"{name:<16}{med[name]:>10.0f}{med[name] - med['bare']:>10.0f}"
                f"{best[name]:>10.0f}{best[name] - best['bare']:>10.0f}"
            )
        print()
        for label, fig in (("median", med), ("best", best)):
            ours = fig["shipper"] - fig["bare"]
            one = fig["shipper-nostart"] - fig["bare"]
            floor = fig["floor"] - fig["bare"]
            floor2 = fig["floor-2"] - fig["bare"]
            pt = fig["powertools"] - fig["bare"]
            sl = fig["structlog"] - fig["bare"]
            small = fig["shipper-1400"] - fig["bare"]
            print(
                f"[{label}] shipper/floor-2 = {ours / floor2:4.2f} (goal <= 3.00)   "
                f"shipper/powertools = {ours / pt:4.2f} (goal <= 0.25)   "
                f"shipper-nostart/floor = {one / floor:4.2f} (goal <= 3.00)   "
                f"start event costs {ours - one:.0f} ns   "
                f"shipper/structlog = {ours / sl:4.2f}   "
                f"shipper-1400/floor-2 = {small / floor2:4.2f}"
            )
        ours = med["shipper"] - med["bare"]
        one = med["shipper-nostart"] - med["bare"]
        floor = med["floor"] - med["bare"]
        floor2 = med["floor-2"] - med["bare"]
        pt = med["powertools"] - med["bare"]
        st = sh.snapshot()
        print(
            f"shipper frames sent {st['frames_sent']}, send errors {st['send_errors']}, "
            f"internal errors {st['internal_errors']}"
        )
        ok = ours <= 3 * floor2 and ours <= pt / 4 and one <= 3 * floor
        flush = statistics.median(flush_cost(port, calls) for _ in range(3))
        print(
            f"periodic flush of a long invocation's lines (3 lines, one frame): {flush:.0f} ns "
            f"= {flush / floor:.2f} x the floor's send (short invocations never pay it)"
        )
        print("GOALS MET" if ok else "GOALS NOT MET")
        return 0
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
