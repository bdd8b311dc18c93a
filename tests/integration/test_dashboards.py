"""Every query of every dashboard runs against the real Prometheus and Elasticsearch.

No Grafana server here, so the test does what Grafana would: it reads the
provisioned datasources and the dashboard JSON, substitutes the template
variables, builds the Elasticsearch requests Grafana's query builder sends,
and runs them. The data is real: a :class:`ingest.runner.Worker` (real
Elasticsearch sink, unique index prefix) receives the demo traffic sent by
the real shipper, and the test run's Prometheus scrapes the worker. Each query
must succeed *and* return data.

Dashboards use ``faaslens-*`` index patterns; here the datasource index is
rewritten to this test's prefix, so parallel runs never see each other.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from faaslens.demo import run_demo
from grafana.emulate import (
    PanelTarget,
    Variables,
    all_values,
    es_response_has_data,
    es_search_body,
    es_variable_body,
    format_value,
    iter_targets,
    load_dashboards,
    prom_variable_query,
)
from tests.support import (
    Prometheus,
    WorkerThread,
    delete_es_prefix,
    es_request,
    http_json,
    poll_until,
    worker_test_config,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = load_dashboards(REPO / "grafana" / "dashboards")
DATASOURCES = {
    ds["uid"]: ds
    for ds in yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "faaslens.yml").read_text()
    )["datasources"]
}
DEMO_SECONDS = 5.0
DEMO_RATE = 150.0
# The provisioned scrape interval hint is 15s, so Grafana's $__rate_interval is 4 x 15s.
RATE_INTERVAL = "1m"


@dataclass
class Live:
    """What the fed stack looks like, for the queries."""

    es_url: str
    prefix: str
    prometheus: Prometheus
    instance: str
    start: float
    end: float
    functions: list[str]
    crashes: int  # demo invocations whose process died: unfinished ones

    def es_index(self, uid: str) -> str:
        pattern: str = DATASOURCES[uid]["jsonData"]["index"]
        assert pattern.startswith("faaslens-")
        return self.prefix + pattern[len("faaslens") :]


def _sample(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _drive_demo(endpoint: str) -> int:
    """Run the demo traffic; returns how many invocations died (unfinished ones)."""
    result: Any = run_demo(endpoint, rate=DEMO_RATE, duration=DEMO_SECONDS, seed=7, progress=False)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    crashes: int = result.crashes
    return crashes


async def _await(result: Any) -> Any:
    return await result


@pytest.fixture(scope="module")
def live(
    es_url: str, prometheus: Prometheus, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    prefix = "t" + secrets.token_hex(4)
    work = tmp_path_factory.mktemp("dashboards")
    config = worker_test_config(es_url, prefix, work, tcp_listen="")
    thread = WorkerThread(config)
    thread.start()
    try:
        assert thread.started.wait(60), "worker did not start"
        if thread.error is not None:
            raise thread.error
        worker = thread.worker
        assert worker is not None and worker.udp_address and worker.http_address
        instance = f"127.0.0.1:{worker.http_address[1]}"
        metrics_url = f"http://{instance}/metrics"
        prometheus.add_target(instance)
        prometheus.wait_for_target_up(instance, timeout=60)
        start = time.time()
        host, port = worker.udp_address
        crashes = _drive_demo(f"udp://{host}:{port}")
        assert crashes > 0  # the unfinished-invocation panels and rule need some

        def unfinished() -> bool:
            """Every invocation that died is settled as unfinished (timeout + grace)."""
            _, text = http_json("GET", metrics_url)
            return _sample(text, "faas_invocations_unfinished_total") == crashes

        poll_until(unfinished, timeout=60, interval=0.2, what="dead invocations unfinished")

        def settled() -> float | None:
            """Every document built is indexed and the queue is empty."""
            _, text = http_json("GET", metrics_url)
            built = _sample(text, "faaslens_docs_built_total")
            indexed = _sample(text, "faaslens_docs_indexed_total")
            queued = _sample(text, "faaslens_queue_depth")
            return built if built > 0 and built == indexed and queued == 0 else None

        poll_until(settled, timeout=120, interval=0.2, what="worker indexed everything")
        es_request(es_url, "POST", f"/{prefix}-*/_refresh")
        total = es_request(es_url, "GET", f"/{prefix}-invocations-*/_count")["count"]
        assert total > 0

        def scraped() -> list[str] | None:
            """Prometheus holds the final counters of this worker (a scrape after the demo)."""
            rows = prometheus.query(
                f'sum by (function) (faas_invocations_total{{instance="{instance}"}})'
            )
            seen = sum(float(r["value"][1]) for r in rows)
            # The unfinished invocation documents have no record: not in faas_invocations_total.
            done = seen == total - crashes
            return sorted(r["metric"]["function"] for r in rows) if done else None

        functions = poll_until(scraped, timeout=60, interval=0.5, what="final scrape")
        # Enough scrapes of this worker that every rate() window holds several samples.
        wanted = DEMO_SECONDS + 4

        def enough_scrapes() -> bool:
            rows = prometheus.query(f'count_over_time(up{{instance="{instance}"}}[1m])')
            return bool(rows) and float(rows[0]["value"][1]) >= wanted

        poll_until(enough_scrapes, timeout=60, interval=0.5, what="scrapes after the traffic")
        yield Live(es_url, prefix, prometheus, instance, start, time.time(), functions, crashes)
    finally:
        thread.stop()
        delete_es_prefix(es_url, prefix)
        if thread.error is not None:
            raise thread.error


# --------------------------------------------------------------------------- helpers


def _builtins(live: Live) -> dict[str, str]:
    span = max(1, int(live.end - live.start) + 60)
    return {
        "__rate_interval": RATE_INTERVAL,
        "__interval": "15s",
        "__interval_ms": "15000",
        "__range": f"{span}s",
        "__range_s": str(span),
        "__from": str(int((live.start - 60) * 1000)),
        "__to": str(int((live.end + 60) * 1000)),
    }


def _prom_variable_values(live: Live, query: str) -> list[str]:
    q = prom_variable_query(query)
    params = [*q.params, ("start", str(live.start - 60)), ("end", str(live.end + 60))]
    status, payload = http_json(
        "GET", f"{live.prometheus.url}{q.path}?{urllib.parse.urlencode(params)}"
    )
    assert status == 200 and payload["status"] == "success", payload
    values: list[str] = payload["data"]
    if q.name_filter:
        values = [v for v in values if re.search(q.name_filter, v)]
    return values


def _es_search(live: Live, uid: str, body: dict[str, Any]) -> dict[str, Any]:
    index = urllib.parse.quote(live.es_index(uid))
    result: dict[str, Any] = es_request(live.es_url, "POST", f"/{index}/_search", body)
    return result


def _es_range(live: Live) -> tuple[int, int]:
    return int((live.start - 60) * 1000), int((live.end + 60) * 1000)


def _variable_values(live: Live, dash: dict[str, Any]) -> dict[str, list[str]]:
    """Run every query variable of a dashboard; each must return values."""
    found: dict[str, list[str]] = {}
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        if var["datasource"]["type"] == "prometheus":
            values = _prom_variable_values(live, var["query"]["query"])
        else:
            body = es_variable_body(var["query"], *_es_range(live))
            result = _es_search(live, var["datasource"]["uid"], body)
            values = [str(b["key"]) for b in result["aggregations"]["1"]["buckets"]]
        found[var["name"]] = values
    return found


def _run_prom(live: Live, t: PanelTarget, variables: Variables) -> tuple[str, list[dict[str, Any]]]:
    expr = variables.interpolate(t.target["expr"], "prometheus")
    assert "$" not in expr, f"{t.label}: unsubstituted variable in {expr}"
    if t.target.get("instant"):
        return expr, live.prometheus.query(expr, at=live.end)
    return expr, live.prometheus.query_range(expr, live.start, live.end, step=1.0)


def _prom_has_data(rows: list[dict[str, Any]]) -> bool:
    def finite(v: str) -> bool:
        return v not in ("NaN", "+Inf", "-Inf")

    for row in rows:
        points = row.get("values") or [row["value"]]
        if any(finite(p[1]) for p in points):
            return True
    return False


def _run_es(live: Live, t: PanelTarget, variables: Variables) -> tuple[dict[str, Any], Any]:
    query = variables.interpolate(t.target["query"], "elasticsearch")
    assert "$" not in query, f"{t.label}: unsubstituted variable in {query}"
    body = es_search_body(t.target, query, *_es_range(live), interval="10s")
    return body, _es_search(live, t.datasource_uid, body)


def _check_dashboard(
    live: Live,
    name: str,
    values: dict[str, list[str] | None],
    skip: Callable[[PanelTarget], bool] = lambda t: False,
) -> int:
    """Run every target of ``name`` with ``values``; return how many ran."""
    dash = DASHBOARDS[name]
    base = Variables(values=values, all_values=all_values(dash), builtins=_builtins(live))
    failures: list[str] = []
    ran = 0
    for t in iter_targets(dash):
        if skip(t):
            continue
        repeats: list[list[str] | None] = [None]
        if t.repeat:
            chosen = values[t.repeat]
            assert chosen, f"{t.label}: nothing to repeat over"
            repeats = [[v] for v in chosen]
        for repeat_value in repeats:
            variables = base
            if t.repeat is not None and repeat_value is not None:
                variables = Variables(
                    values={**values, t.repeat: repeat_value},
                    all_values=base.all_values,
                    builtins=base.builtins,
                )
            ran += 1
            if t.datasource_type == "prometheus":
                expr, rows = _run_prom(live, t, variables)
                if not _prom_has_data(rows):
                    failures.append(f"{t.label}: no data for {expr}")
            else:
                body, result = _run_es(live, t, variables)
                if not es_response_has_data(body, result):
                    failures.append(f"{t.label}: no data for {body}")
    assert not failures, "\n".join(failures)
    return ran


# --------------------------------------------------------------------------- tests


def test_overview(live: Live) -> None:
    found = _variable_values(live, DASHBOARDS["overview.json"])
    for name in ("function", "environment", "provider", "region"):
        assert found[name], f"variable {name} has no values"
    assert set(live.functions) <= set(found["function"])
    values: dict[str, list[str] | None] = {
        "function": live.functions,  # this worker's functions only, as a multi-select
        "environment": None,
        "provider": None,
        "region": None,
        "custom_counter": found["custom_counter"],
        "custom_histogram": found["custom_histogram"],
    }
    assert _check_dashboard(live, "overview.json", values) >= 18
    # One value of each filter (taken from one real series), as single-value regexes.
    series = live.prometheus.query(f'faas_invocations_total{{instance="{live.instance}"}}')
    labels = series[0]["metric"]
    single: dict[str, list[str] | None] = {
        **values,
        **{k: [labels[k]] for k in ("function", "environment", "provider", "region")},
    }
    # Custom metrics exist only for the functions that send them: checked above.
    _check_dashboard(live, "overview.json", single, skip=lambda t: "Custom" in t.panel)


def test_overview_exemplars_lead_to_the_invocation(live: Live) -> None:
    """Duration exemplars carry an invocation id that the Invocations dashboard finds."""
    dash = DASHBOARDS["overview.json"]
    variables = Variables(
        values={"function": live.functions, "environment": None, "provider": None, "region": None},
        all_values=all_values(dash),
        builtins=_builtins(live),
    )
    targets = [t for t in iter_targets(dash) if t.target.get("exemplar")]
    assert targets
    ids: list[str] = []
    for t in targets:
        expr = variables.interpolate(t.target["expr"], "prometheus")
        series = live.prometheus.query_exemplars(expr, live.start - 60, live.end + 60)
        ids += [
            e["labels"]["invocation_id"]
            for s in series
            if s["seriesLabels"].get("instance") == live.instance  # this test's worker
            for e in s["exemplars"]
            if "invocation_id" in e["labels"]
        ]
    assert ids, "no exemplars with invocation_id"
    record = next(t for t in iter_targets(DASHBOARDS["invocations.json"]) if "record" in t.panel)
    for invocation_id in ids[:5]:
        values: dict[str, list[str] | None] = {"invocation_id": [invocation_id]}
        body, result = _run_es(live, record, Variables(values=values, builtins=_builtins(live)))
        assert es_response_has_data(body, result), invocation_id
        assert result["hits"]["hits"][0]["_source"]["faas.execution"] == invocation_id


def _failed_invocation_with_logs(live: Live) -> str:
    """An invocation that has a record, log lines and an error document."""
    result = _es_search(
        live,
        "faaslens-es-errors",
        {
            "size": 200,
            "query": {"exists": {"field": "faas.execution"}},
            "_source": ["faas.execution"],
        },
    )
    for hit in result["hits"]["hits"]:
        exec_id = hit["_source"]["faas.execution"]
        logs = _es_search(
            live,
            "faaslens-es-logs",
            {"size": 0, "query": {"term": {"faas.execution": exec_id}}},
        )
        if logs["hits"]["total"]["value"] > 1:
            return str(exec_id)
    raise AssertionError("the demo traffic holds no failed invocation with log lines")


def test_invocations(live: Live) -> None:
    dash = DASHBOARDS["invocations.json"]
    found = _variable_values(live, dash)
    assert set(found["function"]) == set(live.functions)
    invocation_id = _failed_invocation_with_logs(live)
    values: dict[str, list[str] | None] = {
        "function": None,
        "outcome": None,
        "coldstart": None,
        "min_duration_ms": ["0"],
        "invocation_id": [invocation_id],
    }
    assert _check_dashboard(live, "invocations.json", values) == 7
    # The unfinished list holds exactly the invocations that died, and nothing else.
    unfinished = next(t for t in iter_targets(dash) if t.panel.startswith("Unfinished"))
    every = Variables(values=values, all_values=all_values(dash), builtins=_builtins(live))
    body, result = _run_es(live, unfinished, every)
    assert es_response_has_data(body, result)
    hits = [h["_source"] for h in result["hits"]["hits"]]
    assert len(hits) == live.crashes
    assert {h["event.outcome"] for h in hits} == {"unknown"}
    assert {h["faas.name"] for h in hits} == {"orders-worker"}
    # Filtered: several functions (lucene OR), failures, warm, over 1 ms.
    filtered: dict[str, list[str] | None] = {
        **values,
        # the function whose processes died among them, for the unfinished list
        "function": sorted({*found["function"][:2], "orders-worker"}),
        "outcome": ["failure"],
        "coldstart": ["false"],
        "min_duration_ms": ["1"],
    }
    _check_dashboard(live, "invocations.json", filtered)


def test_invocation_log_lines_come_back_in_sequence_order(live: Live) -> None:
    """The log panel's raw search + its sortBy transformation give the lines in order."""
    invocation_id = _failed_invocation_with_logs(live)
    logs = next(t for t in iter_targets(DASHBOARDS["invocations.json"]) if "log lines" in t.panel)
    panel = next(p for p in DASHBOARDS["invocations.json"]["panels"] if p["title"] == logs.panel)
    (sort_by,) = [x for x in panel["transformations"] if x["id"] == "sortBy"]
    field = sort_by["options"]["sort"][0]["field"]
    _, result = _run_es(
        live, logs, Variables(values={"invocation_id": [invocation_id]}, builtins=_builtins(live))
    )
    rows = [h["_source"] for h in result["hits"]["hits"]]
    assert all(r["faas.execution"] == invocation_id for r in rows)
    ordered = sorted(rows, key=lambda r: r[field])
    assert [r["event.sequence"] for r in ordered] == list(range(len(rows)))


