"""Processes that die mid-invocation in a real Lambda runtime become unfinished invocations.

The function (tests/integration/lambda_functions/crashy.py) runs under the
AWS Lambda Runtime Interface Emulator with awslambdaric and ships to a real
worker and Elasticsearch. Each way of dying (``os._exit(137)`` after a log
line, SIGKILL of itself, a C call holding the GIL past the timeout, memory
exhausted under a ``setrlimit`` cap) must leave exactly one unfinished
invocation with its id, function, start time and the line that left before
the death; the normal invocations around them never do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from faaslens.ingest.documents import UNFINISHED_REASON
from faaslens.ingest.runner import Worker
from tests.integration.lambda_rie import LambdaRuntime
from tests.support import apoll_until, es_request, http_json, worker_test_config

pytestmark = pytest.mark.integration

FUNCTIONS = Path(__file__).resolve().parent / "lambda_functions"
DEATHS = ("exit", "sigkill", "gil", "memory")


def search(es_url: str, index: str, query: dict[str, Any]) -> list[dict[str, Any]] | None:
    es_request(es_url, "POST", f"/{index}/_refresh?allow_no_indices=true")
    status, res = http_json(
        "POST",
        f"{es_url}/{index}/_search?allow_no_indices=true",
        {"query": query, "size": 100, "sort": [{"@timestamp": "asc"}]},
    )
    if status == 503:
        return None  # an index created a moment ago: poll again
    assert status == 200, res
    return [h["_source"] | {"_id": h["_id"]} for h in res["hits"]["hits"]]


async def test_each_way_of_dying_is_one_unfinished_invocation_with_its_last_line(
    es_url: str, es_prefix: str, tmp_path: Path
) -> None:
    cfg = worker_test_config(es_url, es_prefix, tmp_path, unfinished_grace_s=0.5)
    async with Worker(cfg, registry=CollectorRegistry()) as worker:
        host, port = worker.udp_address or ("", 0)
        env = {
            "FAASLENS_ENDPOINT": f"udp://{host}:{port}",
            "FAASLENS_FLUSH_INTERVAL_MS": "200",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "2",
        }
        task_root = tmp_path / "task"
        task_root.mkdir()
        (task_root / "crashy.py").write_bytes((FUNCTIONS / "crashy.py").read_bytes())
        answers: dict[str, tuple[int, Any]] = {}
        with LambdaRuntime(task_root, "crashy.handler", env, function="crashy") as fn:
            for case in ("ok", *DEATHS, "ok"):
                answers[case] = await asyncio.to_thread(fn.invoke, {"case": case})
            log = fn.log()
        assert answers["ok"] == (200, {"ok": True}), log
        for case in ("exit", "sigkill", "memory"):
            assert "Runtime.ExitError" in str(answers[case]), (case, answers[case], log)
        assert "Task timed out" in str(answers["gil"]), log

        invocations = f"{es_prefix}-invocations-*"

        async def settled() -> list[dict[str, Any]] | None:
            found = await asyncio.to_thread(
                search, es_url, invocations, {"term": {"faas.name": "crashy"}}
            )
            if found is None or len(found) != 2 + len(DEATHS):
                return None
            return found

        docs = await apoll_until(settled, timeout=60, what="every invocation settled")
        unfinished = [d for d in docs if d["event.outcome"] == "unknown"]
        assert sorted(d["event.outcome"] for d in docs) == ["success"] * 2 + ["unknown"] * 4
        lines = await asyncio.to_thread(
            search, es_url, f"{es_prefix}-logs-*", {"term": {"faas.name": "crashy"}}
        )
        assert lines is not None
        case_of = {line["faas.execution"]: line["labels"]["case"] for line in lines}
        assert sorted(case_of[d["_id"]] for d in unfinished) == sorted(DEATHS)
        for doc in unfinished:
            assert doc["event.reason"] == UNFINISHED_REASON
            assert doc["_id"] == doc["faas.execution"]
            assert doc["@timestamp"] > 0 and doc["cloud.provider"] == "aws"
            assert 0 < doc["faas.timeout"] <= 2_000_000_000
            own = [line for line in lines if line["faas.execution"] == doc["_id"]]
            assert [line["message"] for line in own] == ["starting"]
        counts: dict[str, float] = {}
        for family in worker.registry.collect():
            for sample in family.samples:
                if sample.labels.get("function") == "crashy":
                    counts[sample.name] = counts.get(sample.name, 0.0) + sample.value
        assert counts["faas_invocations_started_total"] == 2 + len(DEATHS)
        assert counts["faas_invocations_unfinished_total"] == len(DEATHS)
        assert counts["faas_invocations_total"] == 2
