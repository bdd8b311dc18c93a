"""Hostile datagrams mixed with valid ones, through the whole worker into a real
Elasticsearch: the worker stays up, nothing raises (internal errors 0), the
counters add up (received = accepted + rejections by reason + drops) and every
valid frame is indexed.

The hostile frames are byte-level mutations of the protocol's test vectors
(bit flips, cuts, repeated slices, inserted brackets and escapes) and frames
of each hostile kind: nesting past every parser, keys given twice, times of
any era, stale and forged signatures, ids of 4-byte characters, label keys
holding U+0000 or 40,000 characters, negative counters, invalid UTF-8, NaN,
integers past 64 bits, random bytes. A sender process makes them from a seed
and paces them; the valid frames (one in ``--valid-every``) are dated now.

    python bench/fuzz_worker.py [--hostile 200000] [--valid-every 5] [--rate 20000]
                                [--es-url http://127.0.0.1:9200]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import multiprocessing
import os
import random
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orjson
from _es_worker import start_es_worker

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"
KEYS = {"k1": "secret"}
EVENTS = 4  # per valid frame: an invocation and three log lines


def valid_frame(i: int, now_ms: int) -> bytes:
    ex = f"fuzz-valid-{i}"
    evs: list[dict[str, Any]] = [
        {
            "t": "inv",
            "faas.execution": ex,
            "@timestamp": now_ms,
            "event.duration": 1_000_000 + i,
            "event.outcome": "success",
            "faas.coldstart": False,
        }
    ]
    evs += [
        {
            "t": "log",
            "faas.execution": ex,
            "@timestamp": now_ms + k,
            "event.sequence": k,
            "log.level": "info",
            "message": f"line {k}",
        }
        for k in range(EVENTS - 1)
    ]
    env = {"v": 1, "src": "fuzzvalid", "seq": i + 1, "res": {"faas.name": "fuzz-valid"}, "ev": evs}
    return orjson.dumps(env)


def _mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            data.insert(i, rng.randrange(256))
        elif op == 2 and data:
            del data[i : i + rng.randint(1, 8)]
        elif op == 3:
            data = data[: rng.randrange(len(data) + 1)]
        elif op == 4 and data:
            j = rng.randrange(len(data))
            data[i:i] = data[j : j + rng.randint(1, 40)]
        else:
            data[i:i] = rng.choice([b'"v":1,', b"[", b"{", b"\\u0000", b"\\", b"1e999", b"\xff"])
    return bytes(data)


def _kinds(rng: random.Random, now_ms: int, n: int) -> bytes:
    """One frame of a hostile kind (the ``n``-th)."""
    base = {
        "t": "log",
        "@timestamp": now_ms,
        "event.sequence": n,
        "log.level": "info",
        "message": "m",
    }
    env: dict[str, Any] = {"v": 1, "src": "fuzzhostile", "seq": n + 1, "ev": [base]}
    kind = n % 12
    if kind == 0:
        depth = rng.choice([5, 600, 1000, 1100, 5000])
        return orjson.dumps(env).replace(b'"m"', b"[" * depth + b"]" * depth)
    if kind == 1:
        return b'{"v":2,' + orjson.dumps(env)[1:]
    if kind == 2:
        base["@timestamp"] = rng.choice([0, 86_400_000, 4_102_444_800_000, now_ms ^ (1 << 40)])
    elif kind == 3:
        body = orjson.dumps(env)
        stamp = str(now_ms - 3_600_000).encode()
        sig = hmac.new(b"secret", stamp + b" " + body, hashlib.sha256).hexdigest().encode()
        return b"s2 k1 " + stamp + b" " + sig + b" " + body
    elif kind == 4:
        return b"s1 k1 " + b"0" * 64 + b" " + orjson.dumps(env)
    elif kind == 5:
        base["faas.execution"] = "\U0001f600" * 128
    elif kind == 6:
        base["labels"] = {rng.choice(["nul\x00key", "k" * 40_000]): "v", "ok": "kept"}
    elif kind == 7:
        return os.urandom(rng.randint(1, 300))
    elif kind == 8:
        return b'{"v":1,"src":"x","seq":1,"ev":[{"t":"log","message":"\xff\xfe"}]}'
    elif kind == 9:
        seq = b'"event.sequence":' + str(n).encode()
        return orjson.dumps(env).replace(seq, b'"event.sequence":NaN')
    elif kind == 10:
        return orjson.dumps(env).replace(b'"seq":' + str(n + 1).encode(), b'"seq":' + b"9" * 30)
    else:
        env["ev"] = [
            {
                "t": "inv",
                "faas.execution": f"h-{n}",
                "@timestamp": now_ms,
                "event.duration": 1,
                "event.outcome": "success",
                "faas.coldstart": False,
                "metrics": [{"name": "c", "kind": "counter", "value": -1}],
            }
        ]
    return orjson.dumps(env)


def _send(  # noqa: PLR0917  (a process target: positional by nature)
    addr: tuple[str, int], hostile: int, valid_every: int, rate: float, seed: int, out: Any
) -> None:
    rng = random.Random(seed)
    corpus = sorted(p.read_bytes() for p in VECTORS.glob("shipper_*.frame"))
    now_ms = time.time_ns() // 1_000_000
    frames: list[bytes] = []
    valid = 0
    n = 0
    while n < hostile:
        if len(frames) % valid_every == valid_every - 1:
            frames.append(valid_frame(valid, now_ms))
            valid += 1
            continue
        if n % 2:
            frames.append(_mutate(rng.choice(corpus), rng))
        else:
            frames.append(_kinds(rng, now_ms, n // 2))
        n += 1
    frames = [f[:65_000] or b" " for f in frames]  # what one datagram carries
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(addr)
    start = time.perf_counter()
    sent = 0
    for i, f in enumerate(frames):
        try:
            sock.send(f)
            sent += 1
        except OSError:
            pass
        if i % 64 == 0:
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    out.put((sent, valid, time.perf_counter() - start))


async def run(args: argparse.Namespace) -> int:
    from faaslens.ingest.selfmetrics import totals

    ew = await start_es_worker(args.es_url, "fuzz", hmac_keys=KEYS)
    worker, prefix, total = ew.worker, ew.prefix, ew.total
    assert worker.udp_address is not None and worker.pipeline is not None
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    proc = ctx.Process(
        target=_send,
        args=(worker.udp_address, args.hostile, args.valid_every, args.rate, args.seed, out),
    )
    proc.start()
    loop = asyncio.get_running_loop()
    sent, valid, seconds = await loop.run_in_executor(None, out.get)
    proc.join()
    reg = worker.registry
    received = total("faaslens_datagrams_received_total")
    deadline = time.monotonic() + 300
    while worker.pipeline.frames_processed + total("faaslens_frames_dropped_total") < received:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    status = await loop.run_in_executor(None, _healthz, worker.http_address)
    kernel = worker.udp.kernel_drops() if worker.udp else None
    await worker.stop()  # flushes the last batches into Elasticsearch
    t = totals(reg)
    rejected = Counter(
        {
            s.labels["reason"]: int(s.value)
            for m in reg.collect()
            for s in m.samples
            if s.name == "faaslens_frames_rejected_total" and s.value
        }
    )
    from devkit.services import es_request

    es_request(args.es_url, "POST", f"/{prefix}-*/_refresh")
    valid_docs = es_request(
        args.es_url,
        "POST",
        f"/{prefix}-*/_count",
        {"query": {"term": {"faas.name": "fuzz-valid"}}},
    )["count"]
    ew.remove()
    accounted = t["frames_accepted"] + sum(rejected.values()) + t["frames_dropped"]
    adds_up = accounted == received
    print(f"sent {sent:,} datagrams in {seconds:.1f} s: {args.hostile:,} hostile, {valid:,} valid")
    print(f"received {int(received):,} (kernel drops {kernel}), /healthz during the run: {status}")
    print(
        f"accepted {t['frames_accepted']:,} + rejected {sum(rejected.values()):,} + dropped "
        f"{t['frames_dropped']:,} = {accounted:,} -> adds up: {adds_up}"
    )
    print(f"rejected by reason: {dict(rejected.most_common())}")
    print(
        f"events accepted {t['events_accepted']:,}, rejected {t['events_rejected']:,}; "
        f"internal errors {t['internal_errors']}"
    )
    print(
        f"valid documents indexed {valid_docs:,} of {valid * EVENTS:,}; dead-lettered "
        f"{t['docs_dead_lettered']}, docs dropped {t['docs_dropped']}"
    )
    ok = adds_up and t["internal_errors"] == 0 and valid_docs == valid * EVENTS and status == 200
    print("RESULT:", "OK" if ok else "FAILED")
    return 0 if ok else 1


def _healthz(addr: tuple[str, int] | None) -> int:
    import urllib.request

    assert addr is not None
    with urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}/healthz", timeout=10) as resp:
        return int(resp.status)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20,000 hostile datagrams")
    ap.add_argument("--hostile", type=int, default=0, help="hostile datagrams (200,000)")
    ap.add_argument("--valid-every", type=int, default=5, help="one valid frame in N")
    ap.add_argument("--rate", type=float, default=8_000, help="datagrams per second")
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--es-url", default=os.environ.get("ES_URL", "http://127.0.0.1:9200"))
    args = ap.parse_args()
    args.hostile = args.hostile or (20_000 if args.quick else 200_000)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
