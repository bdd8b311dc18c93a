"""A process serving /metrics for ``series`` aggregate series, as the worker does.

Run as ``python -m tests.unit.ingest.metrics_server SERIES [key=value ...]`` (extra
arguments go to ``HttpServer``). It prints ``{"port": N, "pid": P}`` once listening and
serves until its stdin closes. The HTTP tests measure this process's memory from outside.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import uvloop
from prometheus_client import CollectorRegistry

from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.http import HttpServer
from tests.unit.ingest.test_aggregates import record

LINES_PER_FUNCTION = 34  # text-format sample lines one record() of a function makes


def fill(series: int) -> tuple[CollectorRegistry, Aggregates]:
    """A registry whose aggregates expose about ``series`` sample lines."""
    reg = CollectorRegistry()
    agg = Aggregates(reg, series_cap=series)
    for i in range(series // LINES_PER_FUNCTION + 1):
        agg.observe(record(**{"faas.name": f"function-{i:05d}", "faas.execution": f"e{i}"}), 0.0)
    return reg, agg


async def serve(series: int, options: dict[str, float]) -> None:
    reg, agg = fill(series)
    server = HttpServer("127.0.0.1", 0, reg, lambda: True, rendered_apart=agg, **options)
    await server.start()
    assert server.address is not None
    sys.stdout.write(orjson.dumps({"port": server.address[1]}).decode() + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await server.stop()


def main() -> None:
    options = {k: float(v) for k, _, v in (a.partition("=") for a in sys.argv[2:])}
    uvloop.run(serve(int(sys.argv[1]), options))


if __name__ == "__main__":
    main()
