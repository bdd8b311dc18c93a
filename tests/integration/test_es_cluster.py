"""A 2-node Elasticsearch cluster (replicas 1) loses a node under load and gets it back.

The cluster is ``scripts/stack up es-cluster``: node 1 is master-eligible and holds
data, node 2 only holds data (with two nodes only one can hold the vote, so node 2
is the one that may go). The worker is given node 2 first: while it is down every
request moves on to node 1, and nothing is lost or indexed twice.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from devkit.stack import run_stack
from faaslens.ingest.config import IngestConfig
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.sink import ElasticsearchSink
from faaslens.query.cli import main as query_main
from tests.integration.test_es_sink import make_docs
from tests.support import apoll_until, delete_es_prefix, es_request

pytestmark = pytest.mark.integration

BATCHES = 20  # at least; the load goes on until node 2 is back
PER_BATCH = 20  # invocations per batch (each with one log line)


def stack(action: str, service: str) -> None:
    run_stack(action, service)


def nodes_in_cluster(url: str) -> int:
    return len(es_request(url, "GET", "/_cat/nodes?format=json&h=name"))


async def test_a_node_stopped_under_load_and_started_again_loses_and_duplicates_nothing(
    es_cluster: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node1, node2 = es_cluster
    prefix = "t" + uuid.uuid4().hex[:8]
    config = IngestConfig(
        es_url=f"{node2},{node1}",
        es_index_prefix=prefix,
        es_replicas=1,
        state_dir=str(tmp_path),
        retry_base_s=0.05,
        retry_max_s=0.5,
        es_request_timeout_s=10.0,
    )
    registry = CollectorRegistry()
    sink = ElasticsearchSink(config, registry, retry_window_s=5.0)
    await sink.start()
    sent: list[Doc] = []
    halfway = asyncio.Event()
    back = asyncio.Event()
    node2_down = False
    written_while_down = 0
    try:

        async def load() -> None:
            nonlocal written_while_down
            i = 0
            while i < BATCHES or not back.is_set():  # load before, during and after
                batch = make_docs(PER_BATCH, logs=1)
                sent.extend(batch)
                await sink.write(batch)
                written_while_down += node2_down
                if i == BATCHES // 4:
                    halfway.set()
                i += 1
                await asyncio.sleep(0.2)  # a steady offered rate, not a burst (noqa: sleep-ok)

        writer = asyncio.create_task(load())
        await halfway.wait()
        await asyncio.to_thread(stack, "down", "es-cluster-2")
        node2_down = True
        # The master learns of the departure on its own schedule: wait for it, bounded.
        async def node2_gone() -> bool:
            return await asyncio.to_thread(nodes_in_cluster, node1) == 1

        await apoll_until(node2_gone, timeout=60, what="node 2 gone from the cluster")
        # While node 2 is away, the reading side moves on to node 1 as well.
        code = query_main(
            ["invocations", "--es-url", f"{node2},{node1}", "--es-index-prefix", prefix]
        )
        assert code == 0, capsys.readouterr().err
        await asyncio.to_thread(stack, "up", "es-cluster-2")
        node2_down = False
        back.set()
        await writer
        assert written_while_down > 0  # the outage happened under load

        async def settled() -> bool:
            return sink.spool.is_empty()

        await apoll_until(settled, timeout=120, what="the spool to drain")
    finally:
        await sink.close()
        if nodes_in_cluster(node1) < 2:
            stack("up", "es-cluster-2")  # leave the cluster whole for the next run

    try:
        es_request(node1, "POST", f"/{prefix}-*/_refresh")
        by_kind: dict[str, set[str]] = {}
        for doc in sent:
            by_kind.setdefault(doc.kind, set()).add(doc.doc_id)
        for kind, ids in by_kind.items():
            got = es_request(node1, "GET", f"/{prefix}-{kind}-*/_count")["count"]
            assert got == len(ids), kind  # nothing lost; ids are unique, so none twice
        health: dict[str, Any] = es_request(
            node1, "GET", f"/_cluster/health/{prefix}-*?wait_for_status=green&timeout=60s"
        )
        assert health["status"] == "green"  # the replicas are back on node 2
        indexed = sum(
            registry.get_sample_value("faaslens_docs_indexed_total", {"index_kind": k}) or 0
            for k in by_kind
        )
        duplicates = registry.get_sample_value("faaslens_docs_duplicate_total") or 0
        assert indexed + duplicates >= len(sent)  # every document confirmed
        assert registry.get_sample_value("faaslens_dead_letter_total") == 0
    finally:
        delete_es_prefix(node1, prefix)
