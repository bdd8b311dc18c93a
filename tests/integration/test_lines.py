"""The older project's lines, over real TCP and UDP sockets, into a real worker that a
real Prometheus scrapes; the seed-compatibility dashboard's queries run against it.

The lines are the ones the older NodeJS library sends (its default labels, its
metric names), the declarations are ``docs/examples/seed-declaration.json``,
and the custom metric is the library's JSON form. The worker runs with the null
sink: lines feed Prometheus aggregates only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from faaslens.ingest.config import IngestConfig
from grafana.emulate import (
    Variables,
    all_values,
    iter_targets,
    load_dashboards,
    prom_variable_query,
)
from tests.support import Prometheus, WorkerThread, http_json, poll_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DECLARATIONS = REPO / "docs" / "examples" / "seed-declaration.json"
DASHBOARD = load_dashboards(REPO / "grafana" / "dashboards")["seed-compat.json"]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SAMPLES = 8  # scrapes of the worker before the dashboard's queries run
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

SEED = '{function_name="HelloWorld",function_app="seed-app",environment="azure-cloud"}'
SEED_LABELS = {
    "function_name": "HelloWorld",
    "function_app": "seed-app",
    "environment": "azure-cloud",
}


def invocation_lines(execution_ms: float) -> list[bytes]:
    """What logFunctionStart() and logFunctionEnd() send for one invocation."""
    return [
        f"function_invocations_total{SEED} 1".encode(),
        f"function_execution_time_total{SEED} {execution_ms}".encode(),
        f"function_finished_total{SEED} 1".encode(),
        f"function_gigabyte_seconds_total{SEED} 0.00208".encode(),
    ]


AZURE_MONITOR = b'azure_monitor_gigabyteseconds_total{function_app="seed-app"} 12.5'
CUSTOM = (
    b'{"name":"hello_world_metric","type":"counter","help":"custom metric",'
    b'"labels":{"function_name":"HelloWorld"},"value":1}'
)


@dataclass
class Live:
    worker: Any
    lines: tuple[str, int]
    metrics_url: str
    instance: str


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    config = IngestConfig(
        udp_listen="",
        tcp_listen="",
        http_listen="127.0.0.1:0",
        lines_listen="127.0.0.1:0",
        lines_declarations=str(DECLARATIONS),
        sink="null",
        series_ttl_s=3600,
        shutdown_timeout_s=10,
    )
    thread = WorkerThread(config)
    thread.start()
    try:
        worker = thread.running_worker(timeout=60)
        assert worker.lines is not None and worker.http_address is not None
        host, port = worker.http_address
        yield Live(worker, worker.lines.address, f"http://{host}:{port}/metrics", f"{host}:{port}")
    finally:
        thread.stop()
        if thread.error is not None:
            raise thread.error


def send_tcp(address: tuple[str, int], lines: list[bytes], final_lf: bool) -> None:
    """One connection, as the older library's tcpSender: the last line may lack its LF."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"\n".join(lines) + (b"\n" if final_lf else b""))
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""  # the worker read everything and closed its side


