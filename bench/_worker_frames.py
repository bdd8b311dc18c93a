"""Shared by the worker benchmarks: realistic frames and a paced UDP sender process.

A frame is what the shipper sends for one invocation: the resource block,
the invocation record and three log lines, about 1,450 bytes. Frames are
built from a pool of templates with the sequence number spliced in, so the
sender spends its time sending, not serialising.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
import uuid
from typing import Any

import orjson

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
TS0 = time.time_ns() // 1_000_000  # now: the worker accepts recent events only


def resource(function: str = "checkout") -> dict[str, Any]:
    """A typical resource block of an AWS Lambda function."""
    return {
        "service.name": function,
        "service.environment": "prod",
        "faas.name": function,
        "faas.version": "42",
        "faas.max_memory": 536_870_912,
        "cloud.provider": "aws",
        "cloud.region": "eu-west-1",
        "cloud.account.id": "123456789012",
        "host.architecture": "arm64",
    }


def invocation_events(i: int, n_logs: int = 3, exec_suffix: str = "") -> list[dict[str, Any]]:
    """One invocation record and its log lines."""
    ex = str(uuid.UUID(int=i + 1))[:24] + exec_suffix
    trace = f"{i + 1:032x}"
    ts = TS0 + i
    failed = i % 50 == 0
    inv: dict[str, Any] = {
        "t": "inv",
        "faas.execution": ex,
        "@timestamp": ts,
        "event.duration": 12_000_000 + (i % 997) * 100_000,
        "event.outcome": "failure" if failed else "success",
        "faas.coldstart": i % 100 == 0,
        "faas.trigger.type": "http",
        "faas.mem_usage": 96_000_000 + (i % 13) * 1_000_000,
        "faas.billed_duration": 13 + i % 97,
        "faas.cost.usd": 0.00000021,
        "faas.cost.gb_seconds": 0.0065,
        "faas.cost.price_id": "aws-arm64-2025-01",
        "trace.id": trace,
        "span.id": f"{i + 1:016x}",
        "metrics": [{"name": "orders", "kind": "counter", "value": 1, "labels": {"shop": "eu"}}],
    }
    if inv["faas.coldstart"]:
        inv["faas.coldstart_duration"] = 250_000_000
    if failed:
        inv["error.type"] = "app.errors.PaymentDeclined"
        inv["error.message"] = "card declined"
        inv["error.grouping_key"] = "3f1c2b9a7d6e5f40"
    logs = [
        {
            "t": "log",
            "@timestamp": ts + k,
            "event.sequence": k,
            "log.level": "info",
            "message": f"order step {k} done",
            "faas.execution": ex,
            "log.logger": "app",
            "trace.id": trace,
            "labels": {"step": k},
        }
        for k in range(n_logs)
    ]
    return [inv, *logs]


SEQ_MARK = "999999999999"


def templates(count: int, src: str = "bench01", functions: int = 1) -> list[list[bytes]]:
    """Frame templates split where the sequence number goes (``seq`` and in the
    invocation id, so every frame's documents have ids of their own)."""
    out = []
    for i in range(count):
        env = {
            "v": 1,
            "src": src,
            "seq": int(SEQ_MARK),
            "res": resource(f"fn{i % functions}"),
            "ev": invocation_events(i, exec_suffix=SEQ_MARK),
        }
        out.append(orjson.dumps(env).split(SEQ_MARK.encode()))
    return out


def frame(tpl: list[list[bytes]], seq: int) -> bytes:
    """The frame with sequence number ``seq`` (1-based)."""
    return str(seq).encode().join(tpl[(seq - 1) % len(tpl)])


def small_templates(count: int, src: str = "bench02") -> list[list[bytes]]:
    """Frames of one log line each (~500 bytes), for datagram-rate tests."""
    out = []
    for i in range(count):
        ev = invocation_events(i, n_logs=1, exec_suffix=SEQ_MARK)[1]
        env = {"v": 1, "src": src, "seq": int(SEQ_MARK), "res": resource(), "ev": [ev]}
        out.append(orjson.dumps(env).split(SEQ_MARK.encode()))
    return out


def start_event(i: int, seq: int) -> dict[str, Any]:
    """The start event of the invocation that template ``i`` makes with sequence ``seq``."""
    return {
        "t": "start",
        "faas.execution": str(uuid.UUID(int=i + 1))[:24] + str(seq),
        "@timestamp": TS0 + i,
        "faas.timeout": 30_000_000_000,
        "faas.coldstart": i % 100 == 0,
        "faas.trigger.type": "http",
        "trace.id": f"{i + 1:032x}",
    }


def frames_with_starts(count: int, src: str, templates_n: int = 1000) -> list[bytes]:
    """``count`` frames as a shipper with start events sends them: for each invocation
    a start frame (~450 bytes), then its record frame, one sequence for both."""
    tpl = templates(templates_n, src)
    out: list[bytes] = []
    for seq in range(2, count + 2, 2):
        i = (seq - 1) % len(tpl)
        start = {"v": 1, "src": src, "seq": seq - 1, "res": resource(), "ev": [start_event(i, seq)]}
        out += (orjson.dumps(start), frame(tpl, seq))
    return out[:count]


def _send(  # noqa: PLR0917  (a process target: positional by nature)
    addr: tuple[str, int],
    count: int,
    rate: float,
    kind: str,
    src: str,
    ready: Any,
    go: Any,
    result: Any,
) -> None:
    tpl = templates(1000, src) if kind != "small" else small_templates(1000, src)
    if kind == "starts":
        count = min(count, 200_000)
        frames = frames_with_starts(count, src)
    else:
        frames = [frame(tpl, s) for s in range(1, min(count, 200_000) + 1)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(addr)
    send = sock.send
    ready.set()
    go.wait()
    start = time.perf_counter()
    sent = errors = 0
    burst = max(1, int(rate / 2000))  # check the clock every ~0.5 ms of traffic
    seq = 1
    while seq <= count:
        for _ in range(burst):
            if seq > count:
                break
            f = frames[seq - 1] if seq <= len(frames) else frame(tpl, seq)
            try:
                send(f)
                sent += 1
            except OSError:
                errors += 1
            seq += 1
        ahead = start + (seq - 1) / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    result.put((sent, errors, time.perf_counter() - start))


class PacedSender:
    """A sender in another process: ``count`` frames at ``rate`` per second.

    ``kind``: ``full`` (a record and 3 lines per frame), ``starts`` (the same, each
    preceded by its start event's frame) or ``small`` (one log line per frame)."""

    def __init__(
        self, addr: tuple[str, int], count: int, rate: float, kind: str = "full", src: str = ""
    ):
        ctx = multiprocessing.get_context("spawn")
        self._ready = ctx.Event()
        self._go = ctx.Event()
        self._result: Any = ctx.Queue()
        self.proc = ctx.Process(
            target=_send,
            args=(
                addr,
                count,
                rate,
                kind,
                src or f"s{os.urandom(4).hex()}",
                self._ready,
                self._go,
                self._result,
            ),
            daemon=True,
        )
        self.proc.start()
        if not self._ready.wait(120):
            raise RuntimeError("sender did not get ready")

    def go(self) -> None:
        """Start sending."""
        self._go.set()

    def result(self, timeout: float = 600) -> tuple[int, int, float]:
        """(sent, send errors, seconds) once the sender is done."""
        res: tuple[int, int, float] = self._result.get(timeout=timeout)
        self.proc.join(10)
        return res


def vm_hwm_mb(pid: int | None = None) -> float:
    """Peak resident set size (VmHWM) of a process, in MB."""
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def big_udp_socket(rcvbuf: int = 64 << 20) -> socket.socket:
    """A bound loopback UDP socket with a large receive buffer (forced when root)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", 0))
    return sock