def test_errors(live: Live) -> None:
    dash = DASHBOARDS["errors.json"]
    found = _variable_values(live, dash)
    assert found["error_type"] and found["function"]
    values: dict[str, list[str] | None] = {"q": ["*"], "error_type": None, "function": None}
    assert _check_dashboard(live, "errors.json", values) == 4
    # A free-text search for a word of a real error message, one error type.
    sample = _es_search(live, "faaslens-es-errors", {"size": 1, "query": {"match_all": {}}})
    word = max(
        re.findall(r"[A-Za-z]{4,}", sample["hits"]["hits"][0]["_source"]["error.message"]), key=len
    )
    error_type = sample["hits"]["hits"][0]["_source"]["error.type"]
    _check_dashboard(
        live,
        "errors.json",
        {"q": [word], "error_type": [error_type], "function": None},
    )


def test_top_fingerprints_have_first_last_seen_and_an_example(live: Live) -> None:
    dash = DASHBOARDS["errors.json"]
    counts, examples = [t for t in iter_targets(dash) if t.panel == "Top fingerprints"]
    variables = Variables(
        values={"q": ["*"], "error_type": None, "function": None},
        all_values=all_values(dash),
        builtins=_builtins(live),
    )
    _, by_count = _run_es(live, counts, variables)
    _, by_example = _run_es(live, examples, variables)
    buckets = by_count["aggregations"]["2"]["buckets"]
    assert buckets
    latest = {}
    for bucket in by_example["aggregations"]["2"]["buckets"]:
        (newest,) = bucket["3"]["buckets"]
        latest[bucket["key"]] = (newest["key"], newest["5"]["value"])
    assert set(latest) == {b["key"] for b in buckets}  # the join by fingerprint is complete
    for bucket in buckets:
        (inner,) = bucket["3"]["buckets"]  # the fingerprint's error.type
        assert inner["4"]["value"] <= inner["5"]["value"]  # first <= last seen
        example, seen = latest[bucket["key"]]
        assert seen == inner["5"]["value"]  # the example is the newest occurrence
        # The example invocation exists: the data link to the Invocations dashboard works.
        found = _es_search(
            live, "faaslens-es-invocations", {"query": {"term": {"faas.execution": example}}}
        )
        assert found["hits"]["total"]["value"] == 1


