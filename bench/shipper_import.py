#!/usr/bin/env python3
"""Import cost: the shipper (import + logger + metric + decorating a handler) against
aws-lambda-powertools Logger + Metrics doing the same, measured in the same run.

Each variant runs in a fresh interpreter, many times, interleaved; figures are
medians of wall time minus a bare interpreter's median. ``python -X importtime``
then gives the self time of the shipper's own modules (goal: < 5 ms) and
confirms that structlog is not imported.

    python bench/shipper_import.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BARE = "pass"
SHIPPER = """
import faaslens
log = faaslens.get_logger("app")
orders = faaslens.counter("orders")
@faaslens.instrument
def handler(event, context):
    log.info("x")
    orders.inc()
"""
POWERTOOLS = """
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
logger = Logger(service="app")
metrics = Metrics(namespace="app", service="app")
@metrics.log_metrics
@logger.inject_lambda_context
def handler(event, context):
    logger.info("x")
    metrics.add_metric(name="orders", unit=MetricUnit.Count, value=1)
"""
STRUCTLOG = "import structlog\nlog = structlog.get_logger()"
ORJSON = "import orjson"

VARIANTS = {
    "bare": BARE,
    "shipper": SHIPPER,
    "powertools": POWERTOOLS,
    "structlog": STRUCTLOG,
    "orjson": ORJSON,
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["FAASLENS_ENDPOINT"] = "udp://127.0.0.1:9"
    env["POWERTOOLS_METRICS_NAMESPACE"] = "app"
    return env


def run_once(code: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return (time.perf_counter() - t0) * 1000.0


def own_modules_ms(env: dict[str, str]) -> tuple[float, list[tuple[str, float]], bool]:
    """Self import time of shipper.* modules (ms), the list, and whether structlog loaded."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SHIPPER],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    mods: list[tuple[str, float]] = []
    structlog_loaded = False
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = float(parts[0].split(":")[1])
        except ValueError:
            continue  # the header line
        name = parts[2].strip()
        if name == "faaslens" or name.startswith("faaslens.shipper"):
            mods.append((name, self_us / 1000.0))
        if name == "structlog":
            structlog_loaded = True
    return sum(ms for _, ms in mods), mods, structlog_loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    args = parser.parse_args(argv)
    reps = 8 if args.quick else 40
    env = _env()
    for code in VARIANTS.values():  # warm the bytecode caches
        run_once(code, env)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(reps):
        for name, code in VARIANTS.items():
            times[name].append(run_once(code, env))
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"import + setup cost, fresh interpreter, {reps} runs each, medians (ms)")
    print(f"{'variant':<12}{'wall':>8}{'minus bare':>12}")
    for name, value in med.items():
        print(f"{name:<12}{value:>8.1f}{value - med['bare']:>12.1f}")
    ours = med["shipper"] - med["bare"]
    theirs = med["powertools"] - med["bare"]
    own, mods, structlog_loaded = own_modules_ms(env)
    print()
    print(f"shipper / powertools = {ours / theirs:5.2f}   (goal < 1.00)")
    print(f"shipper's own modules (self time, -X importtime): {own:.2f} ms   (goal < 5 ms)")
    for name, ms in sorted(mods, key=lambda m: -m[1]):
        print(f"    {name:<28}{ms:6.2f} ms")
    print(f"structlog imported by the record path: {structlog_loaded}   (goal: False)")
    ok = ours < theirs and own < 5.0 and not structlog_loaded
    print("GOALS MET" if ok else "GOALS NOT MET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