def send_udp(address: tuple[str, int], lines: list[bytes]) -> str:
    """One datagram per line, each with its LF, as the older library's udpSender."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for line in lines:
            sock.sendto(line + b"\n", address)
        host, port = sock.getsockname()
        return f"{host}:{port}"


def scrape(live: Live, accept: str = "text/plain") -> str:
    req = urllib.request.Request(live.metrics_url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for fam in parse_text(text):
        for s in fam.samples:
            if s.name == name and (labels is None or s.labels == labels):
                return float(s.value)
    return None


def test_the_older_librarys_lines_over_tcp_and_udp(live: Live) -> None:
    series = [
        ("function_invocations_total", SEED_LABELS, 2.0),
        ("function_finished_total", SEED_LABELS, 2.0),
        ("function_execution_time_total", SEED_LABELS, 6.5 + 3.5),
        ("function_gigabyte_seconds_total", SEED_LABELS, 2 * 0.00208),
        ("azure_monitor_gigabyteseconds_total", {"function_app": "seed-app"}, 12.5),
        ("hello_world_metric_total", {"function_name": "HelloWorld"}, 1.0),
    ]
    text = scrape(live)
    before = [sample(text, name, labels) or 0.0 for name, labels, _ in series]
    # Over TCP the Azure Monitor line comes last, without its LF.
    send_tcp(live.lines, [*invocation_lines(6.5), AZURE_MONITOR], final_lf=False)
    send_udp(live.lines, [*invocation_lines(3.5), CUSTOM])

    def added() -> list[float] | None:
        text = scrape(live)
        now = [sample(text, name, labels) or 0.0 for name, labels, _ in series]
        got = [n - b for n, b in zip(now, before, strict=True)]
        return got if got[0] == 2 and got[-1] == 1 and got[4] > 0 else None

    got = poll_until(added, timeout=10, interval=0.05, what="lines applied")
    assert got == pytest.approx([want for _, _, want in series])


def test_refused_lines_are_counted_by_reason_and_logged_with_the_peer(live: Live) -> None:
    def rejected(reason: str) -> float:
        value = sample(scrape(live), "faaslens_lines_rejected_total", {"reason": reason})
        return value or 0.0

    before = {r: rejected(r) for r in ("undeclared", "bad_text", "bad_json")}
    with structlog.testing.capture_logs() as logs:
        peer = send_udp(
            live.lines,
            [b"never_declared_total{} 1", b"no braces 1", b'{"name": ', *invocation_lines(1)],
        )
        poll_until(
            lambda: all(rejected(r) == before[r] + 1 for r in before),
            timeout=10,
            interval=0.05,
            what="rejections counted",
        )
    noted = [e for e in logs if e.get("what") == "line"]
    # One line per reason (then at most one per interval: a flood is not a log flood).
    assert sorted(e["reason"] for e in noted) == sorted(before)
    assert all(e["peer"] == peer and e["transport"] == "udp" for e in noted)


def test_the_exposition_passes_promtool_and_both_parsers(live: Live) -> None:
    send_udp(live.lines, [CUSTOM])
    text = scrape(live)
    assert "hello_world_metric_total" in text
    names = {f.name for f in parse_text(text)}
    assert {"function_invocations", "azure_monitor_gigabyteseconds", "hello_world_metric"} <= names
    om = scrape(live, OPENMETRICS)
    assert om.endswith("# EOF\n")
    assert {"function_invocations", "hello_world_metric"} <= {f.name for f in parse_openmetrics(om)}
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_seed_dashboard_queries_against_prometheus(live: Live, prometheus: Prometheus) -> None:
    """Two rounds of invocations, each scraped, so every rate and increase has a rise."""
    prometheus.add_target(live.instance)
    try:
        prometheus.wait_for_target_up(live.instance, timeout=60)
        start = time.time()
        for round_ in range(2):
            send_tcp(live.lines, [*invocation_lines(6.5), AZURE_MONITOR], final_lf=False)
            send_tcp(live.lines, invocation_lines(4.5)[:1], final_lf=True)  # one unfinished
            want = sample(scrape(live), "function_invocations_total", SEED_LABELS)

            def scraped(want: float | None = want) -> bool:
                rows = prometheus.query(f'function_invocations_total{{instance="{live.instance}"}}')
                return bool(rows) and float(rows[0]["value"][1]) == want

            poll_until(scraped, timeout=30, interval=0.2, what=f"round {round_} scraped")
        # A few more scrapes, so the rises sit well inside the sampled span (see below).
        count = f'count_over_time(function_invocations_total{{instance="{live.instance}"}}[5m])'
        poll_until(
            lambda: float(prometheus.query(count)[0]["value"][1]) >= SAMPLES,
            timeout=30,
            interval=0.2,
            what=f"{SAMPLES} scrapes",
        )
        end = time.time()
        _check_dashboard(prometheus, live, start, end)
    finally:
        prometheus.remove_target(live.instance)


def _check_dashboard(prometheus: Prometheus, live: Live, start: float, end: float) -> None:
    span = int(end - start) + 30
    builtins = {"__rate_interval": "1m", "__interval": "15s", "__range": f"{span}s"}
    values: dict[str, list[str] | None] = {}
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] == "query":
            q = prom_variable_query(var["query"]["query"])
            status, payload = http_json(
                "GET",
                f"{prometheus.url}{q.path}?"
                + urllib.parse.urlencode(
                    [*q.params, ("start", str(start - 60)), ("end", str(end))]
                ),
            )
            assert status == 200 and payload["data"], var["name"]
            values[var["name"]] = None  # "All"
        else:
            values[var["name"]] = [var["query"]]
    assert values == {"function_app": None, "function_name": None, "gb_second_usd": ["0.000016"]}
    variables = Variables(values=values, all_values=all_values(DASHBOARD), builtins=builtins)
    results: dict[str, float] = {}
    for t in iter_targets(DASHBOARD):
        expr = variables.interpolate(t.target["expr"], "prometheus")
        assert "$" not in expr, expr
        rows = prometheus.query(expr, at=end)
        assert rows, f"{t.label}: no data for {expr}"
        results[t.panel] = sum(float(r["value"][1]) for r in rows)
    assert results["Invocations per second"] > 0
    # 6.5 ms per finished invocation in this test; earlier tests' 3.5 and 1 ms may weigh in.
    assert 0 < results["Mean execution time"] <= 6.5
    # increase() extrapolates from the first and last samples to the window's ends: with
    # SAMPLES scrapes a second apart, a rise may read up to ~1.5 intervals in 7 (~21%) high.
    near = {"rel": 0.3}
    assert results["Started minus finished"] == pytest.approx(2, **near)  # one per round
    assert results["GB-seconds (library estimate)"] == pytest.approx(2 * 0.00208, **near)
    assert results["GB-seconds (Azure Monitor)"] == pytest.approx(2 * 12.5, **near)
    assert results["Cost (Azure Monitor GB-seconds x price)"] == pytest.approx(
        results["GB-seconds (Azure Monitor)"] * 0.000016
    )