def test_worker_health(live: Live) -> None:
    found = _variable_values(live, DASHBOARDS["worker-health.json"])
    assert live.instance in found["instance"]
    assert _check_dashboard(live, "worker-health.json", {"instance": [live.instance]}) >= 10


def test_recording_rules_evaluate_on_live_data(live: Live) -> None:
    """The rules file is loaded by the test run's Prometheus and its recordings see the demo."""
    groups = {g["name"]: g for g in live.prometheus.rules()}
    assert {"faaslens-recording", "faaslens-functions", "faaslens-worker"} <= set(groups)
    for group in groups.values():
        for rule in group["rules"]:
            assert rule["health"] != "err", rule
    selector = format_value(live.functions, None, "prometheus")

    def recorded() -> list[dict[str, Any]] | None:
        rows = live.prometheus.query(f'function:faas_invocations:rate5m{{function=~"{selector}"}}')
        return rows or None

    rows = poll_until(recorded, timeout=60, interval=0.5, what="recording rule output")
    assert {r["metric"]["function"] for r in rows} == set(live.functions)
    ratios = live.prometheus.query(f'function:faas_error_ratio:rate5m{{function=~"{selector}"}}')
    assert all(0 <= float(r["value"][1]) <= 1 for r in ratios)
    firing = live.prometheus.query(
        f'ALERTS{{alertname="FaaslensElasticsearchDown", instance="{live.instance}"}}'
    )
    assert firing == []
