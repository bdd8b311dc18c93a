"""Every metric the worker exposes passes ``promtool check metrics`` and both of
prometheus_client's parsers, and each dimension has one label name.

``faaslens ingest`` runs as its own process (so the process, platform and GC
collectors are there too) with the real Elasticsearch sink (so the sink's
collectors are registered) and receives every protocol test vector, valid and
hostile, so that the aggregates, custom metrics and rejection counters all have
samples.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from faaslens.ingest.config import env_name
from tests.support import poll_until, worker_test_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

# Every label name the worker may expose, with the one dimension it names. A new label
# name must be added here: the review is where a second name for a known dimension
# (say "index" next to "index_kind") gets caught.
LABEL_NAMES = {
    "function": "faas.name",
    "version": "faas.version",
    "environment": "service.environment",
    "outcome": "event.outcome",
    "coldstart": "faas.coldstart",
    "provider": "cloud.provider",
    "region": "cloud.region",
    "trigger": "faas.trigger.type",
    "le": "histogram bucket bound",
    "reason": "bounded reason of a rejection, drop or retry",
    "index_kind": "invocations | logs | errors",
    "metric": "custom metric name (its overflow counter)",
    "transport": "udp | tcp",
    "type": "event type: inv | log",
    "stage": "pipeline stage of an internal error",
}

# A line as the older project's library sends it (docs/migrating.md); its metrics keep
# that project's names and labels, so its dashboards work unchanged.
SEED_LINE = b'function_invocations_total{function_name="f",function_app="a",environment="e"} 1'
BASE_UNITS = {"seconds", "bytes", "usd", "ratio", "meters", "grams", "joules", "celsius"}


def scrape(address: tuple[str, int], accept: str) -> str:
    req = urllib.request.Request(
        f"http://{address[0]}:{address[1]}/metrics", headers={"Accept": accept}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        text: str = resp.read().decode()
    return text


def as_env(value: Any) -> str:
    """A setting's value as its FAASLENS_* variable spells it."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def send_vectors(udp: tuple[str, int]) -> int:
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for path in sorted(VECTORS.glob("*.frame")):
            try:
                s.sendto(path.read_bytes(), udp)
                sent += 1
            except OSError:  # larger than a datagram can be (the oversized vector)
                continue
    return sent


def total(text: str, name: str) -> float:
    return sum(
        float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(name)
    )


@pytest.fixture
def worker(es_url: str, es_prefix: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``faaslens ingest`` as a process; yields its UDP and HTTP addresses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASLENS_")}
    cfg = worker_test_config(
        es_url,
        es_prefix,
        tmp_path,
        tcp_listen="",
        retention_days=36500,  # the vectors are dated 2025: keep their indices
        timestamp_max_age_s=0,  # and accept them, whatever today is
        hmac_keys={"k1": "secret"},
        # The older project's line listener, with the metrics its users declare.
        lines_listen="127.0.0.1:0",
        lines_declarations=str(REPO / "docs" / "examples" / "seed-declaration.json"),
    )
    env.update({env_name(f.name): as_env(getattr(cfg, f.name)) for f in fields(cfg)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "faaslens.cli", "ingest"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    started: dict[str, Any] = {}
    lines_at = ""
    for raw in proc.stderr:
        line = orjson.loads(raw)
        if line.get("event") == "lines listening":
            lines_at = line["address"]
        if line.get("event") == "worker started":
            started = line
            break
    assert started, "the worker did not start"
    # Keep reading its log, so a full pipe never stalls it.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    host, _, port = lines_at.rpartition(":")
    yield {
        "udp": tuple(started["udp"]),
        "http": tuple(started["http"]),
        "lines": (host, int(port)),
    }
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def test_every_exposed_metric_is_promtool_clean(worker: dict[str, Any]) -> None:
    assert send_vectors(worker["udp"]) >= 30
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(SEED_LINE, worker["lines"])
    http = worker["http"]

    def settled() -> str | None:
        text = scrape(http, "text/plain")
        indexed = total(text, "faaslens_docs_indexed_total")
        rejected = total(text, "faaslens_frames_rejected_total")
        seed = total(text, "function_invocations_total")
        return text if indexed > 0 and rejected > 0 and seed > 0 else None

    text = poll_until(settled, timeout=60, what="vectors indexed and rejected")
    openmetrics = scrape(http, OPENMETRICS)

    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr

    families = list(parse_text(text))
    names = {f.name for f in families}
    # The aggregates, a custom metric, the worker's own and the sink's metrics are all there.
    for name in (
        "faas_invocations",
        "faas_billed_gigabyte_seconds",
        "faas_custom_orders",
        "faaslens_frames_rejected",
        "faaslens_docs_indexed",
        "faaslens_http_connections_dropped",
        "process_cpu_seconds",
        "python_gc_objects_collected",
        "function_invocations",
    ):
        assert name in names, name
    om_families = list(parse_openmetrics(openmetrics))
    samples = {(s.name, tuple(sorted(s.labels.items()))) for f in families for s in f.samples}
    om_samples = {
        (s.name, tuple(sorted(s.labels.items())))
        for f in om_families
        for s in f.samples
        if not s.name.endswith("_created")
    }
    assert samples <= om_samples and len(samples) > 100

    # Units last: a base unit inside a name would read as something else ("bytes_received").
    for name in names - {n for n in names if n.startswith("faas_custom_")}:
        words = name.split("_")
        assert not BASE_UNITS & set(words[:-1]), f"{name}: unit not last"

    # Ours (prometheus_client's process, platform and GC collectors keep their own names;
    # a custom metric's own labels are the function author's, checked by the protocol).
    ours = [
        f
        for f in families
        if f.name.startswith(("faas_", "faaslens_")) and not f.name.startswith("faas_custom_")
    ]
    labels = {k for f in ours for s in f.samples for k in s.labels}
    assert labels <= set(LABEL_NAMES), labels - set(LABEL_NAMES)
