"""The worker into a secured Elasticsearch, and several workers side by side.

Two same-run ratios, each against what the same node takes at most:

* TLS: one worker into the secured test node (HTTPS, CA verified, API key) over one
  worker into a plain node of the same distribution and heap (HTTP, no security);
* scale: three workers sharing the port (``--reuse-port``) over one worker, into the
  plain node.

The ceiling is the node's own pace in the same run: prebuilt bulk bodies of the same
documents POSTed by six streams, as many bulk requests in flight as three workers keep
(no serialization, no checks). Workers run as
``faaslens ingest`` processes; frames (one invocation record and three log lines,
~1.45 kB) come over TCP from 6 sender processes as fast as the workers take them
(backpressure, so nothing is dropped and the rate is the workers'). A run ends when
the workers' ``/metrics`` confirm every document; then ``_count`` must match (0 lost,
0 twice).

    python bench/es_secure_scale.py [--quick] [--frames N] [--rounds N]

Nodes: ``scripts/stack up es-secure`` (started if needed), and a plain node with the
same heap that this script starts in its own state directory (and stops at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from _es_worker import raw_bulk_seconds  # noqa: E402
from _worker_frames import frame, templates  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from devkit.stack import run_stack  # noqa: E402
from faaslens.ingest.config import IngestConfig  # noqa: E402
from faaslens.ingest.events import Doc  # noqa: E402
from faaslens.ingest.sink_es.bulk import build_body  # noqa: E402
from faaslens.ingest.sink_es.client import make_client, make_sync_client  # noqa: E402
from faaslens.ingest.templates import install_templates, load_templates  # noqa: E402
from faaslens.ingest.validate import Validator  # noqa: E402

SENDERS = 6
PLAIN_PORT = int(os.environ.get("FAASLENS_BENCH_ES_PORT", "9230"))
DOCS_PER_FRAME = 4  # + an error document every 50th frame


def plain_node_env() -> dict[str, str]:
    """A state directory of its own beside the stack's, sharing its unpacked distribution."""
    base = Path(os.environ.get("FAASLENS_STACK_DIR") or REPO / ".stack").resolve()
    state = base / "bench-plain"
    home = base / "es" / "elasticsearch-8.19.21"
    (state / "es").mkdir(parents=True, exist_ok=True)
    for path in (state, state / "es"):
        path.chmod(0o755)
    link = state / "es" / home.name
    if not link.exists() and home.exists():
        link.symlink_to(home.resolve())
    return {
        "FAASLENS_STACK_DIR": str(state),
        "FAASLENS_ES_PORT": str(PLAIN_PORT),
        "FAASLENS_ES_HEAP": os.environ.get("FAASLENS_ES_TEST_HEAP", "512m"),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sender(job: tuple[tuple[str, int], int, int, str], ready: Any, go: Any) -> None:
    """Another process: frames ``first..first+count-1`` over one TCP connection, full speed."""
    addr, first, count, src = job
    tpl = templates(1000, src=src)
    data = b"".join(frame(tpl, seq) + b"\n" for seq in range(first, first + count))
    sock = socket.create_connection(addr)
    ready.set()
    go.wait()
    sock.sendall(data)
    sock.close()


def confirmed(ports: Sequence[int]) -> float:
    total = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name in ("faaslens_docs_indexed", "faaslens_docs_duplicate"):
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def worker_env(es: dict[str, str], prefix: str, port: int, http: int, state: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASLENS_")}
    return {
        **env,
        "PYTHONPATH": str(REPO),
        **es,
        "FAASLENS_ES_INDEX_PREFIX": prefix,
        "FAASLENS_UDP_LISTEN": "",
        "FAASLENS_TCP_LISTEN": f"127.0.0.1:{port}",
        "FAASLENS_HTTP_LISTEN": f"127.0.0.1:{http}",
        "FAASLENS_REUSE_PORT": "true",
        "FAASLENS_STATE_DIR": state,
        "FAASLENS_LOG_LEVEL": "warning",
    }


def run_workers(n: int, es: dict[str, str], frames: int, admin: IngestConfig, tmp: Path) -> float:
    """docs/s of ``n`` worker processes sharing one TCP port."""
    prefix = "faaslens-bench" + uuid.uuid4().hex[:6]  # matches the secured node's roles
    port = free_port()
    https = [free_port() for _ in range(n)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "faaslens.cli", "ingest"],
            env=worker_env(es, prefix, port, h, str(tmp / f"{prefix}-{i}")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i, h in enumerate(https)
    ]
    try:
        deadline = time.monotonic() + 120
        while True:  # every worker answers and says it is ready (templates installed)
            try:
                ready = all(
                    urllib.request.urlopen(f"http://127.0.0.1:{h}/readyz", timeout=2).status == 200
                    for h in https
                )
            except OSError:
                ready = False
            if ready:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                died = [p for p in procs if p.poll() is not None]
                detail = died[0].stderr.read().decode()[-2000:] if died and died[0].stderr else ""
                raise SystemExit(f"workers did not start: {detail}")
            time.sleep(0.2)  # polling a startup with a deadline
        per = frames // SENDERS
        ctx = multiprocessing.get_context("spawn")
        go = ctx.Event()
        readies = [ctx.Event() for _ in range(SENDERS)]
        senders = [
            ctx.Process(
                target=sender, args=((("127.0.0.1", port), k * per + 1, per, "bench"), r, go)
            )
            for k, r in enumerate(readies)
        ]
        for child in senders:
            child.start()
        for event in readies:
            event.wait(120)
        sent = per * SENDERS
        want = sum(DOCS_PER_FRAME + (1 if (seq - 1) % 1000 % 50 == 0 else 0)
                   for seq in range(1, sent + 1))  # fmt: skip
        started = time.perf_counter()
        go.set()
        last, last_change = -1.0, time.perf_counter()
        while (now := confirmed(https)) < want and time.perf_counter() - last_change < 10:
            if now != last:
                last, last_change = now, time.perf_counter()
            time.sleep(0.05)  # polling the workers' counters
        took = time.perf_counter() - started
        for child in senders:
            child.join(30)
        with make_sync_client(admin, 120) as client:
            client.indices.refresh(index=f"{prefix}-*")
            count = int(client.count(index=f"{prefix}-*")["count"])
            names = list(client.indices.get(index=f"{prefix}-*"))
            client.indices.delete(index=",".join(names))
        if count != want:
            raise SystemExit(f"{n} worker(s): {want} documents sent, {count} in Elasticsearch")
        return want / took
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)


def ceiling(admin: IngestConfig, docs: list[Doc], streams: int = 6, batch: int = 2000) -> float:
    """docs/s of prebuilt bulk bodies POSTed by ``streams`` threads: the node's own pace."""
    prefix = "faaslens-bench" + uuid.uuid4().hex[:6]
    bodies = [build_body(docs[i : i + batch], prefix) for i in range(0, len(docs), batch)]
    asyncio.run(_install_templates(admin, prefix))  # the mappings the workers index into
    with make_sync_client(admin, 120) as client:
        took = raw_bulk_seconds(client, bodies, streams)
        client.indices.refresh(index=f"{prefix}-*")
        names = list(client.indices.get(index=f"{prefix}-*"))
        client.indices.delete(index=",".join(names))
    return len(docs) / took


async def _install_templates(admin: IngestConfig, prefix: str) -> None:
    client = make_client(dataclasses.replace(admin, es_index_prefix=prefix))
    try:
        await install_templates(client, load_templates(REPO / "es-templates", prefix))
    finally:
        await client.close()


def bench_docs(frames: int) -> list[Doc]:
    validator = Validator()
    tpl = templates(1000, src="ceiling")
    return [d for seq in range(1, frames + 1) for d in validator.validate(frame(tpl, seq)).docs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--frames", type=int, default=0, help="frames per run")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (medians are reported)")
    args = parser.parse_args()
    frames = args.frames or (6_000 if args.quick else 30_000)
    rounds = args.rounds or (1 if args.quick else 3)

    run_stack("up", "es-secure")
    (secure,) = run_stack("status", "es-secure")
    creds = json.loads(Path(secure["credentials"]).read_text())
    plain_env = plain_node_env()
    run_stack("up", "es", plain_env)
    plain_url = f"http://127.0.0.1:{PLAIN_PORT}"
    tls = {
        "FAASLENS_ES_URL": creds["url"],
        "FAASLENS_ES_CA_CERTS": creds["ca_certs"],
        "FAASLENS_ES_API_KEY": creds["api_key"]["encoded"],
    }
    plain = {"FAASLENS_ES_URL": plain_url}
    secure_admin = IngestConfig(
        es_url=creds["url"],
        es_ca_certs=creds["ca_certs"],
        es_username=creds["admin"]["username"],
        es_password=creds["admin"]["password"],
    )
    plain_admin = IngestConfig(es_url=plain_url)
    docs = bench_docs(frames)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"faaslens-bench-{os.getpid()}"
    rates: dict[str, list[float]] = {}
    print(f"frames per run {frames} ({len(docs)} docs), {SENDERS} TCP senders, {rounds} rounds")
    try:
        runs: list[tuple[str, Callable[[], float]]] = [
            ("ceiling, plain node", lambda: ceiling(plain_admin, docs)),
            ("ceiling, secured node", lambda: ceiling(secure_admin, docs)),
            ("1 worker, plain HTTP", lambda: run_workers(1, plain, frames, plain_admin, tmp)),
            ("1 worker, TLS + API key", lambda: run_workers(1, tls, frames, secure_admin, tmp)),
            ("3 workers, plain HTTP", lambda: run_workers(3, plain, frames, plain_admin, tmp)),
        ]
        for _, run in runs[:2]:  # warm-up: JIT, index creation paths (not counted)
            run()
        for r in range(rounds):
            for name, run in runs:
                rate = run()
                rates.setdefault(name, []).append(rate)
                print(f"  round {r + 1}  {name:<26} {rate:>9,.0f} docs/s", flush=True)
    finally:
        run_stack("down", "es", plain_env)
    med = {name: statistics.median(values) for name, values in rates.items()}
    print("medians:")
    for name, value in med.items():
        print(f"  {name:<26} {value:>9,.0f} docs/s")

    def ratio(top: str, bottom: str) -> str:
        """Median and range of the per-round ratios (both sides measured in the same round:
        on a shared machine the load moves between rounds more than between neighbours)."""
        each = [t / b for t, b in zip(rates[top], rates[bottom], strict=True)]
        return f"{statistics.median(each):.2f} (rounds {min(each):.2f}-{max(each):.2f})"

    w1, wtls, w3 = "1 worker, plain HTTP", "1 worker, TLS + API key", "3 workers, plain HTTP"
    print(f"TLS / plain HTTP, 1 worker:      {ratio(wtls, w1)}")
    print(f"  TLS worker / secured ceiling:  {ratio(wtls, 'ceiling, secured node')}")
    print(f"  plain worker / plain ceiling:  {ratio(w1, 'ceiling, plain node')}")
    print(f"3 workers / 1 worker (plain):    {ratio(w3, w1)}")
    print(f"  3 workers / plain ceiling:     {ratio(w3, 'ceiling, plain node')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
