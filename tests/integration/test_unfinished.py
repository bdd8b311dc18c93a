"""Invocations that never finish, end to end: the real shipper, worker and Elasticsearch.

A started invocation whose record never comes becomes one *unfinished*
invocation document after its timeout plus the grace period, found by
``faaslens query invocation <id>`` with the lines that left before it died;
a record arriving later replaces it (one document, never two); a finished
invocation never becomes unfinished; the pending table survives a graceful
restart of the worker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from faaslens.ingest.documents import UNFINISHED_REASON
from faaslens.ingest.runner import Worker
from faaslens.query import cli
from faaslens.shipper.config import ShipperConfig
from faaslens.shipper.core import Shipper
from faaslens.shipper.logs import Logger
from tests.integration.contexts import LambdaContext
from tests.support import apoll_until, es_request, http_json, worker_test_config

pytestmark = pytest.mark.integration

TIMEOUT_MS = 1000  # the invocations' timeout, as the start event carries it
AWS_ENV = {"AWS_LAMBDA_FUNCTION_NAME": "checkout", "AWS_REGION": "eu-west-1"}


def shipper_for(worker: Worker) -> Shipper:
    host, port = worker.udp_address or ("", 0)
    return Shipper(
        ShipperConfig(
            endpoint=f"udp://{host}:{port}",
            service="shop",
            flush_interval_ms=200,
            timeout_margin_ms=0,  # no watchdog record: the process "dies" instead
        ),
        environ=AWS_ENV,
    )


def invocation_docs(es_url: str, prefix: str, exec_id: str) -> list[dict[str, Any]]:
    es_request(es_url, "POST", f"/{prefix}-*/_refresh?allow_no_indices=true")
    status, res = http_json(
        "POST",
        f"{es_url}/{prefix}-invocations-*/_search?allow_no_indices=true",
        {"query": {"term": {"faas.execution": exec_id}}, "size": 10},
    )
    if status == 503:
        return []  # a shard of an index created a moment ago: poll again
    assert status == 200, res
    return [h["_source"] | {"_id": h["_id"]} for h in res["hits"]["hits"]]


async def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    async def probe() -> Any:
        return await asyncio.to_thread(check)

    return await apoll_until(probe, timeout=timeout, what=what)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels) if labels else None
    if value is None and not labels:
        value = registry.get_sample_value(name)
    return value or 0.0


async def test_a_dead_invocation_is_unfinished_with_its_lines_and_a_late_record_replaces_it(
    es_url: str, es_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = worker_test_config(es_url, es_prefix, tmp_path, unfinished_grace_s=0.5)
    async with Worker(cfg, registry=CollectorRegistry()) as worker:
        sh = shipper_for(worker)
        log = Logger("checkout", shipper=sh)

        @sh.instrument
        def handler(event: Any, context: Any) -> str:
            log.info("all good")
            return "ok"

        handler({}, LambdaContext("finished-1", remaining_ms=TIMEOUT_MS))

        # An invocation that logs, runs on past the flush interval, then never ends.
        dying = sh.invocation({}, LambdaContext("dies-1", remaining_ms=TIMEOUT_MS))
        dying.__enter__()
        log.info("last words", step=1)
        await until(lambda: sh.snapshot()["lines_flushed"] >= 1, "line flushed before the end")
        # (the process would die here: no record is sent)

        docs = await until(
            lambda: [d for d in invocation_docs(es_url, es_prefix, "dies-1")], "unfinished doc"
        )
        (doc,) = docs
        assert doc["_id"] == "dies-1"
        assert doc["event.outcome"] == "unknown"
        assert doc["event.reason"] == UNFINISHED_REASON
        assert doc["faas.name"] == "checkout"
        assert doc["faas.timeout"] == 1_000_000_000
        assert doc["@timestamp"] == doc["event.start"] > 0
        assert "event.duration" not in doc

        # The finished one was settled by its record, never unfinished.
        (done,) = invocation_docs(es_url, es_prefix, "finished-1")
        assert done["event.outcome"] == "success"
        reg = worker.registry
        fn = {"function": "checkout", "version": "12", "environment": "", "provider": "aws"}
        fn["region"] = "eu-west-1"  # the version comes from the context's ARN/version
        assert sample(reg, "faas_invocations_started_total", **fn) == 2
        assert sample(reg, "faas_invocations_unfinished_total", **fn) == 1
        assert sample(reg, "faaslens_pending_invocations") == 0

        # Found by id with the line that left before the end.
        code = await asyncio.to_thread(
            cli.main,
            ["invocation", "dies-1", "--es-url", es_url, "--es-index-prefix", es_prefix],
        )
        out = capsys.readouterr().out
        assert code == 0
        assert "event.outcome" in out and "unknown" in out
        assert UNFINISHED_REASON in out
        assert "last words" in out and "logs (1 lines)" in out
        # ... and listed among the invocations whose outcome is unknown, alone.
        code = await asyncio.to_thread(
            cli.main,
            [
                "invocations",
                "--outcome",
                "unknown",
                "--es-url",
                es_url,
                "--es-index-prefix",
                es_prefix,
            ],
        )
        out = capsys.readouterr().out
        assert code == 0 and "dies-1" in out and "finished-1" not in out

        # The record comes after all: it replaces the unfinished document.
        dying.__exit__(None, None, None)

        def replaced() -> list[dict[str, Any]] | None:
            found = invocation_docs(es_url, es_prefix, "dies-1")
            return found if found and found[0]["event.outcome"] == "success" else None

        (doc,) = await until(replaced, "record replacing the unfinished document")
        assert "event.reason" not in doc and doc["event.duration"] > 0
        assert sample(reg, "faaslens_unfinished_replaced_total") == 1
        sh.close()


async def test_pending_starts_survive_a_graceful_restart(
    es_url: str, es_prefix: str, tmp_path: Path
) -> None:
    cfg = worker_test_config(es_url, es_prefix, tmp_path, unfinished_grace_s=0.5)
    state = Path(cfg.pending_state_path)
    async with Worker(cfg, registry=CollectorRegistry()) as first:
        sh = shipper_for(first)
        sh.invocation({}, LambdaContext("across-restart", remaining_ms=TIMEOUT_MS)).__enter__()
        await until(lambda: len(first.settler.pending) == 1, "start tracked")
        sh.close()
    assert state.exists()
    async with Worker(cfg, registry=CollectorRegistry()) as second:
        assert not state.exists()  # read back, then removed
        (doc,) = await until(
            lambda: invocation_docs(es_url, es_prefix, "across-restart"), "unfinished doc"
        )
        assert doc["event.outcome"] == "unknown"
        assert second.settler.unfinished == 1
